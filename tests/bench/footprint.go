package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/tests/harness"
)

// Published figures, for the anchors that cannot run here (no k3s binary
// without internet): k3s v1.3x's download, its idle server's RSS as its
// docs give it, and its "node Ready in about 30 s".
const (
	k3sBinaryMiB   = 77.5
	k3sIdleRSSMB   = 500 // "500-565 MB" (docs.k3s.io, resource profiling)
	k3sNodeReadyS  = 30
	footprintIdle  = time.Minute
	footprintWrite = time.Minute
)

type footprintRun struct {
	nodeReady, dns time.Duration
	mem            harness.NodeMemory
	heap           []heapShare
	runtime        map[string]int64
	writes         idleWrites
	// cpu is the share of one core skiff and its containerd used while
	// their writes were counted.
	cpu float64
}

// benchFootprint measures #13's targets on a single-node cluster with every
// add-on, started on an empty data dir: node Ready and DNS answering in a
// pod; a minute after Ready the memory of each part and where the server's
// heap is; then a minute of its writes. It adds the size of this machine's
// release binary in dist (what a user downloads, as k3s's published size
// is) and of the program it unpacks, and testenv.Start against envtest, and
// prints each figure beside its target and anchor.
func benchFootprint(runs, testenvRuns int, toolDir, dist string, serverArgs []string) error {
	bin, root, busybox, err := nodeBenchSetup("footprint")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	// A freshly built binary's pages are still dirty in the page cache,
	// and skiff's write counter then counts some of their writeback.
	syscall.Sync()
	var rs []footprintRun
	for i := range runs {
		r, err := footprintOnce(bin, filepath.Join(root, fmt.Sprintf("run-%d", i)), busybox, serverArgs)
		if err != nil {
			return err
		}
		rs = append(rs, r)
		fmt.Printf("run %d: node Ready %s, DNS %s, skiff+containerd PSS %s (server %s, of it anonymous %s), whole tree PSS %s, writes %.0f B/s (skiff %.0f less its log %.0f, containerd %.0f), idle CPU %.1f%%\n",
			i+1, r.nodeReady.Round(time.Millisecond), r.dns.Round(time.Millisecond), mib(r.mem.Skiff.PSS), mib(r.mem.Server.PSS),
			mib(r.mem.Server.Anon), mib(r.mem.Total().PSS), r.writes.total(), r.writes.skiff, r.writes.log, r.writes.containerd, r.cpu*100)
	}
	etcd, apiserver, err := buildEnvtestBinaries(toolDir)
	if err != nil {
		return err
	}
	tf, err := benchTestenvModes(testenvRuns, etcd, apiserver)
	if err != nil {
		return err
	}
	program, err := os.Stat(bin)
	if err != nil {
		return err
	}
	release, err := os.Stat(filepath.Join(dist, "skiff-"+runtime.GOARCH))
	if err != nil {
		return fmt.Errorf("the release binary (make bench-footprint packs it): %w", err)
	}
	printHeap(rs)
	durations := func(f func(footprintRun) time.Duration) []time.Duration {
		var out []time.Duration
		for _, r := range rs {
			out = append(out, f(r))
		}
		return out
	}
	floats := func(f func(footprintRun) float64) []float64 {
		var out []float64
		for _, r := range rs {
			out = append(out, f(r))
		}
		return out
	}
	toMiB := func(f func(harness.NodeMemory) int64) []float64 {
		return floats(func(r footprintRun) float64 { return float64(f(r.mem)) / (1 << 20) })
	}
	pss := median(toMiB(func(m harness.NodeMemory) int64 { return m.Skiff.PSS }))
	rss := median(toMiB(func(m harness.NodeMemory) int64 { return m.Skiff.RSS }))
	tree := median(toMiB(func(m harness.NodeMemory) int64 { return m.Total().PSS }))
	ready, dns := median(durations(func(r footprintRun) time.Duration { return r.nodeReady })), median(durations(func(r footprintRun) time.Duration { return r.dns }))
	binMiB, programMiB := float64(release.Size())/(1<<20), float64(program.Size())/(1<<20)
	start, envtest := median(tf.pooled), median(tf.envtest)
	writes := median(floats(func(r footprintRun) float64 { return r.writes.total() }))
	fmt.Printf("\n#13 targets, single node with every add-on, median of %d runs (testenv: %d):\n", runs, testenvRuns)
	fmt.Printf("  %-46s %-16s %-10s %s\n", "figure", "measured", "target", "anchor")
	row := func(name, measured, target, anchor string, ok bool) {
		mark := "ok  "
		if !ok {
			mark = "MISS"
		}
		fmt.Printf("  %s %-41s %-16s %-10s %s\n", mark, name, measured, target, anchor)
	}
	row("skiff+containerd PSS, 1 min after Ready", fmt.Sprintf("%.0f MiB", pss), "<= 300 MiB",
		fmt.Sprintf("RSS %.0f MiB; k3s server %d MB RSS (published): %.2fx", rss, k3sIdleRSSMB, k3sIdleRSSMB*1e6/(1<<20)/rss), pss <= 300)
	anon := median(toMiB(func(m harness.NodeMemory) int64 { return m.Skiff.Anon }))
	fmt.Printf("  (of it anonymous %.0f MiB, the rest the binary's pages; read-ahead on the binary's disk here: %s, the kernel's default 128 KiB)\n",
		anon, readAhead(bin))
	row("whole node tree PSS (with add-ons' pods)", fmt.Sprintf("%.0f MiB", tree), "<= 450 MiB", "", tree <= 450)
	row("start to node Ready, empty data dir", fmt.Sprintf("%.2f s", ready.Seconds()), "<= 5 s",
		fmt.Sprintf("k3s ~%d s (published): %.1fx", k3sNodeReadyS, k3sNodeReadyS/ready.Seconds()), ready <= 5*time.Second)
	row("start to DNS answering in a pod", fmt.Sprintf("%.2f s", dns.Seconds()), "<= 8 s", "", dns <= 8*time.Second)
	row("release binary (unpacks to the program)", fmt.Sprintf("%.1f MiB", binMiB), "<= 120 MiB",
		fmt.Sprintf("program %.1f MiB; k3s %.1f MiB (published): %.2fx", programMiB, k3sBinaryMiB, binMiB/k3sBinaryMiB), binMiB <= 120)
	row("testenv.Start(Pooled) to a first answer", fmt.Sprintf("%.1f ms", start.Seconds()*1000), "<= 1.0 s",
		fmt.Sprintf("unpooled %.2f s; Namespace %.1f ms", median(tf.plain).Seconds(), median(tf.namespace).Seconds()*1000), start <= time.Second)
	row("envtest setup / testenv.Start(Pooled)", fmt.Sprintf("%.0fx", envtest.Seconds()/start.Seconds()), ">= 3x",
		fmt.Sprintf("envtest here %.2f s; unpooled %.2fx", envtest.Seconds(), envtest.Seconds()/median(tf.plain).Seconds()), envtest >= 3*start)
	fmt.Printf("  (idle CPU of skiff+containerd meanwhile: %.1f%% of one core)\n", 100*median(floats(func(r footprintRun) float64 { return r.cpu })))
	row("idle writes to the data dir", fmt.Sprintf("%.1f kB/s", writes/1000), "<= 2 kB/s",
		fmt.Sprintf("%.2f revisions/s", median(floats(func(r footprintRun) float64 { return r.writes.revisions }))), writes <= 2000)
	return nil
}

