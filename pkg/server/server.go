// Package server runs `skiff server`: the datastore, the PKI and the
// control-plane components in one process, started in dependency order and
// stopped in the reverse order.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
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
	"github.com/skiff-dev/skiff/pkg/agent"
	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/control"
	"github.com/skiff-dev/skiff/pkg/datastore"
	"github.com/skiff-dev/skiff/pkg/pki"
	"github.com/skiff-dev/skiff/pkg/simnode"
)

// shutdownTimeout bounds how long each stage of shutdown may take before
// skiff gives up waiting and exits anyway.
const shutdownTimeout = 10 * time.Second

// readyTimeout bounds the wait for the apiserver's /readyz at start; an
// external datastore that is slow to answer is the usual reason to hit it.
const readyTimeout = 3 * time.Minute

// Run runs the control plane until ctx ends or a component fails. Nothing is
// written before every check that can fail on bad input has passed.
func Run(ctx context.Context, cfg *config.Server) error {
	start := time.Now()
	tlsDir := pki.Dir(cfg.TLSDir())
	advertise := advertiseAddress(cfg)

	// Checks that must pass before any state is touched.
	apiListener, err := listen("apiserver", "--https-listen-port", cfg.BindAddress, cfg.HTTPSListenPort)
	if err != nil {
		return err
	}
	defer apiListener.Close()
	port := apiListener.Addr().(*net.TCPAddr).Port
	controllerKubeconfig := filepath.Join(cfg.CredDir(), "controller.kubeconfig")
	schedulerKubeconfig := filepath.Join(cfg.CredDir(), "scheduler.kubeconfig")
	cmArgs := control.ControllerManagerArgs(cfg, tlsDir, controllerKubeconfig)
	schedArgs := control.SchedulerArgs(cfg, schedulerKubeconfig)
	if err := checkComponents(control.APIServerArgs(cfg, port, tlsDir, &datastore.Backend{}, advertise), cmArgs, schedArgs); err != nil {
		return err
	}
	local := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var agentCfg *config.Agent
	if !cfg.DisableAgent {
		if agentCfg, err = nodeConfig(cfg, advertise, local); err != nil {
			return err
		}
		if err := agent.Preflight(agentCfg); err != nil {
			return err
		}
	}
	lock, err := lockDataDir(cfg.ServerDir())
	if err != nil {
		return err
	}
	defer lock.Close()

	// State: certificates and the components' kubeconfigs.
	if err := writeCredentials(cfg, tlsDir, advertise, local); err != nil {
		return err
	}
	if agentCfg != nil {
		if err := writeNodeCredentials(tlsDir, agentCfg); err != nil {
			return err
		}
	}
	adminKubeconfig := filepath.Join(cfg.CredDir(), "admin.kubeconfig")
	// The server's own view of the API, for its readiness checks; each
	// controller below makes its own client, named after it.
	adminRC, err := kubeclient.Config(adminKubeconfig, "skiff-server")
	if err != nil {
		return err
	}
	adminRC.Timeout = 5 * time.Second
	admin, err := kubernetes.NewForConfig(adminRC)
	if err != nil {
		return err
	}

	// The components each get their own context so that shutdown can stop
	// them in reverse order of start; the process context only starts it.
	dbCtx, stopDB := context.WithCancel(context.Background())
	defer stopDB()
	db, err := datastore.Start(dbCtx, cfg.Datastore, cfg.DBDir(), filepath.Join(cfg.ServerDir(), "kine.sock"))
	if err != nil {
		return fmt.Errorf("%w; check --datastore-endpoint and that the datastore is reachable", err)
	}
	defer func() {
		stopDB()
		waitOrTimeout("datastore", db.Wait)
	}()

	failed := make(chan error, 8) // room for every component: a failing one never blocks
	apiCtx, stopAPI := context.WithCancel(context.Background())
	apiDone := goRun(apiCtx, failed, "kube-apiserver", func(ctx context.Context) error {
		return control.RunAPIServer(ctx, control.APIServerArgs(cfg, port, tlsDir, db, advertise), apiListener)
	})
	defer func() {
		stopAPI()
		waitOrTimeout("kube-apiserver", func() { <-apiDone })
	}()

	if err := waitReady(ctx, admin, failed); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	klog.InfoS("kube-apiserver is ready", "after", time.Since(start).Round(time.Millisecond))

	ctlCtx, stopControllers := context.WithCancel(context.Background())
	cmDone := goRun(ctlCtx, failed, "kube-controller-manager", func(ctx context.Context) error {
		return control.RunControllerManager(ctx, cmArgs)
	})
	schedDone := goRun(ctlCtx, failed, "kube-scheduler", func(ctx context.Context) error {
		return control.RunScheduler(ctx, schedArgs)
	})
	defer func() {
		stopControllers()
		waitOrTimeout("kube-controller-manager", func() { <-cmDone })
		waitOrTimeout("kube-scheduler", func() { <-schedDone })
	}()

	if cfg.SimulatedNodes.Count > 0 {
		simCtx, stopSim := context.WithCancel(context.Background())
		simDone := goRun(simCtx, failed, "simulated nodes", func(ctx context.Context) error {
			return runSimulatedNodes(ctx, adminKubeconfig, cfg.SimulatedNodes)
		})
		defer func() {
			stopSim()
			waitOrTimeout("simulated nodes", func() { <-simDone })
		}()
	}

	if agentCfg != nil {
		node, err := agent.Start(ctx, agentCfg)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("node agent: %w", err)
		}
		defer node.Stop()
		go func() {
			if err, ok := <-node.Failed(); ok {
				failed <- fmt.Errorf("node agent: %w", err)
			}
		}()
	}

	addonCtx, stopAddons := context.WithCancel(context.Background())
	addonsDone := goRun(addonCtx, failed, "add-on deployer", func(ctx context.Context) error {
		return runAddons(ctx, cfg, adminKubeconfig)
	})
	defer func() {
		stopAddons()
		waitOrTimeout("add-on deployer", func() { <-addonsDone })
	}()
	if !slices.Contains(cfg.Disable, config.ServiceLB) {
		lbDone := goRun(addonCtx, failed, "servicelb", func(ctx context.Context) error {
			return runServiceLB(ctx, adminKubeconfig)
		})
		defer func() {
			stopAddons()
			waitOrTimeout("servicelb", func() { <-lbDone })
		}()
	}

	kc := pki.Kubeconfig{Server: local, CA: tlsDir.Cert(pki.ServerCA), Cert: tlsDir.Cert(pki.ClientAdmin), Key: tlsDir.Key(pki.ClientAdmin), Embed: true}
	if err := kc.Write(cfg.WriteKubeconfig, cfg.WriteKubeconfigMode); err != nil {
		return fmt.Errorf("writing the admin kubeconfig %s: %w; choose another path with --write-kubeconfig", cfg.WriteKubeconfig, err)
	}
	klog.InfoS("skiff server is ready", "after", time.Since(start).Round(time.Millisecond), "kubeconfig", cfg.WriteKubeconfig)

	// A service manager hears "ready" when the whole node is: with an
	// agent, once its Node is Ready (what install.sh waits for too).
	if agentCfg != nil {
		if err := waitNodeReady(ctx, admin, agentCfg.NodeName, failed); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		klog.InfoS("This node is Ready", "node", agentCfg.NodeName, "after", time.Since(start).Round(time.Millisecond))
	}
	notifyReady(cfg.NotifySocket)

	select {
	case <-ctx.Done():
		klog.InfoS("Shutting down skiff server")
		return nil
	case err := <-failed:
		return err
	}
}

