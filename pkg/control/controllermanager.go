package control

import (
	"context"
	"fmt"
	"strconv"

	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app/options"

	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/pki"
)

// ControllerManagerArgs are skiff's defaults for kube-controller-manager,
// merged with the user's --kube-controller-manager-arg values.
//
// Leader election is off: one skiff server runs per datastore, and with it on
// upstream exits the whole process when its lease ends at shutdown.
func ControllerManagerArgs(cfg *config.Server, tls pki.Dir, kubeconfig string) []string {
	d := map[string]string{
		"allocate-node-cidrs":       "true",
		"authentication-kubeconfig": kubeconfig,
		"authorization-kubeconfig":  kubeconfig,
		"bind-address":              "127.0.0.1",
		"cluster-cidr":              cfg.ClusterCIDR.String(),
		"cluster-signing-kube-apiserver-client-cert-file": tls.Cert(pki.ClientCA),
		"cluster-signing-kube-apiserver-client-key-file":  tls.Key(pki.ClientCA),
		"cluster-signing-kubelet-client-cert-file":        tls.Cert(pki.ClientCA),
		"cluster-signing-kubelet-client-key-file":         tls.Key(pki.ClientCA),
		"cluster-signing-kubelet-serving-cert-file":       tls.Cert(pki.ServerCA),
		"cluster-signing-kubelet-serving-key-file":        tls.Key(pki.ServerCA),
		"cluster-signing-legacy-unknown-cert-file":        tls.Cert(pki.ServerCA),
		"cluster-signing-legacy-unknown-key-file":         tls.Key(pki.ServerCA),
		"configure-cloud-routes":                          "false",
		// Upstream leaves the bootstrap token cleaner off; join tokens
		// made with a TTL (skiff token create) must expire.
		"controllers": "*,tokencleaner",
		"kubeconfig":  kubeconfig,
		// The apiserver is in the same process, and its priority and
		// fairness guards it. At upstream's 20/s (burst 30) the
		// controller-manager spends ~5 s of its start waiting on its own
		// client: it makes a ServiceAccount for each controller before
		// any runs, so a new node waited that long for its pod CIDR, and
		// every Deployment for its ReplicaSet.
		"kube-api-qps":                     "200",
		"kube-api-burst":                   "400",
		"leader-elect":                     "false",
		"profiling":                        "false",
		"root-ca-file":                     tls.Cert(pki.ServerCA),
		"secure-port":                      strconv.Itoa(config.DefaultControllerPort),
		"service-account-private-key-file": tls.Key(pki.ServiceAccountKey),
		"service-cluster-ip-range":         cfg.ServiceCIDR.String(),
		"use-service-account-credentials":  "true",
	}
	return Args(d, cfg.ExtraControllerManagerArgs)
}

// RunControllerManager runs kube-controller-manager until ctx ends. The
// apiserver must already answer: upstream gives up if it is not healthy
// within ten seconds.
func RunControllerManager(ctx context.Context, args []string) error {
	logArgs("kube-controller-manager", args)
	s, err := controllerManagerOptions(args)
	if err != nil {
		return err
	}
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("kube-controller-manager feature gates: %w", err)
	}
	c, err := s.Config(ctx, app.KnownControllers(), app.ControllersDisabledByDefault(), app.ControllerAliases())
	if err != nil {
		return fmt.Errorf("kube-controller-manager options: %w", err)
	}
	return app.Run(ctx, c.Complete())
}

func controllerManagerOptions(args []string) (*options.KubeControllerManagerOptions, error) {
	s, err := options.NewKubeControllerManagerOptions()
	if err != nil {
		return nil, fmt.Errorf("kube-controller-manager options: %w", err)
	}
	nfs := s.Flags(app.KnownControllers(), app.ControllersDisabledByDefault(), app.ControllerAliases())
	s.ParsedFlags = &nfs
	return s, parseFlags("kube-controller-manager", nfs, args)
}
