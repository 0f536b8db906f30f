package agent

import (
	"context"
	"fmt"
	"os/exec"
	"time"

	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/klog/v2"
	proxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"

	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/control"
)

// proxyMode is nftables where the host can run it (the nft command and the
// kernel's nf_tables), else iptables.
func proxyMode() string {
	if _, err := exec.LookPath("nft"); err == nil {
		if err := exec.Command("nft", "list", "tables").Run(); err == nil {
			return "nftables"
		}
	}
	return "iptables"
}

// kubeProxyArgs are kube-proxy's flags, then the user's --kube-proxy-arg.
// The conntrack values of 0 leave the host's sysctls as they are (they are
// read-only in containers and not kube-proxy's business on an edge box).
//
// kube-proxy syncs its rules at most once per minSyncPeriod, 1 s by
// default, a bound meant for clusters of thousands of Services. Here a sync
// is one small nft (or iptables-restore) transaction, and waiting up to a
// second delayed every Service's first ready endpoint: CoreDNS answered
// pods ~0.6 s after it was ready. The flag, despite its name, sets the
// period of the nftables mode too.
func kubeProxyArgs(cfg *config.Agent, mode string) []string {
	return control.Args(map[string]string{
		"kubeconfig":                        cfg.KubeProxyKubeconfig(),
		"hostname-override":                 cfg.NodeName,
		"cluster-cidr":                      cfg.ClusterCIDR.String(),
		"proxy-mode":                        mode,
		"healthz-bind-address":              "127.0.0.1:10256",
		"metrics-bind-address":              "127.0.0.1:10249",
		"conntrack-max-per-core":            "0",
		"conntrack-tcp-timeout-established": "0s",
		"conntrack-tcp-timeout-close-wait":  "0s",
		"iptables-min-sync-period":          minSyncPeriod.String(),
	}, cfg.Node.ExtraKubeProxyArgs)
}

// minSyncPeriod is kube-proxy's least time between two syncs of its rules.
const minSyncPeriod = 100 * time.Millisecond

// kubeProxyOptions parses kube-proxy's arguments with its own options type.
func kubeProxyOptions(args []string) (*proxyapp.Options, error) {
	opts := proxyapp.NewOptions()
	fs := pflag.NewFlagSet("kube-proxy", pflag.ContinueOnError)
	fs.SetNormalizeFunc(cliflag.WordSepNormalizeFunc)
	opts.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("kube-proxy arguments: %w (check --kube-proxy-arg)", err)
	}
	if err := opts.Complete(fs); err != nil {
		return nil, fmt.Errorf("kube-proxy arguments: %w (check --kube-proxy-arg)", err)
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("kube-proxy arguments: %w (check --kube-proxy-arg)", err)
	}
	return opts, nil
}

// runKubeProxy runs the upstream kube-proxy until ctx ends. Its Run keeps
// waiting on its error channel after the proxy stops, so this returns when
// ctx ends rather than when Run does.
func runKubeProxy(ctx context.Context, args []string) error {
	opts, err := kubeProxyOptions(args)
	if err != nil {
		return err
	}
	errCh := make(chan error, 1)
	go func() { errCh <- opts.Run(ctx) }()
	select {
	case err := <-errCh:
		return err
	case <-ctx.Done():
		klog.InfoS("Stopping kube-proxy")
		return nil
	}
}
