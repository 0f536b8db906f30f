package config

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/kubernetes/pkg/util/taints"
)

// Node is a node's own settings: the same flags on `skiff server` (for the
// server's own node) and `skiff agent`.
type Node struct {
	// Name is the node's name; empty: the host name.
	Name string
	// WithNodeID appends a random suffix, kept in the data dir, to the
	// name, for hosts that share a name.
	WithNodeID bool
	// IP is the node's address; empty: the address of the default route.
	IP     string
	Labels []string // key=value, as kubectl label takes them
	Taints []string // key=value:Effect, as kubectl taint takes them

	ExtraKubeletArgs   []string
	ExtraKubeProxyArgs []string

	// CertificateCheckInterval is how often this machine's certificates
	// (the node's, and a server's own) are checked while skiff runs, and
	// those within pki.RenewBefore of their expiry renewed; 0: only at
	// start.
	CertificateCheckInterval time.Duration

	// PprofAddress, when set, serves the process's Go profiles
	// (/debug/pprof/) on this loopback host:port.
	PprofAddress string

	// PrivateRegistry is the node's registries.yaml (mirrors, TLS,
	// credentials); the default path may be absent.
	PrivateRegistry string
}

// DefaultCertificateCheckInterval checks the certificates hourly: reading a
// dozen files, nothing written unless one is renewed.
const DefaultCertificateCheckInterval = time.Hour

// Validate checks the node's settings, naming the flag of a bad one.
func (n *Node) Validate() error {
	if n.CertificateCheckInterval < 0 {
		return &FieldError{"certificate-check-interval", n.CertificateCheckInterval.String(), "cannot be negative (0: check only at start)"}
	}
	if n.PprofAddress != "" {
		host, _, err := net.SplitHostPort(n.PprofAddress)
		if ip := net.ParseIP(host); err != nil || !(host == "localhost" || ip != nil && ip.IsLoopback()) {
			return &FieldError{"pprof-address", n.PprofAddress, "must be a loopback host:port such as 127.0.0.1:6060 (profiles show memory contents)"}
		}
	}
	if n.IP != "" && net.ParseIP(n.IP) == nil {
		return &FieldError{"node-ip", n.IP, "not an IP address"}
	}
	if n.Name != "" {
		if errs := validation.IsDNS1123Subdomain(n.Name); len(errs) > 0 {
			return &FieldError{"node-name", n.Name, strings.Join(errs, "; ")}
		}
	}
	if _, err := labels.ConvertSelectorToLabelsMap(strings.Join(n.Labels, ",")); err != nil {
		return &FieldError{"node-label", strings.Join(n.Labels, ","), err.Error()}
	}
	if _, _, err := taints.ParseTaints(n.Taints); err != nil {
		return &FieldError{"node-taint", strings.Join(n.Taints, ","), err.Error()}
	}
	return checkArgs(map[string][]string{"kubelet-arg": n.ExtraKubeletArgs, "kube-proxy-arg": n.ExtraKubeProxyArgs})
}

// NewAgent is the configuration of a node that joins serverURL with token,
// keeping its state in dataDir; defaultIP is its address unless the node's
// settings name one. The cluster's settings are filled in when it joins.
func NewAgent(dataDir string, node Node, serverURL, token string, defaultIP net.IP) (*Agent, error) {
	name := node.Name
	if name == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("reading the host name for the node's name: %w; set --node-name", err)
		}
		name = strings.ToLower(host)
	}
	ip := defaultIP
	if node.IP != "" {
		ip = net.ParseIP(node.IP)
	}
	registries, err := LoadRegistries(node.PrivateRegistry)
	if err != nil {
		return nil, err
	}
	return &Agent{
		DataDir: dataDir, Node: node, NodeName: name, NodeIP: ip,
		ServerURL: serverURL, Token: token, RunDir: DefaultRunDir,
		Registries: registries,
	}, nil
}
