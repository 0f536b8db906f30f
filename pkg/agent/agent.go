// Package agent runs a node: containerd (a child process of the same
// binary, with runc, the runc shim and the CNI plugins from the embedded
// payload), the images the node needs, the upstream kubelet and kube-proxy
// in-process, and the pod network's CNI configuration.
package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/internal/kubeclient"
	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/hostcheck"
	"github.com/skiff-dev/skiff/pkg/localpath"
	"github.com/skiff-dev/skiff/pkg/payload"
)

// sandboxArchive is the embedded pause image's archive.
const sandboxArchive = "pause.tar"

// stopTimeout bounds how long each part may take to stop.
const stopTimeout = 10 * time.Second

// Preflight runs the host checks and parses the kubelet's and kube-proxy's
// arguments, before anything is written. A hard failure is an error saying
// what to fix.
func Preflight(cfg *config.Agent) error {
	host := hostcheck.Host{DataDir: cfg.DataDir}
	if failed := hostcheck.Failed(host.Run()); len(failed) > 0 {
		f := failed[0]
		return fmt.Errorf("this host cannot run the node agent: %s: %s; %s (run `skiff check-config` for every check, or start with --disable-agent)", f.Name, f.Detail, f.Fix)
	}
	if _, err := kubeletServer(context.Background(), kubeletArgs(cfg, "")); err != nil {
		return err
	}
	_, err := kubeProxyOptions(kubeProxyArgs(cfg, "iptables"))
	return err
}

// Agent is a running node agent.
type Agent struct {
	failed chan error
	stops  []func() // in the order they must run
}

// Failed reports a part that stopped on its own.
func (a *Agent) Failed() <-chan error { return a.failed }

// Stop stops the kubelet and kube-proxy, then containerd. Containers keep
// running in their shims.
func (a *Agent) Stop() {
	for _, stop := range a.stops {
		stop()
	}
}

// Start starts the node. The node's credentials (see pki.EnsureNode and the
// kubeconfigs in cfg) must already be in place.
func Start(ctx context.Context, cfg *config.Agent) (_ *Agent, err error) {
	a := &Agent{failed: make(chan error, 4)}
	defer func() {
		if err != nil {
			a.Stop()
		}
	}()
	binDir, err := payload.Unpack(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if err := setSysctls(); err != nil {
		return nil, err
	}
	for _, dir := range []string{cfg.CNIConfDir(), cfg.ImagesDir(), cfg.CNIStateDir()} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}

	driver := cgroupDriver()
	restrictOOM := !hostcheck.Host{}.HasCapSysResource()
	if restrictOOM {
		klog.InfoS("This process lacks CAP_SYS_RESOURCE; containerd will not lower pods' oom_score_adj below its own (restrict_oom_score_adj)")
	}
	ctrdConfig, err := writeContainerdConfig(cfg, containerdValues{
		Root: cfg.ContainerdRoot(), State: cfg.ContainerdState(), Socket: cfg.ContainerdSocket(),
		BinDir: binDir, CNIConfDir: cfg.CNIConfDir(), SandboxImage: config.DefaultSandboxImage,
		SystemdCgroup: driver == "systemd", RestrictOOMScoreAdj: restrictOOM,
		NodeName: cfg.NodeName, ClusterDNS: cfg.ClusterDNS.String(),
	})
	if err != nil {
		return nil, err
	}
	ctrd, err := startContainerd(ctx, cfg, ctrdConfig, binDir)
	if err != nil {
		return nil, err
	}
	a.stops = append(a.stops, ctrd.stop)
	go func() {
		<-ctrd.done
		a.report("containerd", fmt.Errorf("exited: %v; see %s", ctrd.err, filepath.Join(cfg.ContainerdRoot(), config.DefaultContainerdLog)))
	}()

	client, err := containerd.New(cfg.ContainerdSocket(), containerd.WithDefaultNamespace(config.ContainerdNamespace))
	if err != nil {
		return nil, fmt.Errorf("connecting to containerd: %w", err)
	}
	a.stops = append([]func(){func() { client.Close() }}, a.stops...)
	im := newImporter(client, filepath.Join(cfg.AgentDir(), "images.json"))
	embedded, err := payload.Images()
	if err != nil {
		return nil, err
	}
	// The pause image must be there before the first pod sandbox; the
	// other system images (CoreDNS) and user archives are imported beside
	// the kubelet's start, which does not wait for them.
	sandbox := map[string]payload.Archive{sandboxArchive: embedded[sandboxArchive]}
	delete(embedded, sandboxArchive)
	if err := im.importEmbedded(ctx, sandbox); err != nil {
		return nil, err
	}
	a.goBackground(func(ctx context.Context) {
		if err := im.importEmbedded(ctx, embedded); err != nil && ctx.Err() == nil {
			a.report("system images", err)
		}
		im.watchDir(ctx, cfg.ImagesDir())
	})

	kubeletConfig, err := writeKubeletConfig(cfg, driver)
	if err != nil {
		return nil, err
	}
	args := kubeletArgs(cfg, kubeletConfig)
	logArgs("kubelet", args)
	a.goComponent("kubelet", func(ctx context.Context) error { return runKubelet(ctx, args) })

	proxyArgs := kubeProxyArgs(cfg, proxyMode())
	logArgs("kube-proxy", proxyArgs)
	a.goComponent("kube-proxy", func(ctx context.Context) error { return runKubeProxy(ctx, proxyArgs) })

	nodeClient, err := kubeclient.New(cfg.KubeletKubeconfig(), "skiff-agent")
	if err != nil {
		return nil, err
	}
	a.goBackground(func(ctx context.Context) {
		if err := writePodNetwork(ctx, cfg, nodeClient); err != nil && ctx.Err() == nil {
			a.report("pod network", err)
		}
	})
	if cfg.LocalStoragePath != "" {
		storageClient, err := kubeclient.New(cfg.LocalPathKubeconfig(), "skiff-agent")
		if err != nil {
			return nil, err
		}
		a.goComponent("local-path provisioner", func(ctx context.Context) error {
			return localpath.Run(ctx, storageClient, cfg.NodeName, cfg.LocalStoragePath)
		})
	}
	return a, nil
}

func (a *Agent) report(part string, err error) {
	select {
	case a.failed <- fmt.Errorf("%s: %w", part, err):
	default:
	}
}

// goComponent runs a long-lived part; stopping cancels it and waits for it
// (bounded), before anything started earlier is stopped.
func (a *Agent) goComponent(name string, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := run(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("exited unexpectedly")
		}
		a.report(name, err)
	}()
	a.stops = append([]func(){func() {
		cancel()
		select {
		case <-done:
		case <-time.After(stopTimeout):
			klog.InfoS("Gave up waiting for component to stop", "component", name, "timeout", stopTimeout)
		}
	}}, a.stops...)
}

// goBackground runs a helper that ends with its context.
func (a *Agent) goBackground(run func(context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	go run(ctx)
	a.stops = append([]func(){cancel}, a.stops...)
}

func logArgs(component string, args []string) {
	klog.InfoS("Running "+component, "args", strings.Join(args, " "))
}
