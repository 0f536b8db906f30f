package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-dev/skiff/tests/harness"
)

// The load, after the vcluster/k3s datastore load test: Secrets of 1 KiB,
// created under a cycle of names and then updated, at a fixed rate.
const (
	secretNames = 5000
	secretBytes = 1024
	// maxInFlight bounds the requests waiting for an answer; a request due
	// while that many wait is not issued, and counts as an error.
	maxInFlight = 500
	// loadNamespace is made fresh on each server for the load's Secrets.
	loadNamespace = "datastore-load"
)

// serverArgs keep the servers to the API alone: no node, no add-ons whose
// controllers would write meanwhile.
var serverArgs = []string{"--disable", "ingress,metrics-server"}

// errNotIssued is a request that was due while maxInFlight others waited.
var errNotIssued = errors.New("not issued: too many requests in flight")

// datastoreSetup is one control plane on one datastore, running.
type datastoreSetup struct {
	// config is the admin's client configuration, through the server the
	// load goes to.
	config *rest.Config
	// failover, when set, kills a server under writes (etcd, 3 members).
	failover func() (failoverResult, error)
	// cleanups stop and remove what was started, last first.
	cleanups []func() error
}

func (s *datastoreSetup) onClose(f func() error) { s.cleanups = append(s.cleanups, f) }

func (s *datastoreSetup) close() error {
	var errs []error
	for _, f := range slices.Backward(s.cleanups) {
		errs = append(errs, f())
	}
	return errors.Join(errs...)
}

// datastoreKind names a datastore and starts a control plane on it with
// its state under root; on error, what it started is already stopped.
type datastoreKind struct {
	name  string
	start func(bin, root string) (*datastoreSetup, error)
}

var datastoreKinds = []datastoreKind{
	{"SQLite", startSQLiteSetup},
	{"etcd, 1 member", startEtcdSetup},
	{"etcd, 3 members", startEtcdClusterSetup},
	{"PostgreSQL (kine)", startPostgresSetup},
}

type loadResult struct {
	issued, ok, errs int
	elapsed          time.Duration
	latencies        []time.Duration // of the successful requests, sorted
	firstErr         error
}

// rate is the successful writes per second over the load, from its first
// request until its last answer.
func (r loadResult) rate() float64 { return float64(r.ok) / r.elapsed.Seconds() }

// percentile is the nearest-rank percentile p (0-1) of the latencies.
func (r loadResult) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(r.latencies)))) - 1
	return r.latencies[min(max(i, 0), len(r.latencies)-1)]
}

type failoverResult struct {
	leader, via   string
	gap           time.Duration // longest between two successful writes
	acked, failed int
}

// benchDatastores measures the latency of Kubernetes API writes under a
// fixed-rate load on each datastore skiff offers, side by side, and, on
// three etcd members, how long writes stop when the leader's server dies.
func benchDatastores(runs, rate int, duration time.Duration) error {
	if runs < 1 || rate < 1 || duration < time.Second {
		return fmt.Errorf("datastores: want at least 1 run, a rate of 1/s and 1s of load, got %d, %d, %s", runs, rate, duration)
	}
	bin, err := harness.Binary()
	if err != nil {
		return err
	}
	root, err := os.MkdirTemp("", "skiff-bench-datastores-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	// PostgreSQL runs as its own user and must reach its directory below.
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}
	results := map[string][]loadResult{}
	var failovers []failoverResult
	for run := range runs {
		for i, kind := range datastoreKinds {
			dir := filepath.Join(root, fmt.Sprintf("run%d-%d", run+1, i))
			r, fo, err := datastoreOnce(bin, dir, kind, rate, duration)
			if err != nil {
				return fmt.Errorf("datastores, %s, run %d: %w", kind.name, run+1, err)
			}
			results[kind.name] = append(results[kind.name], r)
			printLoad(run+1, kind.name, r)
			if fo != nil {
				failovers = append(failovers, *fo)
				fmt.Printf("run %d, %s: leader's server %s killed, writes through %s: longest gap between successful writes %.2f s, %d failed writes (%d acknowledged)\n",
					run+1, kind.name, fo.leader, fo.via, fo.gap.Seconds(), fo.failed, fo.acked)
			}
		}
	}
	printDatastoreTable(runs, rate, duration, results, failovers)
	return nil
}

