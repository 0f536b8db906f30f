package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/internal/kubeclient"
	"github.com/skiff-dev/skiff/internal/lifecycle"
	"github.com/skiff-dev/skiff/internal/loadbalancer"
	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/pki"
)

// LoadBalancer is a joining node's first part: a load balancer on
// loopback over the cluster's servers, through which the node joins and
// its kubelet, kube-proxy and pod network reach the apiservers, so that
// they keep working when the server the node joined is gone. It starts
// with the server given and those it learnt before (kept in the data
// dir), and from then on cfg.ServerURL is its address.
func LoadBalancer(cfg *config.Agent) lifecycle.Component {
	var lb *loadbalancer.LoadBalancer
	return lifecycle.Run("apiserver load balancer", func(ctx context.Context) error {
		return lb.Serve(ctx)
	}).WithSetup(func(context.Context) error {
		given, err := hostPort(cfg.ServerURL)
		if err != nil {
			return err
		}
		servers := append([]string{given}, knownServers(cfg)...)
		if lb, err = loadbalancer.New(net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.LBServerPort)), slices.Compact(servers)); err != nil {
			return fmt.Errorf("the node's apiserver load balancer: %w; choose another port with --lb-server-port", err)
		}
		cfg.Balancer = lb
		cfg.JoinURL, cfg.ServerURL = cfg.ServerURL, lb.URL()
		klog.InfoS("Apiserver load balancer listening", "address", lb.Addr(), "servers", lb.Servers())
		return nil
	})
}

// WatchServers keeps the load balancer's servers those the cluster
// advertises (the apiservers in the kubernetes Endpoints), with the one
// the node was given last, and keeps the list in the data dir for the
// next start. It runs after the join, with kube-proxy's credentials.
func WatchServers(cfg *config.Agent) lifecycle.Component {
	return lifecycle.Run("apiserver list", func(ctx context.Context) error {
		client, err := kubeclient.New(cfg.KubeProxyKubeconfig(), "skiff-agent-loadbalancer")
		if err != nil {
			return err
		}
		given, _ := hostPort(cfg.JoinURL)
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			loadbalancer.WatchServers(ctx, client, cfg.Balancer, []string{given})
		}()
		defer func() { <-watched }() // the watch ends with ctx, and is awaited
		saved := knownServers(cfg)
		for {
			if now := cfg.Balancer.Servers(); !slices.Equal(now, saved) {
				if err := saveServers(cfg, now); err != nil {
					klog.ErrorS(err, "Keeping the list of servers")
				}
				saved = now
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(5 * time.Second):
			}
		}
	})
}

func hostPort(serverURL string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil || u.Port() == "" {
		return "", fmt.Errorf("server URL %q: want https://host:port", serverURL)
	}
	return u.Host, nil
}

func serversFile(cfg *config.Agent) string { return filepath.Join(cfg.EtcDir(), "servers.json") }

// knownServers are the servers the node learnt before, if any.
func knownServers(cfg *config.Agent) []string {
	var servers []string
	data, err := os.ReadFile(serversFile(cfg))
	if err == nil {
		err = json.Unmarshal(data, &servers)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		klog.InfoS("Ignoring the saved list of servers", "file", serversFile(cfg), "err", err)
	}
	return servers
}

func saveServers(cfg *config.Agent, servers []string) error {
	data, err := json.Marshal(servers)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.EtcDir(), 0o700); err != nil {
		return err
	}
	return pki.WriteFileIfChanged(serversFile(cfg), data, 0o600)
}
