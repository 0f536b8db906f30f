// Package agent runs a node: containerd (a child process of the same
// binary, with runc, the runc shim and the CNI plugins from the embedded
// payload), the images the node needs, the upstream kubelet and kube-proxy
// in-process, and the pod network's CNI configuration.
package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	containerd "github.com/containerd/containerd/v2/client"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/internal/kubeclient"
	"github.com/skiff-dev/skiff/internal/lifecycle"
	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/hostcheck"
	"github.com/skiff-dev/skiff/pkg/localpath"
	"github.com/skiff-dev/skiff/pkg/payload"
)

// sandboxArchive is the embedded pause image's archive; dnsArchive the
// cluster DNS's (CoreDNS).
const (
	sandboxArchive = "pause.tar"
	dnsArchive     = "coredns.tar"
)

// Preflight runs the host checks and parses the kubelet's and kube-proxy's
// arguments, before anything is written. A hard failure is an error saying
// what to fix.
func Preflight(cfg *config.Agent) error {
	host := hostcheck.Host{DataDir: cfg.DataDir}
	if failed := hostcheck.Failed(host.Run()); len(failed) > 0 {
		f := failed[0]
		return fmt.Errorf("this host cannot run the node agent: %s: %s; %s (run `skiff check-config` for every check)", f.Name, f.Detail, f.Fix)
	}
	if _, err := kubeletServer(context.Background(), kubeletArgs(cfg, "")); err != nil {
		return err
	}
	// The cluster's CIDR comes from the server at the join; any valid one
	// checks the arguments now.
	check := *cfg
	if check.ClusterCIDR == nil {
		_, check.ClusterCIDR, _ = net.ParseCIDR(config.DefaultClusterCIDR)
	}
	_, err := kubeProxyOptions(kubeProxyArgs(&check, "iptables"))
	return err
}

// node is the state the agent's parts share: what one part sets up, a later
// one uses.
type node struct {
	cfg    *config.Agent
	binDir string // the unpacked node programs
	driver string // the cgroup driver
	// containerd's process and client, and the image importer on it.
	ctrd     *containerdProcess
	client   *containerd.Client
	importer *importer
	// sandboxDone is closed once containerd answers and the pause image
	// is in (sandboxErr says if not): the kubelet needs both.
	sandboxDone chan struct{}
	sandboxErr  error
}

// Parts are the node's parts, in the order they start and the reverse of
// the order they stop, in two lists. Runtime needs nothing from the
// cluster: the node's setup and containerd, which gets ready and imports
// the pause image while whatever comes after it starts (a server starts it
// before its control plane: containerd then uses the CPU the apiserver
// leaves idle while it waits on its own start-up hooks). Kubernetes, the
// kubelet and what runs beside it, needs the node's credentials (the
// kubeconfigs in cfg) to exist, and starts once the pause image is in.
// Stopping them stops the kubelet, kube-proxy and containerd; containers
// keep running in their shims.
type Parts struct {
	Runtime, Kubernetes []lifecycle.Component
}

// Components are the node's parts.
func Components(cfg *config.Agent) Parts {
	n := &node{cfg: cfg, sandboxDone: make(chan struct{})}
	p := Parts{
		Runtime: []lifecycle.Component{
			lifecycle.Step("node setup", n.setup),
			lifecycle.Run("containerd", n.runContainerd).WithSetup(n.startContainerd),
			lifecycle.Run("pause image", n.runSandbox),
		},
		Kubernetes: []lifecycle.Component{
			// The other system images and archives added later are
			// imported beside the kubelet: on a server, importing them
			// while the apiserver starts delayed it by more than a second.
			lifecycle.Run("images", n.runImages).WithSetup(n.waitSandbox),
			lifecycle.Run("kubelet", n.runKubelet),
			lifecycle.Run("kube-proxy", n.runKubeProxy),
			lifecycle.Run("pod network", n.runPodNetwork),
			lifecycle.Run("network policy", n.runNetworkPolicy),
			lifecycle.Run("local-path provisioner", n.runLocalPath),
		},
	}
	if cfg.Node.CertificateCheckInterval > 0 {
		p.Kubernetes = append(p.Kubernetes, renewCertificates(cfg))
	}
	return p
}

// setup checks that the host can enforce NetworkPolicies, unpacks the node
// programs, sets the kernel parameters pods need and renders containerd's
// configuration.
func (n *node) setup(context.Context) error {
	cfg := n.cfg
	if err := n.checkNetworkPolicy(); err != nil {
		return err
	}
	var err error
	if n.binDir, err = payload.Unpack(cfg.DataDir); err != nil {
		return err
	}
	if err := setSysctls(); err != nil {
		return err
	}
	for _, dir := range []string{cfg.CNIConfDir(), cfg.ImagesDir(), cfg.CNIStateDir()} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	n.driver = cgroupDriver()
	return nil
}

