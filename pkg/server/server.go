// Package server is `skiff server`'s control plane: the datastore, the PKI,
// the upstream apiserver, controller-manager and scheduler in one process,
// and skiff's own controllers, as parts for the lifecycle runner.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/internal/kubeclient"
	"github.com/skiff-dev/skiff/internal/lifecycle"
	"github.com/skiff-dev/skiff/internal/sdnotify"
	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/control"
	"github.com/skiff-dev/skiff/pkg/datastore"
	"github.com/skiff-dev/skiff/pkg/encryption"
	"github.com/skiff-dev/skiff/pkg/pki"
	"github.com/skiff-dev/skiff/pkg/simnode"
	"github.com/skiff-dev/skiff/pkg/supervisor"
)

// readyTimeout bounds the wait for the apiserver's /readyz at start; an
// external datastore that is slow to answer is the usual reason to hit it.
const readyTimeout = 3 * time.Minute

// Server is `skiff server`'s control plane: checked by New, its state
// written by Init, run as the parts Components returns.
type Server struct {
	cfg       *config.Server
	tls       pki.Dir
	advertise net.IP
	listener  net.Listener
	port      int
	cmArgs    []string
	schedArgs []string
	lock      *os.File
	admin     kubernetes.Interface
	db        *datastore.Backend // set once the datastore has started
	start     time.Time
	// servingIPs are the apiserver certificate's addresses.
	servingIPs []net.IP
	// The join tokens (see tokens.go).
	serverToken, agentToken supervisor.Token
	// etcd is this server's embedded etcd member, nil with another
	// datastore; etcdPeers reach the members of the cluster it joined.
	etcd      *datastore.Etcd
	etcdPeers []string
	// joinedAgentToken is the agent token of the cluster it joined.
	joinedAgentToken string
	// encryptionKey names the key Secrets are written with; empty with
	// --secrets-encryption=false.
	encryptionKey string
}

