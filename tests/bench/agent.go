package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/tests/harness"
)

// podBatch is how many pods the batch figure starts on the one node.
const podBatch = 30

type agentRun struct {
	nodeReady, firstPod, batch, dns time.Duration
	idle, batchMem                  harness.NodeMemory
}

// benchAgent times `skiff server` with its node agent: start to node Ready
// (empty and existing data dir), to the first pod Running, and 30 pods to
// Running; and the memory of skiff with its containerd, the runc shims and
// the containers (the add-ons', then the pods' too), idle and with 30 pods. Everything is removed with skiff-killall.sh after each
// run.
func benchAgent(runs int, idle time.Duration, serverArgs []string) error {
	bin, root, busybox, err := nodeBenchSetup("agent")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	var empty, existing []agentRun
	for i := range runs {
		r, err := agentOnce(bin, filepath.Join(root, fmt.Sprintf("empty-%d", i)), busybox, 0, serverArgs)
		if err != nil {
			return err
		}
		empty = append(empty, r)
		fmt.Printf("run %d, empty data dir: node Ready %s, first pod Running %s, DNS answers in a pod %s, %d pods Running in %s\n", i+1, r.nodeReady, r.firstPod, r.dns, podBatch, r.batch)
	}
	dir := filepath.Join(root, "existing")
	if _, err := agentOnce(bin, dir, busybox, 0, serverArgs); err != nil {
		return err
	}
	for i := range runs {
		r, err := agentOnce(bin, dir, busybox, idle, serverArgs)
		if err != nil {
			return err
		}
		existing = append(existing, r)
		fmt.Printf("run %d, existing data dir: node Ready %s, idle whole tree PSS %s (RSS %s), with %d pods PSS %s (RSS %s)\n",
			i+1, r.nodeReady, mib(r.idle.Total().PSS), mib(r.idle.Total().RSS), podBatch, mib(r.batchMem.Total().PSS), mib(r.batchMem.Total().RSS))
	}
	pick := func(rs []agentRun, f func(agentRun) time.Duration) []time.Duration {
		var out []time.Duration
		for _, r := range rs {
			out = append(out, f(r))
		}
		return out
	}
	bytes := func(rs []agentRun, f func(agentRun) int64) string {
		var xs []float64
		for _, r := range rs {
			xs = append(xs, float64(f(r)))
		}
		return fmt.Sprintf("%s (%s-%s)", mib(int64(median(xs))), mib(int64(slices.Min(xs))), mib(int64(slices.Max(xs))))
	}
	fmt.Printf("\nskiff server with its node agent, median of %d runs (min-max):\n", runs)
	fmt.Printf("  start to node Ready, empty data dir:        %s\n", spread(pick(empty, func(r agentRun) time.Duration { return r.nodeReady })))
	fmt.Printf("  start to node Ready, existing data dir:     %s\n", spread(pick(existing, func(r agentRun) time.Duration { return r.nodeReady })))
	fmt.Printf("  start to first pod Running, empty data dir: %s\n", spread(pick(empty, func(r agentRun) time.Duration { return r.firstPod })))
	fmt.Printf("  start to DNS answering in a pod, empty:     %s\n", spread(pick(empty, func(r agentRun) time.Duration { return r.dns })))
	fmt.Printf("  %d pods created to all Running:             %s\n", podBatch, spread(pick(append(empty, existing...), func(r agentRun) time.Duration { return r.batch })))
	memory := func(what string, part func(harness.NodeMemory) harness.Memory) {
		for _, at := range []struct {
			when string
			m    func(agentRun) harness.NodeMemory
		}{{"idle " + idle.String() + " after Ready", func(r agentRun) harness.NodeMemory { return r.idle }},
			{fmt.Sprintf("with %d pods", podBatch), func(r agentRun) harness.NodeMemory { return r.batchMem }}} {
			fmt.Printf("  %-28s %-17s PSS %s, RSS %s\n", what+",", at.when+":",
				bytes(existing, func(r agentRun) int64 { return part(at.m(r)).PSS }),
				bytes(existing, func(r agentRun) int64 { return part(at.m(r)).RSS }))
		}
	}
	memory("skiff+containerd", func(m harness.NodeMemory) harness.Memory { return m.Skiff })
	memory("runc shims", func(m harness.NodeMemory) harness.Memory { return m.Shims })
	memory("containers (add-ons, pods)", func(m harness.NodeMemory) harness.Memory { return m.Containers })
	memory("whole tree", harness.NodeMemory.Total)
	fmt.Println("  (PSS counts pages shared between processes, such as the add-on pods' one program, once; RSS counts them in each process)")
	return nil
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// benchNode is a server with its node, started for one bench run from
// dataDir with the busybox archive preloaded: its client, when it started,
// when its node was Ready, and the DNS probe started meanwhile.
type benchNode struct {
	s         *harness.Server
	c         kubernetes.Interface
	start     time.Time
	nodeReady time.Duration
	dns       <-chan answered
}

// startBenchNode starts the node and waits for it to be Ready. finish
// (deferred with the run's error, also when startBenchNode fails) kills
// the server and everything it started, and on an error keeps its log
// beside the data dir, which goes with the bench.
func startBenchNode(bin, dataDir, busybox string, serverArgs, env []string) (n *benchNode, finish func(*error), err error) {
	var s *harness.Server
	finish = func(errp *error) {
		if s != nil {
			s.Kill()
			if *errp != nil {
				kept := filepath.Join(os.TempDir(), "skiff-bench-failed-"+filepath.Base(dataDir)+".log")
				if b, rerr := os.ReadFile(s.LogPath); rerr == nil && os.WriteFile(kept, b, 0o600) == nil {
					*errp = fmt.Errorf("%w; server log in %s", *errp, kept)
				}
			}
		}
		if kerr := harness.Killall(dataDir); kerr != nil && *errp == nil {
			*errp = kerr
		}
	}
	images := filepath.Join(dataDir, "agent", "images")
	if err := os.MkdirAll(images, 0o755); err != nil {
		return nil, finish, err
	}
	if err := os.Link(busybox, filepath.Join(images, "busybox.tar")); err != nil && !os.IsExist(err) {
		return nil, finish, err
	}
	if s, err = harness.NewServer(bin, dataDir); err != nil {
		return nil, finish, err
	}
	s.Agent = true
	s.Args = append(s.Args, serverArgs...)
	s.Env = append(s.Env, env...)
	// A running skiff evicts the pages of its binary that it does not use
	// from the page cache (internal/memory), so the next run would start
	// by reading it from disk. Each run starts with it cached, as after an
	// install or an earlier start since boot.
	if err := cacheFromDisk(bin); err != nil {
		return nil, finish, err
	}
	n = &benchNode{s: s, start: time.Now()}
	if err := s.Start(); err != nil {
		return nil, finish, err
	}
	if err := s.WaitKubeconfig(2 * time.Minute); err != nil {
		return nil, finish, err
	}
	if n.c, err = s.Client(); err != nil {
		return nil, finish, err
	}
	ctx := context.Background()
	n.dns = probeDNS(ctx, n.c, n.start)
	if err := waitNode(ctx, n.c, n.start); err != nil {
		return nil, finish, fmt.Errorf("node Ready: %w", err)
	}
	n.nodeReady = time.Since(n.start)
	return n, finish, nil
}

func agentOnce(bin, dataDir, busybox string, idle time.Duration, serverArgs []string) (r agentRun, err error) {
	n, finish, err := startBenchNode(bin, dataDir, busybox, serverArgs, nil)
	defer finish(&err)
	if err != nil {
		return r, err
	}
	s, c, start, dnsDone := n.s, n.c, n.start, n.dns
	ctx := context.Background()
	r.nodeReady = n.nodeReady
	if idle > 0 {
		time.Sleep(idle)
		if r.idle, err = harness.TreeMemory(s.Pid(), dataDir); err != nil {
			return r, err
		}
	}
	if err := runPods(ctx, c, "first", 1); err != nil {
		return r, fmt.Errorf("first pod: %w", err)
	}
	r.firstPod = time.Since(start)
	dns := <-dnsDone
	if dns.err != nil {
		return r, fmt.Errorf("DNS probe: %w", dns.err)
	}
	r.dns = dns.after
	batchStart := time.Now()
	if err := runPods(ctx, c, "batch", podBatch); err != nil {
		return r, fmt.Errorf("%d pods: %w", podBatch, err)
	}
	r.batch = time.Since(batchStart)
	if idle > 0 {
		time.Sleep(idle / 2)
		if r.batchMem, err = harness.TreeMemory(s.Pid(), dataDir); err != nil {
			return r, err
		}
	}
	// Leave the data dir without pods for the next start.
	if err := c.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{}); err != nil {
		return r, err
	}
	if _, err := s.Stop(time.Minute); err != nil {
		return r, fmt.Errorf("stop: %w", err)
	}
	return r, nil
}

