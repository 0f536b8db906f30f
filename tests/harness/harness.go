// Package harness starts the real skiff binary for end-to-end tests and
// benchmarks: its own data dir, free ports, and a client-go client.
package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Binary is the skiff binary under test, from $SKIFF_BIN (set by make).
func Binary() (string, error) {
	bin := os.Getenv("SKIFF_BIN")
	if bin == "" {
		return "", errors.New("SKIFF_BIN is not set: run the end-to-end tests through `make test`")
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("SKIFF_BIN: %w", err)
	}
	return bin, nil
}

// FreePort returns a TCP port that was free on loopback a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Server is one `skiff server` process.
type Server struct {
	Bin     string
	DataDir string
	Port    int
	// Args are added after the ones that isolate this server.
	Args []string
	// Agent runs the node agent too (real pods); otherwise the server is
	// started with --disable-agent.
	Agent bool
	// LogPath receives the process's stdout and stderr.
	LogPath string
	// Env is added to the process's environment.
	Env []string

	controllerPort, schedulerPort int
	process
}

// NewServer prepares a server on dataDir with free ports and an empty
// config file (so a config file on the host cannot leak into the test).
func NewServer(bin, dataDir string, args ...string) (*Server, error) {
	s := &Server{Bin: bin, DataDir: dataDir, Args: args}
	var err error
	for _, p := range []*int{&s.Port, &s.controllerPort, &s.schedulerPort} {
		if *p, err = FreePort(); err != nil {
			return nil, err
		}
	}
	s.LogPath = s.aside("log")
	return s, nil
}

// Kubeconfig is the admin kubeconfig the server writes once it is ready.
func (s *Server) Kubeconfig() string {
	return s.aside("kubeconfig")
}

// ConfigFile is the config file the server is given.
func (s *Server) ConfigFile() string {
	return s.aside("config.yaml")
}

// aside names a file of this server beside its data dir, apart from those of
// other servers on the same data dir.
func (s *Server) aside(suffix string) string {
	return filepath.Join(filepath.Dir(s.DataDir), fmt.Sprintf("%s-%d.%s", filepath.Base(s.DataDir), s.Port, suffix))
}

// CommandLine is the full argument list the server is started with.
func (s *Server) CommandLine() []string {
	args := []string{"server"}
	if !s.Agent {
		args = append(args, "--disable-agent")
	}
	return append(append(args,
		"--config", s.ConfigFile(),
		"--data-dir", s.DataDir,
		"--https-listen-port", strconv.Itoa(s.Port),
		"--write-kubeconfig", s.Kubeconfig(),
		"--kube-controller-manager-arg", "secure-port="+strconv.Itoa(s.controllerPort),
		"--kube-scheduler-arg", "secure-port="+strconv.Itoa(s.schedulerPort),
	), s.Args...)
}

// Start starts the process with the apiserver's watch-cache consistency
// checker on: it panics when the watch cache and the datastore disagree.
func (s *Server) Start() error {
	if _, err := os.Stat(s.ConfigFile()); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(s.ConfigFile(), nil, 0o600); err != nil {
			return err
		}
	}
	// The server writes the kubeconfig when it is ready; a stale one from
	// an earlier start must not count.
	if err := os.Remove(s.Kubeconfig()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return s.start(exec.Command(s.Bin, s.CommandLine()...), s.LogPath, append([]string{"KUBE_WATCHCACHE_CONSISTENCY_CHECKER=true"}, s.Env...)...)
}

// WaitReady waits until the apiserver's /readyz answers ok to the admin,
// using the credentials the server writes into its data dir before it
// starts the apiserver.
func (s *Server) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	adminKubeconfig := filepath.Join(s.DataDir, "server", "cred", "admin.kubeconfig")
	var lastErr error
	for time.Now().Before(deadline) {
		if exited, err := s.Exited(); exited {
			return fmt.Errorf("skiff server exited before it was ready (%v); see %s", err, s.LogPath)
		}
		lastErr = s.readyz(adminKubeconfig)
		if lastErr == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %s: %v; see %s", timeout, lastErr, s.LogPath)
}

func (s *Server) readyz(kubeconfig string) error {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	rc.Timeout = 2 * time.Second
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	_, err = c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(context.Background())
	return err
}

// WaitKubeconfig waits for the admin kubeconfig the server writes when the
// whole control plane has started.
func (s *Server) WaitKubeconfig(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(s.Kubeconfig()); err == nil {
			return nil
		}
		if exited, err := s.Exited(); exited {
			return fmt.Errorf("skiff server exited (%v); see %s", err, s.LogPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no kubeconfig after %s; see %s", timeout, s.LogPath)
}

// RESTConfig is the admin's client configuration.
func (s *Server) RESTConfig() (*rest.Config, error) {
	return clientcmd.BuildConfigFromFlags("", s.Kubeconfig())
}

// Client is an admin client-go clientset.
func (s *Server) Client() (kubernetes.Interface, error) {
	rc, err := s.RESTConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(rc)
}

// RSS is the resident set size of the process in bytes, from /proc.
func (s *Server) RSS() (int64, error) {
	return RSSOf(s.Pid())
}

// RSSOf reads VmRSS of a process from /proc.
func RSSOf(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	var kb int64
	for line := range strings.Lines(string(data)) {
		if n, _ := fmt.Sscanf(line, "VmRSS: %d kB", &kb); n == 1 {
			return kb * 1024, nil
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// CreatePods creates n pods named prefix-<i> with the label app=prefix in
// namespace, from 16 goroutines; their image is never pulled (they are meant
// for simulated nodes).
func CreatePods(ctx context.Context, c kubernetes.Interface, namespace, prefix string, n int) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range work {
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", prefix, i), Labels: map[string]string{"app": prefix}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}}},
				}
				if _, err := c.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	return <-errs // nil when there was none
}
