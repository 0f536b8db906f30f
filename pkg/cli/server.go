package cli

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/util/taints"

	"github.com/skiff-dev/skiff/internal/lifecycle"
	"github.com/skiff-dev/skiff/internal/memory"
	"github.com/skiff-dev/skiff/internal/profiling"
	"github.com/skiff-dev/skiff/pkg/agent"
	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/datastore"
	"github.com/skiff-dev/skiff/pkg/server"
	"github.com/skiff-dev/skiff/pkg/simnode"
	"github.com/skiff-dev/skiff/pkg/version"
)

// serverFlags holds the raw flag values; serverConfig turns them into a
// validated config.Server.
type serverFlags struct {
	configFile          string
	dataDir             string
	bindAddress         string
	advertiseAddress    string
	httpsListenPort     int
	tlsSANs             []string
	clusterCIDR         string
	serviceCIDR         string
	clusterDNS          string
	clusterDomain       string
	writeKubeconfig     string
	writeKubeconfigMode string
	datastore           datastore.Config
	clusterInit         bool
	secretsEncryption   bool
	snapshotSchedule    string
	snapshotRetention   int
	snapshotDir         string
	restorePath         string
	joinServer          string
	etcdPorts           [3]int
	apiserverArgs       []string
	controllerArgs      []string
	schedulerArgs       []string
	disableAgent        bool
	disable             []string
	disableHelm         bool
	disableNetpol       bool
	localStoragePath    string
	flannelBackend      string
	tokens              tokenFlags
	node                config.Node
	verbosity           int
	simulated           simulatedFlags
}

// tokenFlags are the server's join tokens, given or read from files.
type tokenFlags struct {
	token, tokenFile, agentToken, agentTokenFile string
}

func (t *tokenFlags) add(fs *pflag.FlagSet) {
	fs.StringVarP(&t.token, "token", "t", "", "Token (or passphrase) that joins servers and agents (default: kept in <data-dir>/server/token, made at the first start)")
	fs.StringVar(&t.tokenFile, "token-file", "", "File holding --token")
	fs.StringVar(&t.agentToken, "agent-token", "", "Token (or passphrase) that joins agents only (default: kept in <data-dir>/server/agent-token, made at the first start)")
	fs.StringVar(&t.agentTokenFile, "agent-token-file", "", "File holding --agent-token")
}

// resolve reads the token files into the tokens.
func (t *tokenFlags) resolve() (token, agentToken string, err error) {
	if token, err = tokenFrom("token", t.token, t.tokenFile); err != nil {
		return "", "", err
	}
	agentToken, err = tokenFrom("agent-token", t.agentToken, t.agentTokenFile)
	return token, agentToken, err
}

// tokenFrom is a token given on its flag or, failing that, in the file its
// -file flag names.
func tokenFrom(flag, value, file string) (string, error) {
	if value != "" || file == "" {
		return value, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--%s-file: %w", flag, err)
	}
	if t := strings.TrimSpace(string(data)); t != "" {
		return t, nil
	}
	return "", fmt.Errorf("--%s-file %s is empty", flag, file)
}

// addNodeFlags binds a node's own settings, the same on skiff server (its
// own node) and skiff agent.
func addNodeFlags(fs *pflag.FlagSet, n *config.Node) {
	fs.StringVar(&n.Name, "node-name", "", "Name of this node (default: the host name)")
	fs.BoolVar(&n.WithNodeID, "with-node-id", false, "Append a random suffix, kept in the data dir, to the node's name (for hosts that share a name)")
	fs.StringVar(&n.IP, "node-ip", "", "IP address of this node (default: the address of the default route; a server's: its advertise address)")
	fs.StringArrayVar(&n.Labels, "node-label", nil, "Label of this node, key=value (repeatable)")
	fs.StringArrayVar(&n.Taints, "node-taint", nil, "Taint of this node, key=value:Effect (repeatable)")
	fs.StringArrayVar(&n.ExtraKubeletArgs, "kubelet-arg", nil, "Extra kubelet flag as flag=value (repeatable)")
	fs.StringArrayVar(&n.ExtraKubeProxyArgs, "kube-proxy-arg", nil, "Extra kube-proxy flag as flag=value (repeatable)")
	fs.StringVar(&n.PprofAddress, "pprof-address", "", "Serve Go profiles of this process (/debug/pprof/) on this loopback host:port, e.g. 127.0.0.1:6060 (default: off)")
	fs.StringVar(&n.PrivateRegistry, "private-registry", config.DefaultPrivateRegistry, "Registry mirrors, TLS and credentials for this node's image pulls, as k3s's registries.yaml (the default path may be absent)")
	fs.DurationVar(&n.CertificateCheckInterval, "certificate-check-interval", config.DefaultCertificateCheckInterval, "How often certificates are checked while running; those within 120 days of expiry are renewed (0: only at start)")
}

