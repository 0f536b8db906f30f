package server

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	certutil "k8s.io/client-go/util/cert"

	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/pki"
)

// NodeConfig is the configuration of the server's own node agent.
func (s *Server) NodeConfig() (*config.Agent, error) {
	cfg, advertise, serverURL := s.cfg, s.advertise, s.LocalURL()
	name := cfg.NodeName
	if name == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("reading the host name for the node's name: %w; set --node-name", err)
		}
		name = strings.ToLower(host)
	}
	ip := advertise
	if cfg.NodeIP != "" {
		ip = net.ParseIP(cfg.NodeIP)
	}
	storage := ""
	if !slices.Contains(cfg.Disable, "local-storage") {
		storage = cfg.DefaultLocalStoragePath
		if storage == "" {
			storage = filepath.Join(cfg.DataDir, "storage")
		}
	}
	return &config.Agent{
		DataDir:            cfg.DataDir,
		NodeName:           name,
		NodeIP:             ip,
		ServerURL:          serverURL,
		ClusterCIDR:        cfg.ClusterCIDR,
		ServiceCIDR:        cfg.ServiceCIDR,
		ClusterDNS:         cfg.ClusterDNS,
		ClusterDomain:      cfg.ClusterDomain,
		ExtraKubeletArgs:   cfg.ExtraKubeletArgs,
		ExtraKubeProxyArgs: cfg.ExtraKubeProxyArgs,
		LocalStoragePath:   storage,
		RunDir:             config.DefaultRunDir,
	}, nil
}

// InitNode gives the server's own node its certificates and kubeconfigs,
// issued by the server's CAs: the in-process side of joining.
func (s *Server) InitNode(node *config.Agent) error {
	serverTLS := s.tls
	nodeTLS := pki.Dir(node.TLSDir())
	names := certutil.AltNames{DNSNames: []string{node.NodeName, "localhost"}, IPs: []net.IP{node.NodeIP, net.IPv4(127, 0, 0, 1)}}
	if err := pki.EnsureNode(serverTLS, nodeTLS, node.NodeName, names); err != nil {
		return fmt.Errorf("node certificates in %s: %w", nodeTLS, err)
	}
	for path, cert := range map[string]string{
		node.KubeletKubeconfig():   pki.ClientKubelet,
		node.KubeProxyKubeconfig(): pki.ClientKubeProxy,
		node.LocalPathKubeconfig(): pki.ClientLocalPath,
	} {
		kc := pki.Kubeconfig{Server: node.ServerURL, CA: nodeTLS.Cert(pki.ServerCA), Cert: nodeTLS.Cert(cert), Key: nodeTLS.Key(cert)}
		if err := kc.Write(path, 0o600); err != nil {
			return fmt.Errorf("writing node kubeconfig: %w", err)
		}
	}
	return nil
}