// datastoreOnce starts a control plane on one datastore, runs the load
// through it (and the failover when it has one), and removes it.
func datastoreOnce(bin, dir string, kind datastoreKind, rate int, duration time.Duration) (r loadResult, fo *failoverResult, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, nil, err
	}
	setup, err := kind.start(bin, dir)
	if err != nil {
		return r, nil, err
	}
	defer func() {
		if cerr := setup.close(); err == nil && cerr != nil {
			err = fmt.Errorf("cleanup: %w", cerr)
		}
	}()
	// The controllers' own writes right after the start (service accounts,
	// RBAC, leases) settle first: they are not the load.
	time.Sleep(5 * time.Second)
	if r, err = runLoad(setup.config, rate, duration); err != nil {
		return r, nil, err
	}
	if setup.failover != nil {
		f, err := setup.failover()
		if err != nil {
			return r, nil, fmt.Errorf("failover: %w", err)
		}
		fo = &f
	}
	return r, fo, nil
}

// runLoad issues rate Secret writes per second for duration, open loop:
// each request at its own time in its own goroutine, whether or not the
// earlier ones have been answered, so that a slow datastore shows as
// latency and not as a lower rate. A request's latency counts from when it
// was due.
func runLoad(rc *rest.Config, rate int, duration time.Duration) (loadResult, error) {
	rc = rest.CopyConfig(rc)
	// client-go's own rate limiter (5/s by default) would shape the load.
	rc.QPS, rc.Burst = 1000, 2000
	rc.Timeout = time.Minute
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return loadResult{}, err
	}
	ctx := context.Background()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: loadNamespace}}, metav1.CreateOptions{}); err != nil {
		return loadResult{}, fmt.Errorf("creating the load's namespace: %w", err)
	}
	payload := make([]byte, secretBytes)
	rand.Read(payload)

	n := int(duration * time.Duration(rate) / time.Second)
	interval := time.Second / time.Duration(rate)
	latencies, errs := make([]time.Duration, n), make([]error, n)
	inFlight := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(due))
		select {
		case inFlight <- struct{}{}:
		default:
			errs[i] = errNotIssued
			continue
		}
		wg.Go(func() {
			defer func() { <-inFlight }()
			errs[i] = writeSecret(ctx, client, i, payload)
			latencies[i] = time.Since(due)
		})
	}
	wg.Wait()
	r := loadResult{issued: n, elapsed: time.Since(start)}
	for i, err := range errs {
		if err != nil {
			r.errs++
			if r.firstErr == nil {
				r.firstErr = err
			}
			continue
		}
		r.ok++
		r.latencies = append(r.latencies, latencies[i])
	}
	slices.Sort(r.latencies)
	return r, nil
}

// writeSecret makes request i's write: a create for the first round of
// names, an update of the same name after.
func writeSecret(ctx context.Context, c kubernetes.Interface, i int, payload []byte) error {
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("load-%04d", i%secretNames)},
		// The request's number makes each update change the object: the
		// apiserver writes nothing for an update that changes nothing.
		Data: map[string][]byte{"payload": payload, "request": []byte(strconv.Itoa(i))},
	}
	secrets := c.CoreV1().Secrets(loadNamespace)
	if i < secretNames {
		_, err := secrets.Create(ctx, secret, metav1.CreateOptions{})
		if !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	_, err := secrets.Update(ctx, secret, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) { // its create failed
		_, err = secrets.Create(ctx, secret, metav1.CreateOptions{})
	}
	return err
}

// startSQLiteSetup is the default server: kine on SQLite.
func startSQLiteSetup(bin, root string) (*datastoreSetup, error) {
	return startHostSetup(bin, filepath.Join(root, "data"))
}

