package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"google.golang.org/grpc"
	"k8s.io/apimachinery/pkg/util/wait"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/internal/lifecycle"
	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/hostcheck"
)

// containerdProcess is containerd running as a child of skiff, the
// upstream program from the node payload (binDir), so that its own signal
// handling, logging and plugins stay in their own process.
type containerdProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// containerdStopGrace is how long containerd gets to stop after SIGTERM
// before it is killed: within the runner's bound on every part's stop.
const containerdStopGrace = lifecycle.DefaultStopTimeout * 8 / 10

// startContainerd renders containerd's config and starts it. binDir goes
// first on its PATH, so containerd finds the runc shim and the shim finds
// runc.
//
// containerd gets SIGKILL if skiff dies (Pdeathsig), but the shims it starts
// run in sessions of their own: containers keep running while skiff and
// containerd restart, and the new containerd reconnects to their shims (what
// k3s does).
func (n *node) startContainerd(context.Context) error {
	cfg := n.cfg
	restrictOOM := !hostcheck.Host{}.HasCapSysResource()
	if restrictOOM {
		klog.InfoS("This process lacks CAP_SYS_RESOURCE; containerd will not lower pods' oom_score_adj below its own (restrict_oom_score_adj)")
	}
	if err := writeRegistryHosts(cfg.RegistryHostsDir(), cfg.Registries); err != nil {
		return fmt.Errorf("rendering registries.yaml for containerd: %w", err)
	}
	configPath, err := writeContainerdConfig(cfg, containerdValues{
		Root: cfg.ContainerdRoot(), State: cfg.ContainerdState(), Socket: cfg.ContainerdSocket(),
		BinDir: n.binDir, CNIConfDir: cfg.CNIConfDir(), SandboxImage: config.DefaultSandboxImage,
		SystemdCgroup: n.driver == "systemd", RestrictOOMScoreAdj: restrictOOM,
		NodeName: cfg.NodeName, ClusterDNS: cfg.ClusterDNS.String(),
		RegistryHostsDir: cfg.RegistryHostsDir(), RegistryAuths: registryAuths(cfg.Registries),
	})
	if err != nil {
		return err
	}
	for _, dir := range []string{cfg.ContainerdRoot(), cfg.ContainerdState()} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return err
		}
	}
	logPath := containerdLog(cfg)
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening containerd's log: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor
	args := []string{filepath.Join(n.binDir, "containerd"), "--config", configPath}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(withoutEnv(os.Environ(), "PATH", "NOTIFY_SOCKET"),
		"PATH="+n.binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group: a Ctrl-C at the terminal reaches skiff, which
	// stops containerd last, after the kubelet.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	klog.InfoS("Running containerd", "args", strings.Join(args, " "), "log", logPath, "path", n.binDir)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting containerd: %w", err)
	}
	p := &containerdProcess{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	n.ctrd = p
	return nil
}

func containerdLog(cfg *config.Agent) string {
	return filepath.Join(cfg.ContainerdRoot(), config.DefaultContainerdLog)
}

// containerdReady waits until containerd's CRI answers.
func (n *node) containerdReady(ctx context.Context) error {
	return n.ctrd.waitReady(ctx, n.cfg.ContainerdSocket(), containerdLog(n.cfg))
}

// runContainerd watches containerd until ctx ends, then stops it; its
// exiting before that is a failure.
func (n *node) runContainerd(ctx context.Context) error {
	select {
	case <-n.ctrd.done:
		return fmt.Errorf("exited: %v; see %s", n.ctrd.err, containerdLog(n.cfg))
	case <-ctx.Done():
		n.ctrd.stop()
		return nil
	}
}

func (p *containerdProcess) waitReady(ctx context.Context, socket, logPath string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var lastErr error
	err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		select {
		case <-p.done:
			return false, fmt.Errorf("containerd exited at start (%v); see %s", p.err, logPath)
		default:
		}
		client, err := containerd.New(socket, containerd.WithTimeout(time.Second))
		if err != nil {
			lastErr = err
			return false, nil
		}
		defer client.Close()
		if _, lastErr = client.Server(ctx); lastErr != nil {
			return false, nil
		}
		// containerd answers before its CRI plugin has initialised, and
		// the kubelet gives up at once if the CRI does not answer.
		conn, ok := client.Conn().(*grpc.ClientConn)
		if !ok {
			return false, fmt.Errorf("containerd client: unexpected connection type %T", client.Conn())
		}
		_, lastErr = runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{})
		return lastErr == nil, nil
	})
	if err != nil && lastErr != nil && ctx.Err() != nil {
		return fmt.Errorf("containerd did not answer on %s within a minute: %w; see %s", socket, lastErr, logPath)
	}
	return err
}

// stop asks containerd to stop and waits for it, killing it after a while.
// The containers' shims are not stopped.
func (p *containerdProcess) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(containerdStopGrace):
		klog.InfoS("containerd did not stop in time; killing it", "after", containerdStopGrace)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	var exit *exec.ExitError
	if p.err != nil && !errors.As(p.err, &exit) {
		klog.InfoS("containerd stopped", "err", p.err)
	}
}

func withoutEnv(env []string, names ...string) []string {
	out := env[:0:0]
	for _, kv := range env {
		keep := true
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}