type simulatedFlags struct {
	count             int
	cpu, memory, pods string
	labels, taints    []string
}

func (f *serverFlags) add(fs *pflag.FlagSet) {
	fs.StringVarP(&f.configFile, "config", "c", config.DefaultConfigFile, "Config file whose keys are these flag names; flags and SKIFF_* environment variables (SKIFF_DATA_DIR for --data-dir) override it")
	fs.StringVarP(&f.dataDir, "data-dir", "d", config.DefaultDataDir, "Folder to hold state")
	fs.StringVar(&f.bindAddress, "bind-address", config.DefaultBindAddress, "Address the apiserver listens on")
	fs.StringVar(&f.advertiseAddress, "advertise-address", "", "Address the apiserver advertises to the cluster (default: the address of the default-route interface)")
	fs.IntVar(&f.httpsListenPort, "https-listen-port", config.DefaultHTTPSListenPort, "HTTPS port of the apiserver (0: any free port; the kubeconfig names the one chosen)")
	fs.StringSliceVar(&f.tlsSANs, "tls-san", nil, "Extra host names or IP addresses for the apiserver's serving certificate")
	fs.StringVar(&f.clusterCIDR, "cluster-cidr", config.DefaultClusterCIDR, "Network CIDR for pod IPs")
	fs.StringVar(&f.serviceCIDR, "service-cidr", config.DefaultServiceCIDR, "Network CIDR for service IPs")
	fs.StringVar(&f.clusterDNS, "cluster-dns", "", "Cluster DNS service IP (default: the tenth address of the service CIDR, 10.43.0.10)")
	fs.StringVar(&f.clusterDomain, "cluster-domain", config.DefaultClusterDomain, "Cluster domain")
	fs.StringVarP(&f.writeKubeconfig, "write-kubeconfig", "o", config.DefaultKubeconfig, "Write the admin kubeconfig to this file")
	fs.StringVar(&f.writeKubeconfigMode, "write-kubeconfig-mode", fmt.Sprintf("%04o", config.DefaultKubeconfigMode), "File mode of the admin kubeconfig, for example 0644")
	fs.StringVar(&f.datastore.Endpoint, "datastore-endpoint", "", "Datastore: sqlite:///path, memory://, postgres://..., mysql://..., nats://... or an etcd https://host:2379 (default: SQLite in the data dir)")
	fs.StringVar(&f.datastore.CAFile, "datastore-cafile", "", "TLS CA file for the datastore")
	fs.StringVar(&f.datastore.CertFile, "datastore-certfile", "", "TLS client certificate file for the datastore")
	fs.StringVar(&f.datastore.KeyFile, "datastore-keyfile", "", "TLS client key file for the datastore")
	fs.DurationVar(&f.datastore.CompactInterval, "datastore-compact-interval", datastore.DefaultCompactInterval, "How often old revisions are compacted, keeping the newest 1000 (0: when the apiserver asks)")
	fs.StringVar(&f.snapshotSchedule, "snapshot-schedule-cron", config.DefaultSnapshotSchedule, "When to snapshot the datastore (cron; \"\" for never)")
	fs.IntVar(&f.snapshotRetention, "snapshot-retention", config.DefaultSnapshotRetention, "How many scheduled snapshots to keep")
	fs.StringVar(&f.snapshotDir, "snapshot-dir", "", "Directory for snapshots (default: <data-dir>/server/db/snapshots)")
	fs.StringVar(&f.restorePath, "cluster-reset-restore-path", "", "Restore embedded etcd from this snapshot (skiff datastore snapshot save) as a cluster of this server alone, once")
	fs.BoolVar(&f.secretsEncryption, "secrets-encryption", true, "Encrypt Secrets at rest (secretbox; the key in <data-dir>/server/cred/encryption-config.json)")
	fs.BoolVar(&f.clusterInit, "cluster-init", false, "Use embedded etcd as the datastore, so that more servers can join (moves an existing SQLite datastore into it once)")
	fs.StringVarP(&f.joinServer, "server", "s", "", "Join the cluster of this server, https://<server>:6443, as another server ($SKIFF_URL; needs its --token)")
	fs.IntVar(&f.etcdPorts[0], "etcd-client-port", datastore.DefaultEtcdClientPort, "Embedded etcd's client port")
	fs.IntVar(&f.etcdPorts[1], "etcd-peer-port", datastore.DefaultEtcdPeerPort, "Embedded etcd's peer port")
	fs.IntVar(&f.etcdPorts[2], "etcd-metrics-port", datastore.DefaultEtcdMetricsPort, "Embedded etcd's metrics port, on loopback")
	fs.StringArrayVar(&f.apiserverArgs, "kube-apiserver-arg", nil, "Extra kube-apiserver flag as flag=value (repeatable)")
	fs.StringArrayVar(&f.controllerArgs, "kube-controller-manager-arg", nil, "Extra kube-controller-manager flag as flag=value (repeatable)")
	fs.StringArrayVar(&f.schedulerArgs, "kube-scheduler-arg", nil, "Extra kube-scheduler flag as flag=value (repeatable)")
	fs.BoolVar(&f.disableAgent, "disable-agent", false, "Run only the control plane, no node agent")
	fs.StringSliceVar(&f.disable, "disable", nil, "Add-ons not to deploy, and to remove if deployed: coredns, local-storage, metrics-server, servicelb (repeatable or comma-separated)")
	fs.BoolVar(&f.disableHelm, "disable-helm-controller", false, "Do not serve HelmChart and HelmChartConfig (helm.cattle.io/v1) nor install their charts")
	fs.BoolVar(&f.disableNetpol, "disable-network-policy", false, "Do not enforce NetworkPolicies on the cluster's nodes")
	fs.StringVar(&f.localStoragePath, "default-local-storage-path", "", "Directory for the local-path StorageClass's volumes (default: <data-dir>/storage)")
	fs.StringVar(&f.flannelBackend, "flannel-backend", config.DefaultFlannelBackend, "Pod network across nodes: "+strings.Join(config.FlannelBackends(), ", ")+" (none: bring your own CNI)")
	f.tokens.add(fs)
	addNodeFlags(fs, &f.node)
	fs.IntVarP(&f.verbosity, "v", "v", 0, "Log verbosity")
	sim := simnode.DefaultConfig()
	fs.IntVar(&f.simulated.count, "simulated-nodes", 0, "Register this many simulated nodes that run pods without containers (for scale tests)")
	fs.StringVar(&f.simulated.cpu, "simulated-node-cpu", sim.CPU.String(), "CPU capacity of each simulated node")
	fs.StringVar(&f.simulated.memory, "simulated-node-memory", sim.Memory.String(), "Memory capacity of each simulated node")
	fs.StringVar(&f.simulated.pods, "simulated-node-pods", sim.Pods.String(), "Pod capacity of each simulated node")
	fs.StringArrayVar(&f.simulated.labels, "simulated-node-label", nil, "Label of each simulated node, key=value (repeatable)")
	fs.StringArrayVar(&f.simulated.taints, "simulated-node-taint", nil, "Taint of each simulated node, key=value:Effect (repeatable)")
}

