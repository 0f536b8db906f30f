package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/flannel-io/flannel/pkg/backend"
	_ "github.com/flannel-io/flannel/pkg/backend/hostgw" // the host-gw backend
	_ "github.com/flannel-io/flannel/pkg/backend/vxlan"  // the vxlan backend
	_ "github.com/flannel-io/flannel/pkg/backend/wireguard"
	"github.com/flannel-io/flannel/pkg/ip"
	"github.com/flannel-io/flannel/pkg/ipmatch"
	"github.com/flannel-io/flannel/pkg/lease"
	"github.com/flannel-io/flannel/pkg/subnet"
	"github.com/flannel-io/flannel/pkg/subnet/kube"
	"github.com/flannel-io/flannel/pkg/trafficmngr"
	"github.com/flannel-io/flannel/pkg/trafficmngr/iptables"
	"github.com/flannel-io/flannel/pkg/trafficmngr/nftables"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/pki"
)

// flannelAnnotationPrefix is the prefix of flannel's Node annotations
// (backend data, public IP), as flannel's own deployments use it.
const flannelAnnotationPrefix = "flannel.alpha.coreos.com"

// masqResyncSeconds is how often flannel checks its masquerade and forward
// rules are still there.
const masqResyncSeconds = 60

// flannelNetConf is flannel's network configuration (its net-conf.json)
// for the cluster CIDR and backend: the names of flannel's own file.
func flannelNetConf(cfg *config.Agent, nftables bool) ([]byte, error) {
	backendType := cfg.FlannelBackend
	if backendType == "wireguard-native" {
		backendType = "wireguard" // flannel's kernel WireGuard backend
	}
	return json.MarshalIndent(map[string]any{
		"Network":        cfg.ClusterCIDR.String(),
		"EnableIPv4":     true,
		"EnableNFTables": nftables,
		"Backend":        map[string]string{"Type": backendType},
	}, "", "  ")
}

// runFlannel runs the pod network across nodes with flannel as a library,
// as flanneld's main does: the kube subnet manager (each node's subnet is
// its pod CIDR, its backend data in its Node's annotations), the backend on
// the interface of the node's address, and the masquerade and forward
// rules for traffic leaving the cluster CIDR. Once its subnet manager runs
// it waits for podCIDR (the node's pod CIDR, which its lease needs); once
// the network is up it calls ready with the node's subnet and the MTU pods
// must use, then runs until ctx ends.
func runFlannel(ctx context.Context, cfg *config.Agent, podCIDR func(context.Context) error, ready func(subnet string, mtu int) error) error {
	nft := proxyMode() == "nftables"
	netConf, err := flannelNetConf(cfg, nft)
	if err != nil {
		return err
	}
	netConfPath := filepath.Join(cfg.EtcDir(), "flannel", "net-conf.json")
	if err := os.MkdirAll(filepath.Dir(netConfPath), 0o755); err != nil {
		return err
	}
	if err := pki.WriteFileIfChanged(netConfPath, netConf, 0o644); err != nil {
		return fmt.Errorf("writing flannel's network configuration: %w", err)
	}
	// Process-wide, once: flannel's kube subnet manager learns its node's
	// name from $NODE_NAME only, and one node runs per process.
	if err := os.Setenv("NODE_NAME", cfg.NodeName); err != nil {
		return err
	}
	klog.InfoS("Running flannel", "backend", cfg.FlannelBackend, "network", cfg.ClusterCIDR, "iface", cfg.NodeIP, "nftables", nft)
	// Everything flannel starts ends with this context; the wait group
	// holds its goroutines, awaited before returning.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()

	sm, err := kube.NewSubnetManager(ctx, "", cfg.FlannelKubeconfig(), flannelAnnotationPrefix, netConfPath, false)
	if err != nil {
		return fmt.Errorf("flannel subnet manager: %w", err)
	}
	netCfg, err := sm.GetNetworkConfig(ctx)
	if err != nil {
		return fmt.Errorf("flannel network configuration: %w", err)
	}
	if err := podCIDR(ctx); err != nil {
		return err
	}
	stack, err := ipmatch.GetIPFamily(netCfg.EnableIPv4, netCfg.EnableIPv6)
	if err != nil {
		return err
	}
	// The interface that holds the node's address carries the pod network.
	ext, err := ipmatch.LookupExtIface(cfg.NodeIP.String(), "", "", stack, ipmatch.PublicIPOpts{PublicIP: cfg.NodeIP.String()})
	if err != nil {
		return fmt.Errorf("flannel: no interface holds the node's address %s: %w (set --node-ip)", cfg.NodeIP, err)
	}
	be, err := backend.NewManager(ctx, leaseRetry{sm}, ext).GetBackend(netCfg.BackendType)
	if err != nil {
		return fmt.Errorf("flannel backend %s: %w", netCfg.BackendType, err)
	}
	bn, err := be.RegisterNetwork(ctx, &wg, netCfg)
	if err != nil {
		return fmt.Errorf("flannel backend %s: %w", netCfg.BackendType, err)
	}
	var traffic trafficmngr.TrafficManager = &iptables.IPTablesManager{}
	if nft {
		traffic = &nftables.NFTablesManager{}
	}
	if err := traffic.Init(ctx); err != nil {
		return fmt.Errorf("flannel traffic rules: %w", err)
	}
	if err := traffic.SetupAndEnsureMasqRules(ctx, netCfg.Network, ip.IP4Net{}, ip.IP4Net{}, netCfg.IPv6Network, ip.IP6Net{}, ip.IP6Net{},
		bn.Lease(), masqResyncSeconds, false); err != nil {
		return fmt.Errorf("flannel masquerade rules: %w", err)
	}
	traffic.SetupAndEnsureForwardRules(ctx, netCfg.Network, netCfg.IPv6Network, masqResyncSeconds)
	if err := ready(bn.Lease().Subnet.String(), bn.MTU()); err != nil {
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		bn.Run(ctx)
	}()
	<-ctx.Done()
	return nil
}

// leaseRetry is flannel's subnet manager, whose AcquireLease is tried again
// for a while when it fails because its node informer has not yet seen the
// pod CIDR the API already shows (podCIDR in runFlannel waits on the API):
// a few milliseconds at most. Flannel returns that case as a plain error.
type leaseRetry struct{ subnet.Manager }

func (m leaseRetry) AcquireLease(ctx context.Context, attrs *lease.LeaseAttrs) (*lease.Lease, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, err := m.Manager.AcquireLease(ctx, attrs)
		if err == nil || !strings.Contains(err.Error(), "pod cidr not assigned") || time.Now().After(deadline) {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}