// answered is when a probe succeeded, after the start.
type answered struct {
	after time.Duration
	err   error
}

// probeDNS is the time-to-k8s figure: a pod that asks the cluster DNS until
// it answers, created as soon as the API takes pods (in the background: not
// before the default ServiceAccount exists, which is later than the node
// may be Ready). The pod prints the host's uptime (/proc/uptime is not
// namespaced) when the answer comes, so the figure is when DNS answered,
// not when the kubelet next noticed the pod had ended (up to a second
// later, then its status update).
func probeDNS(ctx context.Context, c kubernetes.Interface, start time.Time) <-chan answered {
	done := make(chan answered, 1)
	go func() {
		startUptime, err := uptime()
		if err != nil {
			done <- answered{err: err}
			return
		}
		startUptime -= time.Since(start).Seconds()
		if err = createDNSProbe(ctx, c); err == nil {
			err = waitPodSucceeded(ctx, c, "dns-probe")
		}
		if err != nil {
			done <- answered{err: err}
			return
		}
		out, err := c.CoreV1().Pods("default").GetLogs("dns-probe", &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			done <- answered{err: err}
			return
		}
		at, err := strconv.ParseFloat(strings.Fields(string(out) + " x")[0], 64)
		if err != nil {
			done <- answered{err: fmt.Errorf("the DNS probe printed %q, not the uptime: %w", out, err)}
			return
		}
		done <- answered{after: time.Duration((at - startUptime) * float64(time.Second))}
	}()
	return done
}