// startEtcdSetup is a one-member embedded etcd, on ports of its own so as
// not to meet another server's etcd on this host.
func startEtcdSetup(bin, root string) (*datastoreSetup, error) {
	args := []string{"--cluster-init"}
	for _, flag := range []string{"--etcd-client-port", "--etcd-peer-port", "--etcd-metrics-port"} {
		port, err := harness.FreePort()
		if err != nil {
			return nil, err
		}
		args = append(args, flag, strconv.Itoa(port))
	}
	return startHostSetup(bin, filepath.Join(root, "data"), args...)
}

// startPostgresSetup starts a PostgreSQL of its own and a server on it
// through kine.
func startPostgresSetup(bin, root string) (*datastoreSetup, error) {
	pg, err := harness.StartPostgres(filepath.Join(root, "pg"))
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL: %w", err)
	}
	setup, err := startHostSetup(bin, filepath.Join(root, "data"), "--datastore-endpoint", pg.Endpoint("kubernetes"))
	if err != nil {
		return nil, errors.Join(err, pg.Stop())
	}
	// PostgreSQL is stopped last (cleanups run last first): the server
	// goes before its datastore.
	setup.cleanups = slices.Insert(setup.cleanups, 0, pg.Stop)
	return setup, nil
}

// startHostSetup starts `skiff server --disable-agent` on this host (the
// harness's server) and waits until its whole control plane has started.
func startHostSetup(bin, dataDir string, args ...string) (*datastoreSetup, error) {
	s, err := harness.NewServer(bin, dataDir, append(slices.Clone(serverArgs), args...)...)
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	// Kill alone: without a node the server leaves nothing else on this
	// host, and skiff-killall.sh would stop every skiff server here, not
	// only this one.
	setup := &datastoreSetup{}
	setup.onClose(func() error { s.Kill(); return nil })
	if err := s.WaitKubeconfig(3 * time.Minute); err != nil {
		return nil, errors.Join(withLog(err, s.LogPath), setup.close())
	}
	if setup.config, err = s.RESTConfig(); err != nil {
		return nil, errors.Join(err, setup.close())
	}
	return setup, nil
}

// startEtcdClusterSetup starts three servers on embedded etcd, each in its
// own network and mount namespaces on a bridge (etcd's peers need an
// address each): the first with --cluster-init, the others joining it.
// The load goes through the first.
func startEtcdClusterSetup(bin, root string) (*datastoreSetup, error) {
	// Named skf<n>… on 10.252.0.0/24, which scripts/test-cleanup.sh
	// removes if this process dies before it does.
	network, err := harness.NewNetwork(fmt.Sprintf("skf%db", os.Getpid()%100000), "10.252.0.0/24")
	if err != nil {
		return nil, err
	}
	setup := &datastoreSetup{}
	setup.onClose(func() error { network.Close(); return nil })
	fail := func(err error) (*datastoreSetup, error) { return nil, errors.Join(err, setup.close()) }

	var servers []*harness.Agent
	for i, name := range []string{"s1", "s2", "s3"} {
		a, err := network.NewAgent(bin, name, filepath.Join(root, name))
		if err != nil {
			return fail(err)
		}
		a.Role = "server"
		servers = append(servers, a)
		setup.onClose(a.Remove)
		args := append([]string{"--disable-agent", "--node-name", "bench-" + name}, serverArgs...)
		if i == 0 {
			args = append(args, "--cluster-init")
		} else {
			token, err := os.ReadFile(filepath.Join(servers[0].DataDir, "server", "token"))
			if err != nil {
				return fail(fmt.Errorf("the first server's token: %w", err))
			}
			args = append(args, "--server", servers[0].URL(), "--token", strings.TrimSpace(string(token)))
		}
		if err := a.Start(args...); err != nil {
			return fail(err)
		}
		// One join at a time: etcd adds one learner at a time.
		if _, err := a.WaitServer(3 * time.Minute); err != nil {
			return fail(withLog(err, a.LogPath))
		}
	}
	if err := waitEtcdVoters(servers[0], len(servers), time.Minute); err != nil {
		return fail(err)
	}
	if setup.config, err = servers[0].RESTConfig(); err != nil {
		return fail(err)
	}
	setup.failover = func() (failoverResult, error) { return killLeaderUnderWrites(servers) }
	return setup, nil
}