// importSandbox waits for containerd, connects to it and imports the pause
// image and the archives already in the images directory.
func (n *node) importSandbox(ctx context.Context) error {
	if err := n.containerdReady(ctx); err != nil {
		return err
	}
	client, err := containerd.New(n.cfg.ContainerdSocket(), containerd.WithDefaultNamespace(config.ContainerdNamespace))
	if err != nil {
		return fmt.Errorf("connecting to containerd: %w", err)
	}
	n.client = client
	n.importer = newImporter(client, filepath.Join(n.cfg.AgentDir(), "images.json"))
	embedded, err := payload.Images()
	if err != nil {
		client.Close()
		return err
	}
	if err := n.importer.importEmbedded(ctx, map[string]payload.Archive{sandboxArchive: embedded[sandboxArchive]}); err != nil {
		client.Close()
		return err
	}
	// As k3s does: the archives already in the images directory are
	// imported before the kubelet starts, so that a pod that needs one
	// never fails to find it (ErrImageNeverPull, then a backoff).
	n.importer.scan(ctx, n.cfg.ImagesDir(), map[string]string{}, map[string]string{})
	return nil
}

// runSandbox imports the pause image (importSandbox), says so to
// waitSandbox, and keeps the containerd client the imports share until ctx
// ends.
func (n *node) runSandbox(ctx context.Context) error {
	n.sandboxErr = n.importSandbox(ctx)
	close(n.sandboxDone)
	if n.sandboxErr != nil {
		return n.sandboxErr
	}
	<-ctx.Done()
	return n.client.Close()
}

// waitSandbox waits until runSandbox has the pause image in.
func (n *node) waitSandbox(ctx context.Context) error {
	select {
	case <-n.sandboxDone:
		return n.sandboxErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runImages imports the cluster DNS's image, then the archives in the
// images directory, then the other embedded images, and after that every
// archive added to the directory, as they come, until ctx ends.
func (n *node) runImages(ctx context.Context) error {
	embedded, err := payload.Images()
	if err != nil {
		return err
	}
	delete(embedded, sandboxArchive)
	// The cluster DNS first and alone: every pod that resolves a name
	// waits for it, and on two cores the imports share the CPU.
	if dns, ok := embedded[dnsArchive]; ok {
		delete(embedded, dnsArchive)
		if err := n.importer.importEmbedded(ctx, map[string]payload.Archive{dnsArchive: dns}); err != nil && ctx.Err() == nil {
			return fmt.Errorf("system images: %w", err)
		}
	}
	// The user's archives before metrics-server's and the ingress's: the
	// kubelet backs a pod whose image is missing off for 10 s and more
	// (ErrImageNeverPull), longer than those imports take, and the
	// user's pods are the ones waiting.
	return n.importer.watchDir(ctx, n.cfg.ImagesDir(), func() error {
		if err := n.importer.importEmbedded(ctx, embedded); err != nil && ctx.Err() == nil {
			return fmt.Errorf("system images: %w", err)
		}
		return nil
	})
}

func (n *node) runKubelet(ctx context.Context) error {
	kubeletConfig, err := writeKubeletConfig(n.cfg, n.driver)
	if err != nil {
		return err
	}
	args := kubeletArgs(n.cfg, kubeletConfig)
	logArgs("kubelet", args)
	return runKubelet(ctx, args)
}

func (n *node) runKubeProxy(ctx context.Context) error {
	args := kubeProxyArgs(n.cfg, proxyMode())
	logArgs("kube-proxy", args)
	return runKubeProxy(ctx, args)
}

// runPodNetwork runs the pod network across nodes (flannel) and writes the
// CNI configuration for the node's pods once the node has its pod CIDR, and
// runs until ctx ends. Flannel starts before the CIDR is there: its subnet
// manager polls once a second for its node informer, and that second
// passes while the node waits for its CIDR. With --flannel-backend none the
// pod network is the user's: no CNI configuration is written.
func (n *node) runPodNetwork(ctx context.Context) error {
	if n.cfg.FlannelBackend == "none" {
		klog.InfoS("No pod network from skiff (--flannel-backend none): install a CNI plugin, or pods will not start")
		<-ctx.Done()
		return nil
	}
	client, err := kubeclient.New(n.cfg.KubeletKubeconfig(), "skiff-agent")
	if err != nil {
		return err
	}
	err = runFlannel(ctx, n.cfg, func(ctx context.Context) error {
		_, err := waitPodCIDR(ctx, n.cfg, client)
		return err
	}, func(subnet string, mtu int) error {
		return writePodNetwork(n.cfg, subnet, mtu, false)
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// runLocalPath provisions local-path volumes on this node, unless the
// cluster has no local storage.
func (n *node) runLocalPath(ctx context.Context) error {
	if n.cfg.LocalStoragePath == "" {
		<-ctx.Done()
		return nil
	}
	client, err := kubeclient.New(n.cfg.LocalPathKubeconfig(), "skiff-agent")
	if err != nil {
		return err
	}
	return localpath.Run(ctx, client, n.cfg.NodeName, n.cfg.LocalStoragePath)
}

func logArgs(component string, args []string) {
	klog.InfoS("Running "+component, "args", strings.Join(args, " "))
}
