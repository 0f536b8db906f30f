package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/internal/lifecycle"
	"github.com/skiff-dev/skiff/internal/memory"
	"github.com/skiff-dev/skiff/internal/profiling"
	"github.com/skiff-dev/skiff/pkg/agent"
	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/supervisor"
	"github.com/skiff-dev/skiff/pkg/version"
)

// agentFlags are `skiff agent`'s flags, bound into the node's settings.
type agentFlags struct {
	configFile string
	dataDir    string
	server     string
	token      string
	tokenFile  string
	lbPort     int
	node       config.Node
	verbosity  int
}

func (f *agentFlags) add(fs *pflag.FlagSet) {
	fs.StringVarP(&f.configFile, "config", "c", config.DefaultConfigFile, "Config file whose keys are these flag names; flags and SKIFF_* environment variables override it")
	fs.StringVarP(&f.dataDir, "data-dir", "d", config.DefaultDataDir, "Folder to hold state")
	fs.StringVarP(&f.server, "server", "s", "", "The server to join, https://<server>:6443 ($SKIFF_URL)")
	fs.StringVarP(&f.token, "token", "t", "", "The server's join token: <data-dir>/server/agent-token on the server, or one from `skiff token create`")
	fs.StringVar(&f.tokenFile, "token-file", "", "File holding --token")
	fs.IntVar(&f.lbPort, "lb-server-port", config.DefaultLBServerPort, "Loopback port of the node's load balancer over the cluster's servers")
	addNodeFlags(fs, &f.node)
	fs.IntVarP(&f.verbosity, "v", "v", 0, "Log verbosity")
}

func newAgentCommand() *cobra.Command {
	f := &agentFlags{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a node that joins a skiff server: containerd, the kubelet, kube-proxy and the pod network",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			from := origins{}
			if err := applyEnv(fs, from); err != nil {
				return err
			}
			if err := applyConfigFile(fs, f.configFile, fs.Changed("config"), from); err != nil {
				return err
			}
			cfg, err := f.agentConfig(from)
			if err != nil {
				return err
			}
			setVerbosity(f.verbosity)
			return runAgent(cfg)
		},
	}
	f.add(cmd.Flags())
	return cmd
}

// agentConfig checks every setting and builds the node's configuration,
// naming the flag or config file line of any bad value.
func (f *agentFlags) agentConfig(from origins) (*config.Agent, error) {
	if f.server == "" {
		return nil, errors.New("--server (or SKIFF_URL) is required: the URL of the server to join, such as https://192.0.2.10:6443")
	}
	if u, err := url.Parse(f.server); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, from.wrap(&config.FieldError{Field: "server", Value: f.server, Reason: "not a URL such as https://192.0.2.10:6443"})
	}
	token, err := tokenFrom("token", f.token, f.tokenFile)
	if err != nil {
		return nil, err
	}
	if token == "" {
		return nil, errors.New("--token (or SKIFF_TOKEN, --token-file) is required: the server's <data-dir>/server/agent-token, or one from `skiff token create` on the server")
	}
	if _, err := supervisor.ParseToken(token); err != nil {
		return nil, from.wrap(&config.FieldError{Field: "token", Value: "…", Reason: err.Error()})
	}
	if f.dataDir == "" {
		return nil, from.wrap(&config.FieldError{Field: "data-dir", Reason: "must not be empty"})
	}
	if err := f.node.Validate(); err != nil {
		return nil, from.wrap(err)
	}
	ip, err := utilnet.ResolveBindAddress(net.IPv4zero)
	if err != nil && f.node.IP == "" {
		return nil, fmt.Errorf("finding this node's address: %w; set --node-ip", err)
	}
	if f.lbPort < 1 || f.lbPort > 65535 {
		return nil, from.wrap(&config.FieldError{Field: "lb-server-port", Value: fmt.Sprint(f.lbPort), Reason: "must be between 1 and 65535"})
	}
	cfg, err := config.NewAgent(f.dataDir, f.node, f.server, token, ip)
	if err == nil {
		cfg.LBServerPort = f.lbPort
	}
	return cfg, err
}

// runAgent runs the node until SIGINT or SIGTERM: it joins the server, then
// runs containerd, the kubelet, kube-proxy and the pod network.
func runAgent(cfg *config.Agent) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // restore default handling: a second signal kills
	}()
	// Process-wide, once, as for the server (see runServer).
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	memory.SetGCPercent()
	notifySocket := os.Getenv("NOTIFY_SOCKET")
	os.Unsetenv("NOTIFY_SOCKET")
	klog.InfoS("Starting skiff agent", "version", version.Version, "kubernetes", version.Kubernetes(), "dataDir", cfg.DataDir, "server", cfg.ServerURL, "node", cfg.NodeName)
	if err := agent.Preflight(cfg); err != nil {
		return err
	}
	parts := []lifecycle.Component{agent.LoadBalancer(cfg), agent.Join(cfg), agent.WatchServers(cfg)}
	if cfg.Node.PprofAddress != "" {
		pprof, err := profiling.Server(cfg.Node.PprofAddress)
		if err != nil {
			return err
		}
		parts = append([]lifecycle.Component{pprof}, parts...)
	}
	nodeParts := agent.Components(cfg)
	parts = append(parts, nodeParts.Runtime...)
	parts = append(parts, nodeParts.Kubernetes...)
	parts = append(parts, agent.Ready(cfg, notifySocket), settleAfter())
	err := (&lifecycle.Runner{Components: parts}).Run(ctx)
	klog.InfoS("skiff agent stopped")
	return err
}
