package config

import (
	"net"
	"path/filepath"

	"github.com/skiff-dev/skiff/internal/loadbalancer"
)

// Defaults of the node agent, named and placed as in k3s.
const (
	DefaultRunDir        = "/run/skiff"
	DefaultKubeletRoot   = "/var/lib/kubelet"
	DefaultPodLogDir     = "/var/log/pods"
	DefaultKubeletPort   = 10250
	DefaultSandboxImage  = "localhost/skiff/pause:1"
	ContainerdNamespace  = "k8s.io"
	DefaultContainerdLog = "containerd.log"
	DefaultLBServerPort  = 6444
)

// Agent is the configuration of the node agent: containerd, the kubelet and
// kube-proxy for one node. The node's own settings come from its flags; the
// cluster's (CIDRs, DNS, the pod network's backend, local storage) from the
// server, when the node joins.
type Agent struct {
	DataDir string
	// Node holds the node's own settings; NodeName and NodeIP are its
	// name and address as resolved (see NewAgent).
	Node     Node
	NodeName string
	NodeIP   net.IP
	// ServerURL is the apiserver the node joins and its kubelet and
	// kube-proxy talk to; Token the join token.
	ServerURL string
	Token     string
	// LBServerPort is the loopback port of the node's load balancer over
	// the cluster's servers (k3s's --lb-server-port); 0 for a server's
	// own node, which talks to its own apiserver.
	LBServerPort int
	// JoinURL is the server the node was given when ServerURL is its
	// load balancer; Balancer that load balancer, once it runs.
	JoinURL  string
	Balancer *loadbalancer.LoadBalancer

	// The cluster's settings, from the server.
	ClusterCIDR    *net.IPNet
	ServiceCIDR    *net.IPNet
	ClusterDNS     net.IP
	ClusterDomain  string
	FlannelBackend string
	// DisableNetworkPolicy turns off NetworkPolicy enforcement on the node.
	DisableNetworkPolicy bool
	// LocalStoragePath holds the local-path volumes of this node; empty
	// when the local-storage add-on is disabled.
	LocalStoragePath string

	// RunDir holds containerd's socket and state, which must not outlive
	// a reboot.
	RunDir string

	// Registries is the node's registries.yaml as read at start; nil when
	// there is none.
	Registries *Registries
}

// AgentDir is where the agent keeps its state.
func (a *Agent) AgentDir() string { return filepath.Join(a.DataDir, "agent") }

// EtcDir holds the configuration files the agent renders.
func (a *Agent) EtcDir() string { return filepath.Join(a.AgentDir(), "etc") }

// PasswordFile holds the node's password, which proves to the server that
// the node is the one that first took its name.
func (a *Agent) PasswordFile() string { return filepath.Join(a.AgentDir(), "node-password") }

// NodeIDFile holds the random suffix of --with-node-id.
func (a *Agent) NodeIDFile() string { return filepath.Join(a.AgentDir(), "node-id") }

// TLSDir holds the node's certificates, keys and CA bundles.
func (a *Agent) TLSDir() string { return filepath.Join(a.AgentDir(), "tls") }

// ImagesDir is where archives to import are dropped (the k3s air-gap path).
func (a *Agent) ImagesDir() string { return filepath.Join(a.AgentDir(), "images") }

// ContainerdRoot is containerd's persistent root (content, snapshots).
func (a *Agent) ContainerdRoot() string { return filepath.Join(a.AgentDir(), "containerd") }

// ContainerdState is containerd's state directory (shim sockets, mounts).
func (a *Agent) ContainerdState() string { return filepath.Join(a.RunDir, "containerd") }

// ContainerdSocket is containerd's gRPC socket.
func (a *Agent) ContainerdSocket() string {
	return filepath.Join(a.ContainerdState(), "containerd.sock")
}

// ContainerdConfigDir holds containerd's rendered config and the user's
// template override.
func (a *Agent) ContainerdConfigDir() string { return filepath.Join(a.EtcDir(), "containerd") }

// RegistryHostsDir holds containerd's hosts.toml per registry, rendered
// from registries.yaml (containerd's config_path).
func (a *Agent) RegistryHostsDir() string { return filepath.Join(a.ContainerdConfigDir(), "certs.d") }

// CNIConfDir holds the pod network's CNI configuration.
func (a *Agent) CNIConfDir() string { return filepath.Join(a.EtcDir(), "cni", "net.d") }

// CNIStateDir holds host-local's address reservations, so a pod keeps its
// IP across restarts.
func (a *Agent) CNIStateDir() string { return filepath.Join(a.AgentDir(), "cni") }

// KubeletKubeconfig and KubeProxyKubeconfig are the node's credentials.
func (a *Agent) KubeletKubeconfig() string {
	return filepath.Join(a.AgentDir(), "kubelet.kubeconfig")
}

// KubeProxyKubeconfig is kube-proxy's kubeconfig.
func (a *Agent) KubeProxyKubeconfig() string {
	return filepath.Join(a.AgentDir(), "kubeproxy.kubeconfig")
}

// FlannelKubeconfig is the pod network's kubeconfig.
func (a *Agent) FlannelKubeconfig() string {
	return filepath.Join(a.AgentDir(), "flannel.kubeconfig")
}

// LocalPathKubeconfig is the local storage provisioner's kubeconfig.
func (a *Agent) LocalPathKubeconfig() string {
	return filepath.Join(a.AgentDir(), "localpath.kubeconfig")
}