// printHeap prints where the server's memory is: the runtime's view of its
// anonymous memory, and the live heap by component (medians over the runs).
func printHeap(rs []footprintRun) {
	fmt.Printf("\nskiff server process, 1 min after Ready (median of %d runs):\n", len(rs))
	stat := func(name string) float64 {
		var xs []float64
		for _, r := range rs {
			xs = append(xs, float64(r.runtime[name])/(1<<20))
		}
		return median(xs)
	}
	part := func(f func(harness.Memory) int64) float64 {
		var xs []float64
		for _, r := range rs {
			xs = append(xs, float64(f(r.mem.Server))/(1<<20))
		}
		return median(xs)
	}
	fmt.Printf("  PSS %.0f MiB: anonymous %.0f MiB, the rest the binary's pages\n",
		part(func(m harness.Memory) int64 { return m.PSS }), part(func(m harness.Memory) int64 { return m.Anon }))
	fmt.Printf("  Go heap: in use %.0f MiB, live after GC %.0f MiB, idle not yet returned %.0f MiB, returned %.0f MiB; stacks %.0f MiB; next GC at %.0f MiB\n",
		stat("HeapInuse"), stat("HeapAlloc"), stat("HeapIdle")-stat("HeapReleased"), stat("HeapReleased"), stat("Stack"), stat("NextGC"))
	totals := map[string][]float64{}
	for _, r := range rs {
		for _, s := range r.heap {
			totals[s.group] = append(totals[s.group], float64(s.bytes)/(1<<20))
		}
	}
	var groups []string
	for g := range totals {
		groups = append(groups, g)
	}
	slices.SortFunc(groups, func(a, b string) int { return int(median(totals[b])*1000 - median(totals[a])*1000) })
	fmt.Println("  live heap by component (heap profile after a GC; informers are shared code, so not split):")
	for _, g := range groups {
		fmt.Printf("    %-40s %6.1f MiB\n", g, median(totals[g]))
	}
}