func newServerCommand() *cobra.Command {
	f := &serverFlags{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the Kubernetes control plane and, unless --disable-agent, this node's agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			from := origins{}
			fs := cmd.Flags()
			if err := applyEnv(fs, from); err != nil {
				return err
			}
			if err := applyConfigFile(fs, f.configFile, fs.Changed("config"), from); err != nil {
				return err
			}
			cfg, err := f.serverConfig(from)
			if err != nil {
				return err
			}
			setVerbosity(f.verbosity)
			return runServer(cfg)
		},
	}
	f.add(cmd.Flags())
	return cmd
}

// serverConfig builds and validates the typed configuration, naming the flag
// or config file line of any bad value.
func (f *serverFlags) serverConfig(from origins) (*config.Server, error) {
	cfg := &config.Server{
		DataDir:                    f.dataDir,
		BindAddress:                f.bindAddress,
		AdvertiseAddress:           f.advertiseAddress,
		HTTPSListenPort:            f.httpsListenPort,
		TLSSANs:                    f.tlsSANs,
		ClusterDomain:              f.clusterDomain,
		WriteKubeconfig:            f.writeKubeconfig,
		Datastore:                  f.datastore,
		ClusterInit:                f.clusterInit,
		SecretsEncryption:          f.secretsEncryption,
		SnapshotSchedule:           f.snapshotSchedule,
		SnapshotRetention:          f.snapshotRetention,
		SnapshotDir:                f.snapshotDir,
		ClusterResetRestorePath:    f.restorePath,
		JoinServer:                 f.joinServer,
		EtcdClientPort:             f.etcdPorts[0],
		EtcdPeerPort:               f.etcdPorts[1],
		EtcdMetricsPort:            f.etcdPorts[2],
		ExtraAPIServerArgs:         f.apiserverArgs,
		ExtraControllerManagerArgs: f.controllerArgs,
		ExtraSchedulerArgs:         f.schedulerArgs,
		DisableAgent:               f.disableAgent,
		Disable:                    f.disable,
		DisableHelmController:      f.disableHelm,
		DisableNetworkPolicy:       f.disableNetpol,
		DefaultLocalStoragePath:    f.localStoragePath,
		FlannelBackend:             f.flannelBackend,
		Node:                       f.node,
	}
	var err error
	if cfg.Token, cfg.AgentToken, err = f.tokens.resolve(); err != nil {
		return nil, err
	}
	if cfg.ClusterCIDR, err = config.ParseCIDR("cluster-cidr", f.clusterCIDR); err != nil {
		return nil, from.wrap(err)
	}
	if cfg.ServiceCIDR, err = config.ParseCIDR("service-cidr", f.serviceCIDR); err != nil {
		return nil, from.wrap(err)
	}
	if f.clusterDNS == "" {
		if cfg.ClusterDNS, err = config.DefaultClusterDNS(cfg.ServiceCIDR); err != nil {
			return nil, from.wrap(&config.FieldError{Field: "service-cidr", Value: f.serviceCIDR, Reason: "too small to hold the cluster DNS address"})
		}
	} else if cfg.ClusterDNS = net.ParseIP(f.clusterDNS); cfg.ClusterDNS == nil {
		return nil, from.wrap(&config.FieldError{Field: "cluster-dns", Value: f.clusterDNS, Reason: "not an IP address"})
	}
	mode, err := strconv.ParseUint(f.writeKubeconfigMode, 8, 32)
	if err != nil {
		return nil, from.wrap(&config.FieldError{Field: "write-kubeconfig-mode", Value: f.writeKubeconfigMode, Reason: "must be an octal file mode such as 0600"})
	}
	cfg.WriteKubeconfigMode = os.FileMode(mode)
	if cfg.SimulatedNodes, err = f.simulated.config(); err != nil {
		return nil, from.wrap(err)
	}
	cfg.SimulatedNodes.Version = version.Kubernetes()
	if err := cfg.Validate(); err != nil {
		return nil, from.wrap(err)
	}
	return cfg, nil
}

