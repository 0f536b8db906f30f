// Command bench measures skiff server's start time and idle memory with the
// real binary, and prints medians over several runs (these machines are
// noisy). Run it through `make bench`.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/tests/harness"
)

func main() {
	bin := flag.String("bin", "", "skiff binary (default $SKIFF_BIN)")
	runs := flag.Int("runs", 5, "runs per figure")
	idle := flag.Duration("idle", time.Minute, "how long after ready the idle RSS is read")
	suite := flag.String("suite", "all", "footprint, controlplane, testenv, agent, install, multinode, datastores, day2 or all")
	multinodeRuns := flag.Int("multinode-runs", 3, "runs per multi-node figure")
	installRuns := flag.Int("install-runs", 3, "runs per install.sh figure")
	dist := flag.String("dist", "dist", "release directory whose binaries' sizes the install and footprint suites print")
	agentRuns := flag.Int("agent-runs", 3, "runs per node agent figure")
	testenvRuns := flag.Int("testenv-runs", 10, "runs per testenv figure")
	agentArgs := flag.String("agent-server-args", "", "extra `skiff server` arguments for the agent suite, space-separated (e.g. --disable=ingress)")
	datastoreRuns := flag.Int("datastore-runs", 1, "runs per datastore figure")
	datastoreRate := flag.Int("datastore-rate", 200, "Secret writes per second of the datastores suite's load (open loop)")
	datastoreDuration := flag.Duration("datastore-duration", 30*time.Second, "how long the datastores suite's load lasts on each datastore")
	day2Parts := flag.String("day2-parts", "snapshots,churn,idle", "which parts of the day2 suite run")
	day2Runs := flag.Int("day2-runs", 3, "snapshots saved and restored per datastore in the day2 suite")
	day2Objects := flag.Int("day2-objects", 10000, "objects in the datastore the day2 suite snapshots and restores")
	churnRate := flag.Int("churn-rate", 100, "writes per second of the day2 suite's churn")
	churn := flag.Duration("churn", 10*time.Minute, "how long the day2 suite's churn lasts")
	idleWindow := flag.Duration("idle-window", 5*time.Minute, "over how long the day2 suite counts an idle cluster's writes")
	footprintRuns := flag.Int("footprint-runs", 3, "runs per figure of the footprint suite (#13's targets)")
	toolDir := flag.String("tools", "bin/bench", "where the envtest comparison's etcd and kube-apiserver are built")
	flag.Parse()
	if *bin != "" {
		os.Setenv("SKIFF_BIN", *bin)
	}
	var err error
	if *suite == "footprint" || *suite == "all" {
		err = benchFootprint(*footprintRuns, *testenvRuns, *toolDir, *dist, strings.Fields(*agentArgs))
	}
	if err == nil && (*suite == "controlplane" || *suite == "all") {
		err = run(*runs, *idle)
	}
	if err == nil && (*suite == "testenv" || *suite == "all") {
		err = benchTestenv(*testenvRuns, *toolDir)
	}
	if err == nil && (*suite == "agent" || *suite == "all") {
		err = benchAgent(*agentRuns, *idle, strings.Fields(*agentArgs))
	}
	if err == nil && (*suite == "install" || *suite == "all") {
		err = benchInstall(*installRuns, *dist)
	}
	if err == nil && (*suite == "multinode" || *suite == "all") {
		err = benchMultinode(*multinodeRuns, *idle)
	}
	if err == nil && (*suite == "datastores" || *suite == "all") {
		err = benchDatastores(*datastoreRuns, *datastoreRate, *datastoreDuration)
	}
	if err == nil && (*suite == "day2" || *suite == "all") {
		err = benchDay2(*day2Parts, *day2Runs, *day2Objects, *churnRate, *churn, *idleWindow)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(runs int, idle time.Duration) error {
	bin, err := harness.Binary()
	if err != nil {
		return err
	}
	root, err := os.MkdirTemp("", "skiff-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)

	var emptyReady, emptyFull, existingReady, existingFull, stop []time.Duration
	var rssBytes []float64
	for i := range runs {
		r, err := startOnce(bin, filepath.Join(root, fmt.Sprintf("empty-%d", i)), 0)
		if err != nil {
			return err
		}
		emptyReady, emptyFull, stop = append(emptyReady, r.ready), append(emptyFull, r.full), append(stop, r.stop)
		fmt.Printf("run %d, empty data dir: readyz %s, kubeconfig %s\n", i+1, r.ready, r.full)
	}
	existing := filepath.Join(root, "existing")
	if _, err := startOnce(bin, existing, 0); err != nil {
		return err
	}
	for i := range runs {
		r, err := startOnce(bin, existing, idle)
		if err != nil {
			return err
		}
		existingReady, existingFull, stop = append(existingReady, r.ready), append(existingFull, r.full), append(stop, r.stop)
		rssBytes = append(rssBytes, float64(r.rss))
		fmt.Printf("run %d, existing data dir: readyz %s, kubeconfig %s, RSS after %s idle %.0f MiB\n", i+1, r.ready, r.full, idle, float64(r.rss)/(1<<20))
	}
	fmt.Printf("\nskiff server --disable-agent, median of %d runs (min-max):\n", runs)
	fmt.Printf("  start to /readyz ok, empty data dir:      %s\n", spread(emptyReady))
	fmt.Printf("  start to /readyz ok, existing data dir:   %s\n", spread(existingReady))
	fmt.Printf("  start to admin kubeconfig, empty:         %s\n", spread(emptyFull))
	fmt.Printf("  start to admin kubeconfig, existing:      %s\n", spread(existingFull))
	fmt.Printf("  SIGTERM to exit:                          %s\n", spread(stop))
	fmt.Printf("  RSS %s after ready, idle:                %.0f MiB (%.0f-%.0f)\n", idle, median(rssBytes)/(1<<20), slices.Min(rssBytes)/(1<<20), slices.Max(rssBytes)/(1<<20))
	return nil
}

type result struct {
	ready, full, stop time.Duration
	rss               int64
}

// startOnce starts a server on dataDir, times /readyz and the admin
// kubeconfig (written once the controller-manager and scheduler have been
// launched, right after /readyz), optionally idles and reads RSS, then stops
// it.
func startOnce(bin, dataDir string, idle time.Duration) (result, error) {
	s, err := harness.NewServer(bin, dataDir)
	if err != nil {
		return result{}, err
	}
	defer s.Kill()
	start := time.Now()
	if err := s.Start(); err != nil {
		return result{}, err
	}
	var r result
	if err := s.WaitReady(2 * time.Minute); err != nil {
		return r, err
	}
	r.ready = time.Since(start)
	if err := s.WaitKubeconfig(2 * time.Minute); err != nil {
		return r, err
	}
	r.full = time.Since(start)
	if idle > 0 {
		time.Sleep(idle)
		if r.rss, err = s.RSS(); err != nil {
			return r, err
		}
	}
	if r.stop, err = s.Stop(time.Minute); err != nil {
		return r, fmt.Errorf("stop: %w; see %s", err, s.LogPath)
	}
	return r, nil
}

func median[T float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func spread(ds []time.Duration) string {
	r := func(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }
	return fmt.Sprintf("%s (%s-%s)", r(median(ds)), r(slices.Min(ds)), r(slices.Max(ds)))
}

// nodeBenchSetup is what the suites that run nodes start with: the skiff
// binary, a directory of their own (the caller removes it) and the busybox
// image archive their pods run, in it.
func nodeBenchSetup(name string) (bin, root, busybox string, err error) {
	if bin, err = harness.Binary(); err != nil {
		return "", "", "", err
	}
	if root, err = os.MkdirTemp("", "skiff-bench-"+name+"-"); err != nil {
		return "", "", "", err
	}
	busybox = filepath.Join(root, "busybox.tar")
	if err := harness.BuildBusybox(busybox); err != nil {
		os.RemoveAll(root)
		return "", "", "", err
	}
	return bin, root, busybox, nil
}