func footprintOnce(bin, dataDir, busybox string, serverArgs []string) (r footprintRun, err error) {
	port, err := harness.FreePort()
	if err != nil {
		return r, err
	}
	pprof := fmt.Sprintf("127.0.0.1:%d", port)
	// As installed: the tests' watch cache checker lists the datastore
	// in the background.
	n, finish, err := startBenchNode(bin, dataDir, busybox, append([]string{"--pprof-address", pprof}, serverArgs...),
		[]string{"KUBE_WATCHCACHE_CONSISTENCY_CHECKER=false"})
	defer finish(&err)
	if err != nil {
		return r, err
	}
	s, start := n.s, n.start
	r.nodeReady = n.nodeReady
	answer := <-n.dns
	if answer.err != nil {
		return r, fmt.Errorf("DNS probe: %w", answer.err)
	}
	r.dns = answer.after
	time.Sleep(time.Until(start.Add(r.nodeReady + footprintIdle)))
	if r.mem, err = harness.TreeMemory(s.Pid(), dataDir); err != nil {
		return r, err
	}
	if r.heap, r.runtime, err = heapTable(pprof, filepath.Join(os.TempDir(), "skiff-bench-heap-"+filepath.Base(dataDir)+".pb.gz")); err != nil {
		return r, fmt.Errorf("heap profile: %w", err)
	}
	cpuBefore := cpuSeconds(s.Pid())
	if r.writes, err = measureIdleWrites(bin, s, dataDir, footprintWrite); err != nil {
		return r, err
	}
	r.cpu = (cpuSeconds(s.Pid()) - cpuBefore) / footprintWrite.Seconds()
	_, err = s.Stop(time.Minute)
	return r, err
}

// cpuSeconds is the CPU time pid and its children (containerd) have used.
func cpuSeconds(pid int) float64 {
	total := 0.0
	for _, p := range append(children(pid), pid) {
		// utime and stime are fields 14 and 15.
		if fields := statFields(p); len(fields) > 12 {
			utime, _ := strconv.ParseFloat(fields[11], 64)
			stime, _ := strconv.ParseFloat(fields[12], 64)
			total += (utime + stime) / 100 // USER_HZ
		}
	}
	return total
}

// readAhead is the read-ahead of the block device holding path, as sysfs
// says it. On Linux 6.16+ a fault in executable code reads that much ahead
// even under MADV_RANDOM, and fault-around maps the cached neighbours of
// every page touched (see memory.DropStartupPages): with 8 MiB here the
// server keeps ~70 MiB of its binary mapped; one run on the kernel's
// default 128 KiB kept 53 MiB.
func readAhead(path string) string {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "unknown"
	}
	dev := fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	// A partition has no queue of its own: its disk's is the directory above.
	for _, f := range []string{dev + "/queue/read_ahead_kb", dev + "/../queue/read_ahead_kb"} {
		if data, err := os.ReadFile(f); err == nil {
			return strings.TrimSpace(string(data)) + " KiB"
		}
	}
	return "unknown"
}