// runServer runs the server until SIGINT or SIGTERM. A second signal exits
// at once.
func runServer(cfg *config.Server) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // restore default handling: a second signal kills
	}()
	// Process-wide, set once for all in-process components (each upstream
	// command sets it the same way): loopback clients must not log the
	// warnings the apiserver sends them.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	memory.SetGCPercent()
	// Process-wide, once: the in-process apiserver and kubelet each tell
	// $NOTIFY_SOCKET READY=1 as soon as they themselves start, long before
	// this node is Ready. skiff keeps the socket and clears the variable,
	// so that the service manager hears ready from skiff alone (and
	// containerd, a child, inherits nothing to notify).
	cfg.NotifySocket = os.Getenv("NOTIFY_SOCKET")
	os.Unsetenv("NOTIFY_SOCKET")
	klog.InfoS("Starting skiff server", "version", version.Version, "kubernetes", version.Kubernetes(), "dataDir", cfg.DataDir)
	parts, closeServer, err := serverParts(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeServer()
	err = (&lifecycle.Runner{Components: parts}).Run(ctx)
	klog.InfoS("skiff server stopped")
	return err
}

// serverParts checks everything that can fail on bad input before it writes
// anything, then prepares the control plane and, unless --disable-agent,
// this machine's node, as one ordered list of parts.
func serverParts(ctx context.Context, cfg *config.Server) ([]lifecycle.Component, func(), error) {
	var pprof lifecycle.Component
	if cfg.Node.PprofAddress != "" {
		var err error
		if pprof, err = profiling.Server(cfg.Node.PprofAddress); err != nil {
			return nil, nil, err
		}
	}
	srv, err := server.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	var node *config.Agent
	if !cfg.DisableAgent {
		if node, err = srv.NodeConfig(); err == nil {
			err = agent.Preflight(node)
		}
	}
	if err == nil {
		err = srv.Init(ctx)
	}
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	var parts []lifecycle.Component
	if pprof != nil {
		parts = append(parts, pprof)
	}
	if node == nil {
		parts = append(parts, srv.Components()...)
		return append(parts, srv.Ready(), settleAfter()), srv.Close, nil
	}
	// The node's container runtime first: it needs nothing from the
	// control plane, and gets ready while the control plane starts. Then
	// the server's own node joins it like any other node.
	nodeParts := agent.Components(node)
	parts = append(parts, nodeParts.Runtime...)
	parts = append(parts, srv.Components()...)
	node.Token = srv.AgentToken().String()
	parts = append(parts, agent.Join(node))
	parts = append(parts, nodeParts.Kubernetes...)
	return append(parts, agent.Ready(node, cfg.NotifySocket), settleAfter()), srv.Close, nil
}

