package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-dev/skiff/pkg/pki"
	"github.com/skiff-dev/skiff/pkg/testenv"
	"github.com/skiff-dev/skiff/tests/harness"
)

// benchTestenv compares testenv.Start with envtest's usual setup (etcd and
// kube-apiserver started as processes from binaries built from their Go
// modules), and measures pods made Running per second on simulated nodes.
func benchTestenv(runs int, toolDir string) error {
	etcd, apiserver, err := buildEnvtestBinaries(toolDir)
	if err != nil {
		return err
	}
	var skiff, envtest []time.Duration
	for i := range runs {
		d, err := timeTestenv()
		if err != nil {
			return err
		}
		skiff = append(skiff, d)
		e, err := timeEnvtest(etcd, apiserver)
		if err != nil {
			return err
		}
		envtest = append(envtest, e)
		fmt.Printf("run %d: testenv.Start %s, etcd + kube-apiserver %s\n", i+1, d.Round(time.Millisecond), e.Round(time.Millisecond))
	}
	var rates []float64
	for i := range 3 {
		r, err := simulatedPodsPerSecond(100, 1000)
		if err != nil {
			return err
		}
		rates = append(rates, r)
		fmt.Printf("run %d: 1000 pods Running on 100 simulated nodes at %.0f pods/s (%.1fs)\n", i+1, r, 1000/r)
	}
	fmt.Printf("\npkg/testenv, median of %d runs (min-max):\n", runs)
	fmt.Printf("  testenv.Start to a usable client:              %s\n", spread(skiff))
	fmt.Printf("  envtest setup (etcd + kube-apiserver) to same: %s\n", spread(envtest))
	fmt.Printf("  ratio envtest / testenv:                       %.2fx\n", median(envtest).Seconds()/median(skiff).Seconds())
	fmt.Printf("  pods made Running on simulated nodes:          %.0f pods/s (%.0f-%.0f), median of 3\n", median(rates), slices.Min(rates), slices.Max(rates))
	return nil
}

func timeTestenv() (time.Duration, error) {
	start := time.Now()
	env, err := usableTestenv()
	if err != nil {
		return 0, err
	}
	d := time.Since(start)
	return d, env.Stop()
}

// usableTestenv is testenv.New and the first request answered, as a test
// would make it.
func usableTestenv(opts ...testenv.Option) (*testenv.Environment, error) {
	env, err := testenv.New(opts...)
	if err != nil {
		return nil, err
	}
	c, err := kubernetes.NewForConfig(env.Config)
	if err == nil {
		_, err = c.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{})
	}
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return env, nil
}

// testenvFigures are the times to a usable client of each way to get a
// test cluster.
type testenvFigures struct {
	plain, envtest, pooled, namespace []time.Duration
}

// testenvWork is how long each pooled test works with its environment: the
// spare for the next one starts meanwhile (a test shorter than a start
// waits for the rest of it).
const testenvWork = 3 * time.Second

// benchTestenvModes times each way to a first answered request: in turns,
// testenv.New and envtest's setup; then
// a run of pooled tests that each work testenvWork (the first, which
// starts cold, not counted); then testenv.Namespace on one shared
// environment (the first, which starts it, not counted).
func benchTestenvModes(runs int, etcd, apiserver string) (f testenvFigures, err error) {
	for range runs {
		d, err := timeTestenv()
		if err != nil {
			return f, err
		}
		e, err := timeEnvtest(etcd, apiserver)
		if err != nil {
			return f, err
		}
		f.plain, f.envtest = append(f.plain, d), append(f.envtest, e)
	}
	defer testenv.StopShared()
	for i := range runs + 1 {
		start := time.Now()
		env, err := usableTestenv(testenv.Pooled())
		if err != nil {
			return f, err
		}
		if i > 0 {
			f.pooled = append(f.pooled, time.Since(start))
		}
		time.Sleep(testenvWork)
		if err := env.Stop(); err != nil {
			return f, err
		}
	}
	if err := testenv.StopShared(); err != nil {
		return f, err
	}
	t := &namespaceT{}
	for i := range runs + 1 {
		start := time.Now()
		env, ns, err := namespaceOnce(t)
		if err != nil {
			return f, err
		}
		c, err := kubernetes.NewForConfig(env.Config)
		if err == nil {
			_, err = c.CoreV1().ConfigMaps(ns).List(context.Background(), metav1.ListOptions{})
		}
		if err != nil {
			return f, err
		}
		if i > 0 {
			f.namespace = append(f.namespace, time.Since(start))
		}
	}
	t.cleanup()
	fmt.Printf("testenv, median of %d: New %s, envtest %s, New(Pooled) with %s of work per test %s, Namespace %s\n", runs,
		median(f.plain).Round(time.Millisecond), median(f.envtest).Round(time.Millisecond), testenvWork,
		median(f.pooled).Round(time.Millisecond), median(f.namespace).Round(time.Millisecond))
	return f, nil
}