// New makes every check that can fail on bad input (the apiserver's port,
// which it binds and keeps, the other components' ports and arguments)
// and writes nothing.
func New(cfg *config.Server) (*Server, error) {
	s := &Server{cfg: cfg, tls: pki.Dir(cfg.TLSDir()), advertise: advertiseAddress(cfg), start: time.Now()}
	var err error
	if s.listener, err = listen("apiserver", "--https-listen-port", cfg.BindAddress, cfg.HTTPSListenPort); err != nil {
		return nil, err
	}
	s.port = s.listener.Addr().(*net.TCPAddr).Port
	if err := checkEtcdState(cfg); err != nil {
		s.Close()
		return nil, err
	}
	if err := checkSnapshotDir(cfg); err != nil {
		s.Close()
		return nil, err
	}
	if cfg.EmbeddedEtcd() {
		for _, p := range []struct {
			what, flag string
			port       int
		}{{"embedded etcd's clients", "--etcd-client-port", cfg.EtcdClientPort}, {"embedded etcd's peers", "--etcd-peer-port", cfg.EtcdPeerPort}} {
			if err := checkFree(p.what, p.flag, "", p.port); err != nil {
				s.Close()
				return nil, err
			}
		}
	}
	s.cmArgs = control.ControllerManagerArgs(cfg, s.tls, s.kubeconfig("controller"))
	s.schedArgs = control.SchedulerArgs(cfg, s.kubeconfig("scheduler"))
	if err := checkComponents(control.APIServerArgs(cfg, s.port, s.tls, &datastore.Backend{}, s.advertise), s.cmArgs, s.schedArgs); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the port and the data dir's lock.
func (s *Server) Close() {
	s.listener.Close()
	if s.lock != nil {
		s.lock.Close()
	}
}

// LocalURL is the apiserver's address for clients on this host.
func (s *Server) LocalURL() string {
	return "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// AdvertiseAddress is the address other nodes and the kubernetes Service use.
func (s *Server) AdvertiseAddress() net.IP { return s.advertise }

// AgentToken is the token this server's own node joins with (after Init).
func (s *Server) AgentToken() supervisor.Token { return s.agentToken }

// agentConfig is what the join API tells nodes about the cluster.
func (s *Server) agentConfig() supervisor.AgentConfig {
	cfg := s.cfg
	return supervisor.AgentConfig{
		Servers:              []string{"https://" + net.JoinHostPort(s.advertise.String(), strconv.Itoa(s.port))},
		ClusterCIDR:          cfg.ClusterCIDR.String(),
		ServiceCIDR:          cfg.ServiceCIDR.String(),
		ClusterDNS:           cfg.ClusterDNS.String(),
		ClusterDomain:        cfg.ClusterDomain,
		FlannelBackend:       cfg.FlannelBackend,
		DisableNetworkPolicy: cfg.DisableNetworkPolicy,
		LocalStorage:         !slices.Contains(cfg.Disable, "local-storage"),
		LocalStoragePath:     cfg.DefaultLocalStoragePath,
	}
}

func (s *Server) kubeconfig(name string) string {
	return filepath.Join(s.cfg.CredDir(), name+".kubeconfig")
}

// Init locks the data dir, joins the cluster of --server (waiting while
// it cannot be reached, as long as ctx lets it) and writes the
// certificates and the components' kubeconfigs: the first state the
// server writes. A join that fails leaves a new data dir as it was.
func (s *Server) Init(ctx context.Context) error {
	// What a failed join removes: the directories it made.
	made := ""
	for _, dir := range []string{s.cfg.ServerDir(), s.cfg.DataDir} {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			made = dir
		}
	}
	var err error
	if s.lock, err = LockDataDir(s.cfg.ServerDir()); err != nil {
		return err
	}
	if s.cfg.EmbeddedEtcd() {
		if s.etcd, err = s.etcdMember(); err != nil {
			return err
		}
	}
	if err := s.joinCluster(ctx); err != nil {
		if made != "" {
			s.lock.Close()
			s.lock = nil
			os.RemoveAll(made)
		}
		return err
	}
	names, err := s.servingNames()
	if err != nil {
		return err
	}
	s.servingIPs = names.IPs
	if _, err := s.ensureCertificates(); err != nil {
		return err
	}
	if err := s.ensureTokens(); err != nil {
		return err
	}
	if s.cfg.SecretsEncryption {
		if s.encryptionKey, err = encryption.EnsureConfig(s.cfg.EncryptionConfigFile()); err != nil {
			return err
		}
	}
	// The server's own view of the API, for its readiness checks; each
	// controller makes its own client, named after it.
	rc, err := kubeclient.Config(s.kubeconfig("admin"), "skiff-server")
	if err != nil {
		return err
	}
	rc.Timeout = 5 * time.Second
	s.admin, err = kubernetes.NewForConfig(rc)
	return err
}

// Components are the control plane's parts in the order they start: the
// datastore, the apiserver (ready once /readyz is ok), the
// controller-manager and scheduler, skiff's own controllers, and last the
// admin kubeconfig, whose writing says the control plane is up.
func (s *Server) Components() []lifecycle.Component {
	cfg := s.cfg
	parts := []lifecycle.Component{
		s.datastore(),
		lifecycle.Run("kube-apiserver", func(ctx context.Context) error {
			if cfg.SoleServer() {
				control.RenewIdentityLeaseEvery(control.SoleServerIdentityLeaseRenewal)
			}
			join, err := supervisor.NewHandler(s.agentConfig(), s.tls, s.servingIPs, s.admin, supervisor.ServerSide{
				TLS: s.tls, AgentToken: s.agentToken.String(), Datastore: s.datastoreKind(), AddEtcdMember: s.addEtcdMember,
				EncryptionConfigFile: cfg.EncryptionConfigFile(),
			})
			if err != nil {
				return err
			}
			return control.RunAPIServer(ctx, control.APIServerArgs(cfg, s.port, s.tls, s.db, s.advertise), s.listener,
				map[string]http.Handler{supervisor.PathPrefix: join})
		}).WithReady(func(ctx context.Context) error {
			if err := waitReady(ctx, s.admin); err != nil {
				return err
			}
			klog.InfoS("kube-apiserver is ready", "after", time.Since(s.start).Round(time.Millisecond))
			return nil
		}),
		lifecycle.Step("join access", func(ctx context.Context) error {
			return supervisor.EnsureJoinAccess(ctx, s.admin, s.serverToken, s.agentToken)
		}),
		lifecycle.Run("kube-controller-manager", s.elected("kube-controller-manager", func(ctx context.Context) error {
			return control.RunControllerManager(ctx, s.cmArgs)
		})),
		lifecycle.Run("kube-scheduler", s.elected("kube-scheduler", func(ctx context.Context) error {
			return control.RunScheduler(ctx, s.schedArgs)
		})),
	}
	if cfg.SnapshotSchedule != "" && cfg.Datastore.Endpoint == "" {
		parts = append(parts, lifecycle.Run("scheduled snapshots", s.runSnapshots))
	}
	if s.etcd == nil && cfg.Datastore.Endpoint == "" && cfg.Datastore.CompactInterval > 0 {
		parts = append(parts, lifecycle.Every("datastore maintenance", cfg.Datastore.CompactInterval, s.datastoreCheck()))
	}
	if s.encryptionKey != "" {
		parts = append(parts, lifecycle.Run("secrets encryption", s.elected("skiff-secrets-encryption", s.encryptSecrets)))
	}
	if cfg.SimulatedNodes.Count > 0 {
		parts = append(parts, lifecycle.Run("simulated nodes", func(ctx context.Context) error {
			return runSimulatedNodes(ctx, s.kubeconfig("admin"), cfg.SimulatedNodes)
		}))
	}
	if !cfg.DisableHelmController {
		// The CRDs are served before the deployer's first pass, so that a
		// HelmChart in the manifests directory applies at once.
		parts = append(parts, lifecycle.Step("HelmChart CRDs", s.ensureHelmCRDs),
			lifecycle.Run("helm controller", s.elected("skiff-helm-controller", s.runHelmController)))
	}
	parts = append(parts, lifecycle.Run("add-on deployer", s.elected("skiff-addons", func(ctx context.Context) error {
		return runAddons(ctx, cfg, s.kubeconfig("admin"))
	})))
	if s.etcd != nil {
		// On every server, not under a lease: the server whose Node was
		// deleted leaves its own member to the others.
		parts = append(parts, lifecycle.Run("etcd members of deleted nodes", s.removeMembersOfDeletedNodes))
	}
	if !slices.Contains(cfg.Disable, config.ServiceLB) {
		parts = append(parts, lifecycle.Run("servicelb", s.elected("skiff-servicelb", func(ctx context.Context) error {
			return runServiceLB(ctx, s.kubeconfig("admin"))
		})))
	}
	if cfg.Node.CertificateCheckInterval > 0 {
		parts = append(parts, s.renewCertificates())
	}
	return append(parts, lifecycle.Step("admin kubeconfig", func(context.Context) error {
		if err := s.writeAdminKubeconfig(); err != nil {
			return err
		}
		klog.InfoS("skiff server is ready", "after", time.Since(s.start).Round(time.Millisecond), "kubeconfig", cfg.WriteKubeconfig)
		return nil
	}))
}

// elected runs a controller under a lease when several servers can share
// the datastore, so that one of them runs it; otherwise at once.
func (s *Server) elected(lease string, run func(context.Context) error) func(context.Context) error {
	if s.cfg.SoleServer() {
		return run
	}
	return leaderElected(lease, s.admin, run)
}

// datastore runs the embedded etcd member or kine (or reaches an external
// etcd), ready once it serves.
func (s *Server) datastore() lifecycle.Component {
	started := make(chan struct{})
	return lifecycle.Run("datastore", func(ctx context.Context) error {
		var db *datastore.Backend
		var err error
		if s.etcd != nil {
			db, err = s.startEtcd(ctx)
		} else if db, err = datastore.Start(ctx, s.cfg.Datastore, s.cfg.DBDir(), filepath.Join(s.cfg.ServerDir(), "kine.sock")); err != nil {
			err = fmt.Errorf("%w; check --datastore-endpoint and that the datastore is reachable", err)
		}
		if err != nil {
			return err
		}
		s.db = db
		close(started)
		<-ctx.Done()
		db.Wait()
		return nil
	}).WithReady(func(ctx context.Context) error {
		select {
		case <-started:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

// Ready is the last part of a server without a node: it tells the service
// manager the control plane is up (a node's own Ready part does so for a
// server with one).
func (s *Server) Ready() lifecycle.Component {
	return lifecycle.Step("readiness", func(context.Context) error {
		sdnotify.Ready(s.cfg.NotifySocket)
		return nil
	})
}

// waitReady polls the apiserver's /readyz as the admin until it says ok.
func waitReady(ctx context.Context, client kubernetes.Interface) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var lastErr error
	err := wait.PollUntilContextCancel(ctx, 20*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, lastErr = client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return lastErr == nil, nil
	})
	switch {
	case err != nil && lastErr != nil && errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("kube-apiserver did not become ready within %s: %w", readyTimeout, lastErr)
	}
	return err
}

// advertiseAddress is the address other nodes and the `kubernetes` Service
// use: the configured one, else the address of the default-route interface,
// else loopback on a host with no network at all.
func advertiseAddress(cfg *config.Server) net.IP {
	if cfg.AdvertiseAddress != "" {
		return net.ParseIP(cfg.AdvertiseAddress)
	}
	ip, err := utilnet.ResolveBindAddress(net.ParseIP(cfg.BindAddress))
	if err != nil {
		klog.InfoS("No default route; advertising loopback (set --advertise-address to choose)", "reason", err)
		return net.IPv4(127, 0, 0, 1)
	}
	return ip
}

// runSimulatedNodes runs the simulator as the admin, with client limits
// sized for the status updates of thousands of pods against a local
// apiserver.
func runSimulatedNodes(ctx context.Context, kubeconfig string, cfg simnode.Config) error {
	rc, err := kubeclient.Config(kubeconfig, "skiff-simulated-nodes")
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = 500, 1000
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	return simnode.Run(ctx, client, cfg)
}