// setVerbosity sets klog's verbosity, which all in-process components share.
func setVerbosity(v int) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("v", strconv.Itoa(v))
}

// config parses the simulated-node flags with upstream's label and taint
// syntax (that of kubectl label and kubectl taint).
func (f *simulatedFlags) config() (simnode.Config, error) {
	c := simnode.DefaultConfig()
	c.Count = f.count
	var err error
	for _, q := range []struct {
		flag, value string
		into        *resource.Quantity
	}{
		{"simulated-node-cpu", f.cpu, &c.CPU},
		{"simulated-node-memory", f.memory, &c.Memory},
		{"simulated-node-pods", f.pods, &c.Pods},
	} {
		if *q.into, err = resource.ParseQuantity(q.value); err != nil {
			return c, &config.FieldError{Field: q.flag, Value: q.value, Reason: "not a quantity such as 32, 500m or 256Gi"}
		}
	}
	if c.Labels, err = labels.ConvertSelectorToLabelsMap(strings.Join(f.labels, ",")); err != nil {
		return c, &config.FieldError{Field: "simulated-node-label", Value: strings.Join(f.labels, ","), Reason: err.Error()}
	}
	if c.Taints, _, err = taints.ParseTaints(f.taints); err != nil {
		return c, &config.FieldError{Field: "simulated-node-taint", Value: strings.Join(f.taints, ","), Reason: err.Error()}
	}
	return c, nil
}