// goRun runs a component in a goroutine. An error it returns while its
// context is still live is reported on failed; done closes when it returns.
func goRun(ctx context.Context, failed chan<- error, name string, run func(context.Context) error) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := run(ctx)
		if ctx.Err() != nil {
			klog.InfoS("Component stopped", "component", name)
			return
		}
		if err == nil {
			err = errors.New("exited unexpectedly")
		}
		failed <- fmt.Errorf("%s: %w", name, err)
	}()
	return done
}

func waitOrTimeout(name string, wait func()) {
	done := make(chan struct{})
	go func() { wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownTimeout):
		klog.InfoS("Gave up waiting for component to stop", "component", name, "timeout", shutdownTimeout)
	}
}

// waitReady polls the apiserver's /readyz as the admin until it says ok.
func waitReady(ctx context.Context, client kubernetes.Interface, failed <-chan error) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var lastErr, componentErr error
	err := wait.PollUntilContextCancel(ctx, 20*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		select {
		case componentErr = <-failed:
			return false, componentErr
		default:
		}
		_, lastErr = client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return lastErr == nil, nil
	})
	switch {
	case componentErr != nil:
		return componentErr
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

// writeCredentials makes sure the certificates exist and are good for the
// current names, and writes the components' kubeconfigs for the server URL
// local.
func writeCredentials(cfg *config.Server, tlsDir pki.Dir, advertise net.IP, local string) error {
	serviceIP, err := cfg.APIServerServiceIP()
	if err != nil {
		return err
	}
	names := pki.ServingNames(cfg.ClusterDomain, serviceIP, []net.IP{advertise}, cfg.TLSSANs)
	if err := pki.Ensure(tlsDir, names); err != nil {
		return fmt.Errorf("certificates in %s: %w", tlsDir, err)
	}
	if err := os.MkdirAll(cfg.CredDir(), 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", cfg.CredDir(), err)
	}
	for name, cert := range map[string]string{
		"admin.kubeconfig":      pki.ClientAdmin,
		"controller.kubeconfig": pki.ClientController,
		"scheduler.kubeconfig":  pki.ClientScheduler,
	} {
		kc := pki.Kubeconfig{Server: local, CA: tlsDir.Cert(pki.ServerCA), Cert: tlsDir.Cert(cert), Key: tlsDir.Key(cert)}
		if err := kc.Write(filepath.Join(cfg.CredDir(), name), 0o600); err != nil {
			return fmt.Errorf("writing kubeconfig: %w", err)
		}
	}
	return nil
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