func buildEnvtestBinaries(dir string) (string, string, error) {
	etcd, apiserver := filepath.Join(dir, "etcd"), filepath.Join(dir, "kube-apiserver")
	for bin, pkg := range map[string]string{etcd: "go.etcd.io/etcd/server/v3", apiserver: "k8s.io/kubernetes/cmd/kube-apiserver"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return "", "", fmt.Errorf("building %s: %w", pkg, err)
		}
	}
	return etcd, apiserver, nil
}

// timeEnvtest starts etcd and kube-apiserver as envtest does (certificates
// made beforehand, as envtest makes them in-process) and times until the
// apiserver's /readyz answers the admin.
func timeEnvtest(etcdBin, apiserverBin string) (time.Duration, error) {
	dir, err := os.MkdirTemp("", "envtest-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = harness.FreePort(); err != nil {
			return 0, err
		}
	}
	tls := pki.Dir(filepath.Join(dir, "tls"))
	start := time.Now()
	if _, err := pki.Ensure(tls, pki.ServingNames("cluster.local", []byte{10, 0, 0, 1}, nil, nil)); err != nil {
		return 0, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	etcd := exec.Command(etcdBin, "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", "http://127.0.0.1:"+strconv.Itoa(ports[1]), "--unsafe-no-fsync")
	apiserver := exec.Command(apiserverBin,
		"--etcd-servers", etcdURL,
		"--secure-port", strconv.Itoa(ports[2]), "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--endpoint-reconciler-type", "none",
		"--cert-dir", dir, "--tls-cert-file", tls.Cert(pki.ServingAPIServer), "--tls-private-key-file", tls.Key(pki.ServingAPIServer),
		"--client-ca-file", tls.Cert(pki.ClientCA), "--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc", "--service-account-key-file", tls.PublicKey(pki.ServiceAccountKey),
		"--service-account-signing-key-file", tls.Key(pki.ServiceAccountKey),
		"--service-cluster-ip-range", "10.0.0.0/24", "--allow-privileged=true")
	for _, c := range []*exec.Cmd{etcd, apiserver} {
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			return 0, err
		}
		defer func() { _ = c.Process.Kill(); _ = c.Wait() }()
	}
	rc := &rest.Config{Host: "https://127.0.0.1:" + strconv.Itoa(ports[2]), Timeout: 2 * time.Second,
		TLSClientConfig: rest.TLSClientConfig{CAFile: tls.Cert(pki.ServerCA), CertFile: tls.Cert(pki.ClientAdmin), KeyFile: tls.Key(pki.ClientAdmin)}}
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return 0, err
	}
	err = wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil, nil
	})
	return time.Since(start), err
}

// simulatedPodsPerSecond creates pods on a testenv with simulated nodes
// and returns pods made Running per second, from the first create to the
// last Running.
func simulatedPodsPerSecond(nodes, pods int) (float64, error) {
	env, err := testenv.New(testenv.WithSimulatedNodes(nodes))
	if err != nil {
		return 0, err
	}
	defer env.Stop()
	rc := rest.CopyConfig(env.Config)
	rc.QPS, rc.Burst = 1000, 2000
	c := kubernetes.NewForConfigOrDie(rc)
	ctx := context.Background()
	// Simulated nodes are schedulable once the node lifecycle controller
	// has lifted its not-ready taint.
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		ok := 0
		for _, n := range list.Items {
			if len(n.Spec.Taints) == 0 && n.Spec.PodCIDR != "" {
				ok++
			}
		}
		return ok == nodes, nil
	})
	if err != nil {
		return 0, fmt.Errorf("simulated nodes not schedulable: %w", err)
	}
	start := time.Now()
	if err := harness.CreatePods(ctx, c, "default", "bench", pods); err != nil {
		return 0, err
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		running := 0
		for _, p := range list.Items {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == pods, nil
	})
	if err != nil {
		return 0, err
	}
	return float64(pods) / time.Since(start).Seconds(), nil
}

// namespaceT is the part of a testing.TB that testenv.Namespace uses, for
// calling it outside a test: failures become errors, cleanups run at the
// end.
type namespaceT struct {
	testing.TB // nil: any other method panics
	err        error
	cleanups   []func()
}

func (t *namespaceT) Helper()                         {}
func (t *namespaceT) Name() string                    { return "BenchNamespace" }
func (t *namespaceT) Failed() bool                    { return t.err != nil }
func (t *namespaceT) Cleanup(f func())                { t.cleanups = append(t.cleanups, f) }
func (t *namespaceT) Logf(format string, args ...any) {}
func (t *namespaceT) Errorf(format string, args ...any) {
	t.err = fmt.Errorf(format, args...)
}
func (t *namespaceT) Fatalf(format string, args ...any) {
	t.err = fmt.Errorf(format, args...)
	runtime.Goexit()
}

func (t *namespaceT) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	t.cleanups = nil
}

// namespaceOnce calls testenv.Namespace on its own goroutine, so that a
// Fatalf ends only that.
func namespaceOnce(t *namespaceT) (env *testenv.Environment, ns string, err error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		env, ns = testenv.Namespace(t)
	}()
	<-done
	return env, ns, t.err
}