// uptime is the host's /proc/uptime, in seconds (10 ms steps).
func uptime() (float64, error) {
	data, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, err
	}
	return strconv.ParseFloat(strings.Fields(string(data))[0], 64)
}

// dnsProbeScript asks every 0.1 s. busybox's nslookup by default resends
// only every 2.5 s (-timeout=5 over -retry=2), and it waits that out when
// the ICMP "port unreachable" of kube-proxy's reject (no endpoint yet)
// arrives after its second query: a read error it ignores. 3 of 4 starts
// here then answered 2.5 s after kube-proxy had routed the Service, and the
// figure measured busybox's timer. With -timeout=1 -retry=10 one nslookup
// resends every 0.1 s for a second.
const dnsProbeScript = "until nslookup -timeout=1 -retry=10 kubernetes.default.svc.cluster.local >/dev/null 2>&1; do sleep 0.1; done; cat /proc/uptime"

func createDNSProbe(ctx context.Context, c kubernetes.Interface) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "dns-probe"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "probe", Image: harness.BusyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", dnsProbeScript}}},
		},
	}
	// Right after start the namespace's default ServiceAccount may not
	// exist yet, and pods are refused until it does.
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
		return err == nil, nil
	})
}

func waitPodSucceeded(ctx context.Context, c kubernetes.Interface, name string) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := c.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodSucceeded, nil
	})
}

// waitNode waits for the node's Ready condition in a heartbeat sent after
// since: on an existing data dir the stored condition still says Ready from
// the last run.
func waitNode(ctx context.Context, c kubernetes.Interface, since time.Time) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil || len(nodes.Items) == 0 {
			return false, nil
		}
		for _, cond := range nodes.Items[0].Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.LastHeartbeatTime.After(since.Truncate(time.Second)) {
				return cond.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
}

// runPods creates n busybox pods and waits until all are Running.
func runPods(ctx context.Context, c kubernetes.Interface, prefix string, n int) error {
	for i := range n {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", prefix, i)},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: ptr.To[int64](0),
				Containers: []corev1.Container{{Name: "sleep", Image: harness.BusyboxImage, ImagePullPolicy: corev1.PullNever,
					Command: []string{"sleep", "3600"}}},
			},
		}
		if _, err := c.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		running := 0
		for _, p := range pods.Items {
			if strings.HasPrefix(p.Name, prefix+"-") && p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == n, nil
	})
}

// cacheFromDisk evicts path from the page cache, then reads it to its end,
// which leaves it cached the way this host's read-ahead reads it from disk.
// Why evict first: on Linux 6.16+ the size of the cached folios decides how
// much of the binary a fault maps, and they would otherwise be what the
// runs before made them.
func cacheFromDisk(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("evicting %s from the page cache: %w", path, err)
	}
	_, err = io.Copy(io.Discard, f)
	return err
}
