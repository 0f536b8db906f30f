package config

import (
	"net"
	"path/filepath"
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
)

// Agent is the configuration of the node agent: containerd, the kubelet and
// kube-proxy for one node.
type Agent struct {
	DataDir  string
	NodeName string
	NodeIP   net.IP
	// ServerURL is the apiserver the kubelet and kube-proxy talk to.
	ServerURL string

	ClusterCIDR   *net.IPNet
	ServiceCIDR   *net.IPNet
	ClusterDNS    net.IP
	ClusterDomain string

	ExtraKubeletArgs   []string
	ExtraKubeProxyArgs []string

	// LocalStoragePath holds the local-path volumes of this node; empty
	// when the local-storage add-on is disabled.
	LocalStoragePath string

	// RunDir holds containerd's socket and state, which must not outlive
	// a reboot.
	RunDir string
}

// AgentDir is where the agent keeps its state.
func (a *Agent) AgentDir() string { return filepath.Join(a.DataDir, "agent") }

// EtcDir holds the configuration files the agent renders.
func (a *Agent) EtcDir() string { return filepath.Join(a.AgentDir(), "etc") }

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

// LocalPathKubeconfig is the local storage provisioner's kubeconfig.
func (a *Agent) LocalPathKubeconfig() string {
	return filepath.Join(a.AgentDir(), "localpath.kubeconfig")
}
