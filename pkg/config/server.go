// Package config holds the typed configuration of skiff's roles. It is built
// once from flags and the config file (see pkg/cli), validated here, and then
// passed down; nothing in it is read from package-level state.
package config

import (
	"net"
	"os"
	"path/filepath"

	"github.com/skiff-dev/skiff/pkg/datastore"
	"github.com/skiff-dev/skiff/pkg/simnode"
)

// Defaults, named as in k3s where the concept is the same.
const (
	DefaultDataDir              = "/var/lib/skiff"
	DefaultConfigFile           = "/etc/skiff/config.yaml"
	DefaultKubeconfig           = "/etc/skiff/skiff.yaml"
	DefaultKubeconfigMode       = 0o600
	DefaultHTTPSListenPort      = 6443
	DefaultBindAddress          = "0.0.0.0"
	DefaultClusterCIDR          = "10.42.0.0/16"
	DefaultServiceCIDR          = "10.43.0.0/16"
	DefaultClusterDomain        = "cluster.local"
	DefaultControllerPort       = 10257
	DefaultSchedulerPort        = 10259
	DefaultServiceNodePortRange = "30000-32767"
	DefaultFlannelBackend       = "vxlan"
	DefaultSnapshotSchedule     = "0 */12 * * *"
	DefaultSnapshotRetention    = 5
)

// FlannelBackends are the pod network's backends --flannel-backend takes;
// none leaves the pod network across nodes to the user's CNI.
func FlannelBackends() []string { return []string{"vxlan", "host-gw", "wireguard-native", "none"} }

// Server is the configuration of `skiff server`.
type Server struct {
	DataDir          string
	BindAddress      string
	AdvertiseAddress string // empty: chosen from the host's default route at start
	HTTPSListenPort  int
	TLSSANs          []string

	ClusterCIDR   *net.IPNet
	ServiceCIDR   *net.IPNet
	ClusterDNS    net.IP
	ClusterDomain string

	WriteKubeconfig     string
	WriteKubeconfigMode os.FileMode

	Datastore datastore.Config
	// ClusterInit makes embedded etcd the datastore of a new cluster, one
	// that more servers can join (--cluster-init); a server with a SQLite
	// datastore moves its data into etcd once.
	ClusterInit bool
	// JoinServer is the URL of a server of the cluster this server joins
	// (--server); Token is then that cluster's server token. Without
	// --datastore-endpoint it becomes a member of the embedded etcd.
	JoinServer string
	// Snapshots of the datastore: SnapshotSchedule is a cron schedule
	// ("" for none), SnapshotRetention how many scheduled ones are kept,
	// SnapshotDir where they go ("": SnapshotDefaultDir).
	SnapshotSchedule  string
	SnapshotRetention int
	SnapshotDir       string
	// ClusterResetRestorePath is an embedded etcd snapshot this server's
	// member is restored from, as a cluster of one, at its next start
	// (once: the snapshot restored last is recorded).
	ClusterResetRestorePath string
	// SecretsEncryption encrypts Secrets at rest (secretbox, key in
	// EncryptionConfigFile); on by default.
	SecretsEncryption bool
	// EtcdClientPort, EtcdPeerPort and EtcdMetricsPort are the embedded
	// etcd's ports (the metrics on loopback only).
	EtcdClientPort, EtcdPeerPort, EtcdMetricsPort int

	ExtraAPIServerArgs         []string
	ExtraControllerManagerArgs []string
	ExtraSchedulerArgs         []string

	DisableAgent bool
	// FlannelBackend is the pod network across nodes: vxlan, host-gw,
	// wireguard-native, or none (the user brings a CNI).
	FlannelBackend string
	// Disable names add-ons (manifests/ file names) not to deploy.
	Disable []string
	// DisableHelmController turns off the HelmChart controller and its
	// CRDs (k3s's --disable-helm-controller).
	DisableHelmController bool
	// DisableNetworkPolicy turns off NetworkPolicy enforcement on every
	// node (k3s's --disable-network-policy).
	DisableNetworkPolicy bool
	// DefaultLocalStoragePath is where the local-path class keeps
	// volumes; empty: <data-dir>/storage.
	DefaultLocalStoragePath string
	// Node holds the settings of this server's own node; its address is
	// the advertise address unless they name one.
	Node Node

	// SimulatedNodes are registered and simulated by the server itself.
	SimulatedNodes simnode.Config

	// Token and AgentToken, when given, are the join tokens' credentials
	// (K10<hash>::<credential> or a bare passphrase); empty: kept from
	// the data dir, or made at the first start.
	Token      string
	AgentToken string

	// NotifySocket is the service manager's socket ($NOTIFY_SOCKET of a
	// systemd Type=notify unit), to be told READY=1 once the node is
	// Ready; empty when none started skiff.
	NotifySocket string
}

// ServerDir is where the control plane keeps its state.
func (s *Server) ServerDir() string { return filepath.Join(s.DataDir, "server") }

// TLSDir holds the server's CAs, certificates and keys.
func (s *Server) TLSDir() string { return filepath.Join(s.ServerDir(), "tls") }

// CredDir holds the kubeconfigs of the in-process components.
func (s *Server) CredDir() string { return filepath.Join(s.ServerDir(), "cred") }

// ManifestsDir holds the add-on manifests the deployer applies.
func (s *Server) ManifestsDir() string { return filepath.Join(s.ServerDir(), "manifests") }

// StaticChartsDir holds chart archives that HelmCharts name as k3s's
// https://%{KUBERNETES_API}%/static/charts/NAME.tgz.
func (s *Server) StaticChartsDir() string { return filepath.Join(s.ServerDir(), "static", "charts") }

// TokenFile holds the server token, which joins servers and agents.
func (s *Server) TokenFile() string { return filepath.Join(s.ServerDir(), "token") }

// AgentTokenFile holds the agent token, which joins agents only.
func (s *Server) AgentTokenFile() string { return filepath.Join(s.ServerDir(), "agent-token") }

// DBDir holds the default SQLite datastore.
func (s *Server) DBDir() string { return filepath.Join(s.ServerDir(), "db") }

// EncryptionConfigFile is the apiserver's encryption configuration, with
// the key Secrets are encrypted with (k3s's path).
func (s *Server) EncryptionConfigFile() string {
	return filepath.Join(s.CredDir(), "encryption-config.json")
}

// Snapshots is where datastore snapshots go (k3s's path by default).
func (s *Server) Snapshots() string {
	if s.SnapshotDir != "" {
		return s.SnapshotDir
	}
	return filepath.Join(s.DBDir(), "snapshots")
}

// EtcdDataDir holds the embedded etcd member's data.
func (s *Server) EtcdDataDir() string { return filepath.Join(s.DBDir(), "etcd") }

// EmbeddedEtcd says whether the datastore is the servers' embedded etcd:
// on a server started with --cluster-init, or joining one without an
// external datastore.
func (s *Server) EmbeddedEtcd() bool {
	return s.ClusterInit || s.JoinServer != "" && s.Datastore.Endpoint == ""
}

// SoleServer says whether this is its cluster's only server: its datastore
// (SQLite or memory) cannot be shared with another.
func (s *Server) SoleServer() bool {
	return !s.EmbeddedEtcd() && !datastore.Shared(s.Datastore.Endpoint)
}