// waitEtcdVoters waits until the etcd cluster has n healthy voting
// members: a joined server serves before its learner is promoted.
func waitEtcdVoters(a *harness.Agent, n int, timeout time.Duration) error {
	var out string
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, timeout, true, func(context.Context) (bool, error) {
		var err error
		out, err = a.EtcdMembers()
		return err == nil && strings.Count(out, " healthy ") == n && !strings.Contains(out, "learner"), nil
	})
	if err != nil {
		return fmt.Errorf("want %d healthy etcd voters: %w; skiff etcd member list:\n%s", n, err, out)
	}
	return nil
}

// killLeaderUnderWrites kills (SIGKILL) the server holding the etcd leader
// while a sequential writer writes through another server, and measures
// how long the API stopped taking writes.
func killLeaderUnderWrites(servers []*harness.Agent) (failoverResult, error) {
	leader, err := harness.EtcdLeader(servers)
	if err != nil {
		return failoverResult{}, err
	}
	var via *harness.Agent
	for _, a := range servers {
		if a != leader {
			via = a
			break
		}
	}
	client, err := via.Client()
	if err != nil {
		return failoverResult{}, err
	}
	w := harness.StartWriter(client, "failover")
	time.Sleep(2 * time.Second) // writes before the kill, for the gap's start
	leader.Kill()
	time.Sleep(20 * time.Second)
	acked, failed, gap := w.Stop()
	if len(acked) == 0 {
		return failoverResult{}, fmt.Errorf("no write through %s succeeded; see %s", via.Name, via.LogPath)
	}
	return failoverResult{leader: leader.Name, via: via.Name, gap: gap, acked: len(acked), failed: failed}, nil
}

// withLog adds the end of a log to err: the bench removes its directory,
// logs included, when it ends.
func withLog(err error, logPath string) error {
	data, rerr := os.ReadFile(logPath)
	if rerr != nil {
		return err
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return fmt.Errorf("%w\nlast lines of %s:\n%s", err, logPath, strings.Join(lines[max(0, len(lines)-20):], "\n"))
}

func printLoad(run int, name string, r loadResult) {
	fmt.Printf("run %d, %s: %.1f writes/s achieved (%d of %d ok), p50 %s, p99 %s, max %s, errors %d\n",
		run, name, r.rate(), r.ok, r.issued, secs(r.percentile(0.50)), secs(r.percentile(0.99)), secs(r.percentile(1)), r.errs)
	if r.firstErr != nil {
		fmt.Printf("  first error: %v\n", r.firstErr)
	}
}

func printDatastoreTable(runs, rate int, duration time.Duration, results map[string][]loadResult, failovers []failoverResult) {
	fmt.Printf("\nKubernetes API writes (Secrets of %d B, %d names, created then updated), open loop at %d/s for %s, server --disable-agent; median of %d runs:\n",
		secretBytes, secretNames, rate, duration, runs)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
	fmt.Fprintln(w, "  datastore\twrites/s\tp50\tp99\tmax\terrors")
	for _, kind := range datastoreKinds {
		var rates, errs []float64
		var p50, p99, top []time.Duration
		for _, r := range results[kind.name] {
			rates, errs = append(rates, r.rate()), append(errs, float64(r.errs))
			p50, p99, top = append(p50, r.percentile(0.50)), append(p99, r.percentile(0.99)), append(top, r.percentile(1))
		}
		fmt.Fprintf(w, "  %s\t%.1f\t%s\t%s\t%s\t%.0f\n", kind.name, median(rates), secs(median(p50)), secs(median(p99)), secs(median(top)), median(errs))
	}
	w.Flush()
	if len(failovers) > 0 {
		var gaps []time.Duration
		var failed []float64
		for _, f := range failovers {
			gaps, failed = append(gaps, f.gap), append(failed, float64(f.failed))
		}
		fmt.Printf("etcd, 3 members, the etcd leader's server killed (SIGKILL) under sequential writes through another: longest gap between successful writes %s, failed writes %.0f\n",
			spread(gaps), median(failed))
	}
	fmt.Println("anchors (vcluster load test, published): k3s+SQLite p99 1.4 s, k3s+etcd 0.35 s, upstream k8s 0.15 s")
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }
