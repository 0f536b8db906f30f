package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-dev/skiff/pkg/datastore"
	"github.com/skiff-dev/skiff/tests/harness"
)

// benchDay2 measures the day-2 figures: snapshot save and restore of a
// datastore holding objects ConfigMaps (SQLite and embedded etcd); the
// datastore's size after churn of creates and deletes at rate writes a
// second, with kine's default compaction and without any; and the bytes
// an idle single-node cluster writes a second over idleWindow.
func benchDay2(parts string, runs, objects, rate int, churn, idleWindow time.Duration) error {
	bin, err := harness.Binary()
	if err != nil {
		return err
	}
	root, err := os.MkdirTemp("", "skiff-bench-day2-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	want := strings.Split(parts, ",")
	if slices.Contains(want, "snapshots") {
		for _, kind := range []struct{ name, flag string }{{"SQLite", ""}, {"embedded etcd", "--cluster-init"}} {
			if err := benchSnapshots(bin, filepath.Join(root, "snap-"+strings.Fields(kind.name)[0]), kind.name, kind.flag, runs, objects); err != nil {
				return fmt.Errorf("snapshots on %s: %w", kind.name, err)
			}
		}
	}
	if slices.Contains(want, "churn") {
		if err := benchChurn(bin, root, rate, churn); err != nil {
			return fmt.Errorf("churn: %w", err)
		}
	}
	if slices.Contains(want, "idle") {
		return benchIdleWrites(bin, filepath.Join(root, "idle"), idleWindow)
	}
	return nil
}

var savedRE = regexp.MustCompile(`saved (\S+) in`)

// benchSnapshots fills a server's datastore, saves runs snapshots while it
// runs, and restores each into the stopped server; every restore must
// bring back exactly the objects.
func benchSnapshots(bin, dataDir, name, flag string, runs, objects int) error {
	var args []string
	if flag != "" {
		args = append(args, flag)
	}
	s, err := harness.NewServer(bin, dataDir, args...)
	if err != nil {
		return err
	}
	defer s.Kill()
	if err := startAndWait(s); err != nil {
		return err
	}
	c, err := unthrottled(s)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := fill(ctx, c, objects); err != nil {
		return err
	}
	var saves, restores, starts []time.Duration
	var files []string
	for range runs {
		start := time.Now()
		out, err := exec.Command(bin, "datastore", "snapshot", "save", "--data-dir", dataDir).CombinedOutput()
		if err != nil {
			return fmt.Errorf("snapshot save: %w: %s", err, out)
		}
		saves = append(saves, time.Since(start))
		m := savedRE.FindStringSubmatch(string(out))
		if m == nil {
			return fmt.Errorf("snapshot save said %q", out)
		}
		files = append(files, m[1])
	}
	info, _ := os.Stat(files[0])
	for _, file := range files {
		if _, err := s.Stop(time.Minute); err != nil {
			return err
		}
		start := time.Now()
		if flag == "" {
			if out, err := exec.Command(bin, "datastore", "snapshot", "restore", file, "--data-dir", dataDir).CombinedOutput(); err != nil {
				return fmt.Errorf("snapshot restore: %w: %s", err, out)
			}
			restores = append(restores, time.Since(start))
			start = time.Now()
		} else {
			// The embedded etcd's member is restored by the server itself.
			s.Args = append(args, "--cluster-reset-restore-path", file)
		}
		if err := startAndWait(s); err != nil {
			return err
		}
		starts = append(starts, time.Since(start))
		if c, err = unthrottled(s); err != nil {
			return err
		}
		list, err := c.CoreV1().ConfigMaps("fill").List(ctx, metav1.ListOptions{LabelSelector: "fill=true"})
		if err != nil || len(list.Items) != objects {
			return fmt.Errorf("after restoring %s: %d ConfigMaps (%v), want %d", file, len(list.Items), err, objects)
		}
	}
	fmt.Printf("%s, %d objects (snapshot %.1f MiB): save %s (median of %d), ", name, objects, float64(info.Size())/(1<<20), median(saves), runs)
	if len(restores) > 0 {
		fmt.Printf("restore %s, ", median(restores))
	}
	fmt.Printf("start after restore to ready %s; every restore brought back all %d\n", median(starts), objects)
	return nil
}

// fill creates n ConfigMaps of 1 KiB in the namespace fill, 32 at a time.
func fill(ctx context.Context, c kubernetes.Interface, n int) error {
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fill"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	payload := strings.Repeat("x", 1024)
	errs := make(chan error, 32)
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < n; i += 32 {
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("fill-%05d", i), Labels: map[string]string{"fill": "true"}}, Data: map[string]string{"data": payload}}
				if _, err := c.CoreV1().ConfigMaps("fill").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// benchChurn runs two servers side by side under the same churn, one with
// kine's compaction as skiff runs it and one with none, and prints their
// datastores' sizes every minute.
func benchChurn(bin, root string, rate int, churn time.Duration) error {
	setups := []struct {
		name string
		args []string
	}{
		{"compaction every 5m (default)", nil},
		// kine, without its own compaction, does what the apiserver asks
		// every 5 minutes: both must be off.
		{"no compaction", []string{"--datastore-compact-interval", "0s", "--kube-apiserver-arg", "etcd-compaction-interval=0"}},
	}
	servers := make([]*harness.Server, len(setups))
	for i, setup := range setups {
		s, err := harness.NewServer(bin, filepath.Join(root, fmt.Sprintf("churn-%d", i)), setup.args...)
		if err != nil {
			return err
		}
		defer s.Kill()
		if err := startAndWait(s); err != nil {
			return err
		}
		servers[i] = s
	}
	ctx, cancel := context.WithTimeout(context.Background(), churn)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range servers {
		c, err := unthrottled(s)
		if err != nil {
			return err
		}
		wg.Go(func() { churnAt(ctx, c, rate) })
	}
	fmt.Printf("churn: %d writes/s (create a 4 KiB ConfigMap, delete the one made 100 before) for %s on each of two servers\n", rate, churn)
	start := time.Now()
	report := func() error {
		for i, s := range servers {
			st, err := status(bin, s.DataDir)
			if err != nil {
				return err
			}
			fmt.Printf("  %5.0fs %-30s state.db %7.1f MiB + WAL %5.1f MiB, revision %7d, compacted %7d, %6d rows\n", time.Since(start).Seconds(), setups[i].name,
				float64(st.SizeBytes)/(1<<20), float64(st.WALBytes)/(1<<20), st.Revision, st.CompactRevision, st.Rows)
		}
		return nil
	}
	for tick := time.NewTicker(time.Minute); ctx.Err() == nil; {
		select {
		case <-ctx.Done():
		case <-tick.C:
			if err := report(); err != nil {
				return err
			}
		}
	}
	wg.Wait()
	return report()
}

// churnAt creates a ConfigMap and deletes the one created 100 before, at
// rate writes a second in all.
func churnAt(ctx context.Context, c kubernetes.Interface, rate int) {
	payload := strings.Repeat("x", 4096)
	tick := time.NewTicker(2 * time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("churn-%d", i)}, Data: map[string]string{"data": payload}}
		c.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{})
		if i >= 100 {
			c.CoreV1().ConfigMaps("default").Delete(ctx, fmt.Sprintf("churn-%d", i-100), metav1.DeleteOptions{})
		}
	}
}

// benchIdleWrites starts a single-node cluster with every add-on, lets it
// settle for a minute after its node is Ready, and then counts over window
// the bytes skiff and containerd write (/proc/<pid>/io), the part of them
// that is the server's log, and the growth of the datastore.
func benchIdleWrites(bin, dataDir string, window time.Duration) (err error) {
	s, err := harness.NewServer(bin, dataDir)
	if err != nil {
		return err
	}
	s.Agent = true
	defer func() {
		s.Kill()
		if kerr := harness.Killall(dataDir); kerr != nil && err == nil {
			err = kerr
		}
	}()
	start := time.Now()
	if err := startAndWait(s); err != nil {
		return err
	}
	c, err := s.Client()
	if err != nil {
		return err
	}
	if err := waitNode(context.Background(), c, start); err != nil {
		return err
	}
	time.Sleep(time.Minute)
	w, err := measureIdleWrites(bin, s, dataDir, window)
	if err != nil {
		return err
	}
	fmt.Printf("idle single-node cluster over %s: %.0f B/s written to the data dir (skiff %.0f B/s less its log %.0f B/s, containerd %.0f B/s); "+
		"the datastore made %.2f revisions/s and grew %.0f B/s\n", window, w.total(), w.skiff, w.log, w.containerd, w.revisions, w.datastore)
	return nil
}

// idleWrites are an idle cluster's writes, per second.
type idleWrites struct {
	skiff, containerd, log float64 // bytes written (/proc/<pid>/io)
	datastore, revisions   float64 // growth of state.db and its WAL; revisions made
}

// total is what reached the data dir: skiff's and containerd's writes
// less the server's log, which the harness keeps beside it.
func (w idleWrites) total() float64 { return w.skiff + w.containerd - w.log }

// measureIdleWrites counts over window the bytes the running server s and
// its containerd write, the part of them that is the server's log, and the
// growth and revisions of the datastore.
func measureIdleWrites(bin string, s *harness.Server, dataDir string, window time.Duration) (idleWrites, error) {
	type sample struct {
		skiff, containerd, log, db int64
		revision                   int64
	}
	take := func() (sample, error) {
		sm := sample{skiff: writeBytes(s.Pid())}
		for _, pid := range children(s.Pid()) {
			sm.containerd += writeBytes(pid)
		}
		if info, err := os.Stat(s.LogPath); err == nil {
			sm.log = info.Size()
		}
		st, err := status(bin, dataDir)
		if err != nil {
			return sm, err
		}
		sm.db, sm.revision = st.SizeBytes+st.WALBytes, st.Revision
		return sm, nil
	}
	before, err := take()
	if err != nil {
		return idleWrites{}, err
	}
	time.Sleep(window)
	after, err := take()
	if err != nil {
		return idleWrites{}, err
	}
	perSecond := func(a, b int64) float64 { return float64(b-a) / window.Seconds() }
	return idleWrites{
		skiff: perSecond(before.skiff, after.skiff), containerd: perSecond(before.containerd, after.containerd), log: perSecond(before.log, after.log),
		datastore: perSecond(before.db, after.db), revisions: perSecond(before.revision, after.revision),
	}, nil
}

func startAndWait(s *harness.Server) error {
	if err := s.Start(); err != nil {
		return err
	}
	if err := s.WaitKubeconfig(3 * time.Minute); err != nil {
		return withLog(err, s.LogPath)
	}
	return nil
}

func unthrottled(s *harness.Server) (kubernetes.Interface, error) {
	rc, err := s.RESTConfig()
	if err != nil {
		return nil, err
	}
	rc.QPS, rc.Burst = -1, 0
	return kubernetes.NewForConfig(rc)
}

func status(bin, dataDir string) (*datastore.Status, error) {
	out, err := exec.Command(bin, "datastore", "status", "-o", "json", "--data-dir", dataDir).Output()
	if err != nil {
		return nil, fmt.Errorf("datastore status: %w", err)
	}
	var st datastore.Status
	return &st, json.Unmarshal(out, &st)
}

// writeBytes is what /proc/<pid>/io says the process caused to be written
// to storage.
func writeBytes(pid int) int64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// children are the processes whose parent is pid.
func children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if fields := statFields(p); len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

// statFields are the fields of /proc/<pid>/stat after "pid (comm)", which
// may hold spaces: state, ppid, ... (man 5 proc numbers them from 3); nil
// for a process gone meanwhile.
func statFields(pid int) []string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	return strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
}
