package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/internal/kubeclient"
	"github.com/skiff-dev/skiff/manifests"
	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/deploy"
	"github.com/skiff-dev/skiff/pkg/helmchart"
	"github.com/skiff-dev/skiff/pkg/image"
	"github.com/skiff-dev/skiff/pkg/payload"
	"github.com/skiff-dev/skiff/pkg/servicelb"
)

// metricsServer is the metrics add-on's name.
const metricsServer = "metrics-server"

// addonValues are the fields the add-on templates in manifests/ use.
type addonValues struct {
	ClusterDNS    string
	ClusterDomain string
	ClusterCIDR   string
	ServiceCIDR   string
	Images        systemImages
}

// systemImages are the embedded images the add-ons run, by role.
type systemImages struct {
	CoreDNS       string
	MetricsServer string
	Ingress       string
}

func newAddonValues(cfg *config.Server) (addonValues, error) {
	archives, err := payload.Images()
	if err != nil {
		return addonValues{}, err
	}
	name := func(file string) (string, error) {
		a, ok := archives[file]
		if !ok {
			return "", fmt.Errorf("embedded image %s missing: rebuild skiff with `make build`", file)
		}
		r, err := a.Open()
		if err != nil {
			return "", fmt.Errorf("embedded image %s: %w", file, err)
		}
		defer r.Close()
		n, err := image.ArchiveName(r)
		if err != nil {
			return "", fmt.Errorf("embedded image %s: %w", file, err)
		}
		return n, nil
	}
	v := addonValues{
		ClusterDNS: cfg.ClusterDNS.String(), ClusterDomain: cfg.ClusterDomain,
		ClusterCIDR: cfg.ClusterCIDR.String(), ServiceCIDR: cfg.ServiceCIDR.String(),
	}
	if v.Images.CoreDNS, err = name("coredns.tar"); err != nil {
		return v, err
	}
	if v.Images.MetricsServer, err = name("metrics-server.tar"); err != nil {
		return v, err
	}
	if v.Images.Ingress, err = name("ingress.tar"); err != nil {
		return v, err
	}
	return v, nil
}

// runServiceLB runs the LoadBalancer address controller as the admin.
func runServiceLB(ctx context.Context, kubeconfig string) error {
	client, err := kubeclient.New(kubeconfig, "skiff-servicelb")
	if err != nil {
		return err
	}
	return servicelb.Run(ctx, client)
}

// ensureHelmCRDs serves HelmChart and HelmChartConfig, and makes the
// directory of static chart archives.
func (s *Server) ensureHelmCRDs(ctx context.Context) error {
	if err := os.MkdirAll(s.cfg.StaticChartsDir(), 0o700); err != nil {
		return err
	}
	rc, err := kubeclient.Config(s.kubeconfig("admin"), helmchart.Component)
	if err != nil {
		return err
	}
	return helmchart.EnsureCRDs(ctx, rc)
}

// runHelmController installs the cluster's HelmCharts as the admin.
func (s *Server) runHelmController(ctx context.Context) error {
	rc, err := kubeclient.Config(s.kubeconfig("admin"), helmchart.Component)
	if err != nil {
		return err
	}
	return helmchart.Run(ctx, rc, helmchart.Dirs{Manifests: s.cfg.ManifestsDir(), StaticCharts: s.cfg.StaticChartsDir()})
}

// runAddons renders the embedded add-ons into the manifests directory and
// runs the deployer on it as the admin until ctx ends.
func runAddons(ctx context.Context, cfg *config.Server, kubeconfig string) error {
	values, err := newAddonValues(cfg)
	if err != nil {
		return err
	}
	disabled := cfg.Disable
	if cfg.DisableAgent && !slices.Contains(disabled, metricsServer) {
		// With no node, metrics-server never runs, and an aggregated API
		// that never answers stalls discovery: namespaces could not be
		// deleted. Nodes cannot join a server without an agent yet.
		klog.InfoS("Not deploying metrics-server: this server runs no node (--disable-agent)")
		disabled = append(slices.Clone(disabled), metricsServer)
	}
	if err := deploy.WriteEmbedded(cfg.ManifestsDir(), manifests.Files, values, disabled); err != nil {
		return fmt.Errorf("writing add-on manifests to %s: %w", cfg.ManifestsDir(), err)
	}
	rc, err := kubeclient.Config(kubeconfig, "skiff-deploy")
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	d := deploy.New(cfg.ManifestsDir(), filepath.Join(cfg.ServerDir(), "manifests.json"), client, dyn)
	return d.Run(ctx)
}
