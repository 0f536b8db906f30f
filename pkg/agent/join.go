package agent

import (
	"context"
	"fmt"
	"net"
	"path/filepath"

	netutils "k8s.io/utils/net"

	"github.com/skiff-dev/skiff/internal/lifecycle"
	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/pki"
	"github.com/skiff-dev/skiff/pkg/supervisor"
)

// Join is the node's first part: it joins the cluster through the server's
// join API (the server's own node too), takes the cluster's settings into
// cfg for the parts after it, and writes the node's kubeconfigs.
func Join(cfg *config.Agent) lifecycle.Component {
	return lifecycle.Step("join", func(ctx context.Context) error {
		if cfg.Node.WithNodeID {
			id, err := nodeID(cfg.NodeIDFile())
			if err != nil {
				return err
			}
			cfg.NodeName += "-" + id
		}
		opts, err := joinOptions(cfg)
		if err != nil {
			return err
		}
		ac, err := supervisor.Join(ctx, opts)
		if err != nil {
			return err
		}
		if err := applyClusterConfig(cfg, ac); err != nil {
			return err
		}
		kubeconfigs := map[string]string{cfg.KubeletKubeconfig(): pki.ClientKubelet, cfg.KubeProxyKubeconfig(): pki.ClientKubeProxy, cfg.FlannelKubeconfig(): pki.ClientFlannel}
		if cfg.LocalStoragePath != "" {
			kubeconfigs[cfg.LocalPathKubeconfig()] = pki.ClientLocalPath
		}
		tls := opts.TLSDir
		for path, cert := range kubeconfigs {
			kc := pki.Kubeconfig{Server: cfg.ServerURL, CA: tls.Cert(pki.ServerCA), Cert: tls.Cert(cert), Key: tls.Key(cert)}
			if err := kc.Write(path, 0o600); err != nil {
				return fmt.Errorf("writing node kubeconfig: %w", err)
			}
		}
		return nil
	})
}

// joinOptions are how the node in cfg joins, once its name is final.
func joinOptions(cfg *config.Agent) (supervisor.JoinOptions, error) {
	token, err := supervisor.ParseToken(cfg.Token)
	if err != nil {
		return supervisor.JoinOptions{}, fmt.Errorf("join token: %w", err)
	}
	return supervisor.JoinOptions{
		Server: cfg.ServerURL, Token: token, NodeName: cfg.NodeName,
		Addresses: []net.IP{cfg.NodeIP}, TLSDir: pki.Dir(cfg.TLSDir()), PasswordFile: cfg.PasswordFile(),
	}, nil
}

// applyClusterConfig takes the server's settings for the cluster into cfg.
func applyClusterConfig(cfg *config.Agent, ac *supervisor.AgentConfig) error {
	var err error
	bad := func(what, value string) error {
		return fmt.Errorf("the server sent an invalid %s %q", what, value)
	}
	if _, cfg.ClusterCIDR, err = netutils.ParseCIDRSloppy(ac.ClusterCIDR); err != nil {
		return bad("cluster CIDR", ac.ClusterCIDR)
	}
	if _, cfg.ServiceCIDR, err = netutils.ParseCIDRSloppy(ac.ServiceCIDR); err != nil {
		return bad("service CIDR", ac.ServiceCIDR)
	}
	if cfg.ClusterDNS = netutils.ParseIPSloppy(ac.ClusterDNS); cfg.ClusterDNS == nil {
		return bad("cluster DNS address", ac.ClusterDNS)
	}
	cfg.ClusterDomain, cfg.FlannelBackend = ac.ClusterDomain, ac.FlannelBackend
	cfg.DisableNetworkPolicy = ac.DisableNetworkPolicy
	cfg.LocalStoragePath = ""
	if ac.LocalStorage {
		cfg.LocalStoragePath = ac.LocalStoragePath
		if cfg.LocalStoragePath == "" {
			cfg.LocalStoragePath = filepath.Join(cfg.DataDir, "storage")
		}
	}
	return nil
}

// nodeID reads the node's random name suffix, or makes and keeps one.
func nodeID(path string) (string, error) { return pki.RandomSecret(path, 4) }
