// Package testenv starts a real Kubernetes control plane for tests: the
// upstream kube-apiserver, kube-controller-manager (garbage collector,
// namespace deletion, deployments, jobs, ...) and kube-scheduler, in a child
// `skiff server` process on kine's in-memory datastore.
//
//	func TestMyController(t *testing.T) {
//		env := testenv.Start(t, testenv.WithCRDDirectory("config/crd"))
//		client := kubernetes.NewForConfigOrDie(env.Config)
//		...
//	}
//
// Each environment is a process of its own, with its own directory, port and
// certificates, so environments run in parallel from one test binary or
// many. A child process rather than in-process components, because the
// upstream components keep process-wide state (feature gates, metric
// registries, informer names, klog) that allows one control plane per
// process, and a process is also what stops cleanly and completely.
//
// A start takes about 2 s. Pooled hands out environments started in the
// background while earlier tests ran; Namespace gives each test a
// namespace in one shared environment, in milliseconds (see each for when
// it fits).
//
// The skiff binary is found through WithBinary, then $SKIFF_BIN, then $PATH.
//
// testenv is a Go module of its own that needs only client-go and the
// apiextensions API: importing it does not bring in k8s.io/kubernetes and
// the replace lines that module requires.
package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Environment is one running control plane.
type Environment struct {
	// Config is an admin client configuration (system:masters).
	Config *rest.Config
	// Kubeconfig is the path of the admin kubeconfig, for kubectl or helm.
	Kubeconfig string
	// Dir holds the environment's data; it is removed by Stop.
	Dir string

	cmd      *exec.Cmd
	log      *syncBuffer
	done     chan struct{}
	exitErr  error
	stopOnce sync.Once
	stopErr  error
}

// Start starts an environment for t and stops it when t ends; it fails t if
// the environment cannot start. If t fails, the server's log is printed.
func Start(t testing.TB, opts ...Option) *Environment {
	t.Helper()
	env, err := New(opts...)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testenv: skiff server log:\n%s", env.Logs())
		}
		if err := env.Stop(); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return env
}

// New starts an environment without a testing.TB, for TestMain or a shared
// fixture; the caller must call Stop. With Pooled, it takes a pre-started
// environment when one is ready.
func New(opts ...Option) (*Environment, error) {
	s := &settings{startTimeout: time.Minute}
	for _, o := range opts {
		o(s)
	}
	bin, err := findBinary(s.binary)
	if err != nil {
		return nil, err
	}
	var env *Environment
	if s.pooled {
		env, err = pool.take(bin, s)
	} else {
		env, err = launch(bin, s)
	}
	if err != nil {
		return nil, err
	}
	if err := env.prepare(s); err != nil {
		logs := env.Logs()
		_ = env.Stop()
		return nil, fmt.Errorf("%w\nskiff server log:\n%s", err, tail(logs, 60))
	}
	return env, nil
}

// launch starts a server and waits for its admin kubeconfig: an environment
// without the test's CRDs yet (see prepare).
func launch(bin string, s *settings) (*Environment, error) {
	removeAbandoned()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, err
	}
	env := &Environment{Dir: dir, Kubeconfig: filepath.Join(dir, "kubeconfig"), log: &syncBuffer{}, done: make(chan struct{})}
	configFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(configFile, nil, 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// Whose environment this is, for removeAbandoned.
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	var out io.Writer = env.log
	if s.logs != nil {
		out = io.MultiWriter(env.log, s.logs)
	}
	env.cmd = exec.Command(bin, s.serverArgs(filepath.Join(dir, "data"), configFile, env.Kubeconfig)...)
	env.cmd.Stdout, env.cmd.Stderr = out, out
	env.cmd.Env = withoutSkiffSettings(os.Environ())
	// If the test binary dies, so does its control plane.
	env.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := env.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() {
		env.exitErr = env.cmd.Wait()
		close(env.done)
	}()
	if err := env.waitForKubeconfig(s.startTimeout); err != nil {
		logs := env.Logs()
		_ = env.Stop()
		return nil, fmt.Errorf("%w\nskiff server log:\n%s", err, tail(logs, 60))
	}
	return env, nil
}

// withoutSkiffSettings drops the SKIFF_* variables, which skiff server reads
// as flags: a developer's exported SKIFF_DATASTORE_ENDPOINT must not reach a
// test's environment.
func withoutSkiffSettings(environ []string) []string {
	var kept []string
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "SKIFF_") {
			kept = append(kept, kv)
		}
	}
	return kept
}

func findBinary(explicit string) (string, error) {
	for _, candidate := range []string{explicit, os.Getenv("SKIFF_BIN")} {
		if candidate != "" {
			if _, err := os.Stat(candidate); err != nil {
				return "", fmt.Errorf("skiff binary: %w", err)
			}
			return candidate, nil
		}
	}
	bin, err := exec.LookPath("skiff")
	if err != nil {
		return "", errors.New("no skiff binary: set SKIFF_BIN, put skiff on PATH or use testenv.WithBinary")
	}
	return bin, nil
}

// waitForKubeconfig waits for the admin kubeconfig, which the server writes
// once the apiserver is ready and the controllers and scheduler run.
func (e *Environment) waitForKubeconfig(timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		data, err := os.ReadFile(e.Kubeconfig)
		if err == nil {
			if e.Config, err = clientcmd.RESTConfigFromKubeConfig(data); err != nil {
				return err
			}
			// Tests create objects in bursts; the apiserver is local.
			e.Config.QPS, e.Config.Burst = 200, 400
			return nil
		}
		select {
		case <-e.done:
			return fmt.Errorf("skiff server exited before it was ready: %v", e.exitErr)
		case <-deadline:
			return fmt.Errorf("skiff server not ready within %s", timeout)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// prepare makes a running environment the test's: it checks the version
// and installs the CRDs.
func (e *Environment) prepare(s *settings) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.startTimeout)
	defer cancel()
	if s.version != "" {
		dc, err := discovery.NewDiscoveryClientForConfig(e.Config)
		if err != nil {
			return err
		}
		v, err := dc.ServerVersion()
		if err != nil {
			return err
		}
		if !strings.HasPrefix(v.GitVersion, s.version) {
			return fmt.Errorf("skiff runs Kubernetes %s, the test wants %s", v.GitVersion, s.version)
		}
	}
	return installCRDs(ctx, e.Config, s.crdDirs, s.crds)
}

// Stop stops the control plane (SIGTERM, then SIGKILL after 15 seconds) and
// removes its directory. It is safe to call more than once.
func (e *Environment) Stop() error {
	e.stopOnce.Do(func() {
		select {
		case <-e.done:
		default:
			_ = e.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-e.done:
			case <-time.After(15 * time.Second):
				_ = e.cmd.Process.Kill()
				<-e.done
				e.stopErr = errors.New("skiff server did not stop within 15s of SIGTERM; killed it")
			}
		}
		if err := os.RemoveAll(e.Dir); err != nil && e.stopErr == nil {
			e.stopErr = err
		}
	})
	return e.stopErr
}

// Logs returns what the server has logged so far.
func (e *Environment) Logs() string { return e.log.String() }

// Pid is the server's process id.
func (e *Environment) Pid() int { return e.cmd.Process.Pid }

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func tail(s string, lines int) string {
	all := strings.Split(s, "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}
