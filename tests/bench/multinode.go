package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/tests/harness"
)

type multinodeRun struct {
	agentReady         []time.Duration
	rttCross, rttLocal float64 // ms
	idle, joined       harness.NodeMemory
}

// benchMultinode measures a server with two agents in network namespaces
// (tests/harness's cluster): each agent's start to its Node Ready, the
// round trip of pings from a pod on agent 1 to a pod on agent 2 and to one
// on agent 1, and the server's own memory (skiff and its containerd:
// anonymous memory and RSS) idle without agents and after two have joined.
func benchMultinode(runs int, idle time.Duration) error {
	bin, err := harness.Binary()
	if err != nil {
		return err
	}
	var rs []multinodeRun
	for i := range runs {
		r, err := multinodeOnce(bin, idle)
		if err != nil {
			return err
		}
		rs = append(rs, r)
		fmt.Printf("run %d: agents Ready %v after their start; ping across nodes %.3f ms, within a node %.3f ms; server anonymous memory idle %s, with two agents %s (RSS %s, %s)\n",
			i+1, r.agentReady, r.rttCross, r.rttLocal, mib(r.idle.Skiff.Anon), mib(r.joined.Skiff.Anon), mib(r.idle.Skiff.RSS), mib(r.joined.Skiff.RSS))
	}
	var ready []time.Duration
	var cross, local, ratio, idleMem, joinedMem, idleRSS, joinedRSS []float64
	for _, r := range rs {
		ready = append(ready, r.agentReady...)
		cross, local, ratio = append(cross, r.rttCross), append(local, r.rttLocal), append(ratio, r.rttCross/r.rttLocal)
		idleMem, joinedMem = append(idleMem, float64(r.idle.Skiff.Anon)), append(joinedMem, float64(r.joined.Skiff.Anon))
		idleRSS, joinedRSS = append(idleRSS, float64(r.idle.Skiff.RSS)), append(joinedRSS, float64(r.joined.Skiff.RSS))
	}
	fmt.Printf("\nserver + 2 agents in network namespaces (flannel vxlan), median of %d runs:\n", runs)
	fmt.Printf("  agent start to Node Ready:                 %s\n", spread(ready))
	fmt.Printf("  pod to pod ping, across nodes:             %.3f ms\n", median(cross))
	fmt.Printf("  pod to pod ping, within a node:            %.3f ms\n", median(local))
	fmt.Printf("  across / within:                           %.2fx\n", median(ratio))
	// Anonymous memory, not PSS or USS: the agents map the same binary,
	// and its file pages, shared with them, would shrink the server's
	// figure as agents join.
	fmt.Printf("  server (skiff+containerd), %s idle, anonymous memory: no agents %s, two agents joined %s (RSS %s, %s)\n", idle,
		mib(int64(median(idleMem))), mib(int64(median(joinedMem))), mib(int64(median(idleRSS))), mib(int64(median(joinedRSS))))
	return nil
}

func multinodeOnce(bin string, idle time.Duration) (r multinodeRun, err error) {
	root, err := os.MkdirTemp("", "skiff-bench-multinode-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(root)
	c, err := harness.NewCluster(bin, filepath.Join(root, "server"), "--disable", "ingress,metrics-server")
	if err != nil {
		return r, err
	}
	defer func() {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}()
	client, err := c.Server.Client()
	if err != nil {
		return r, err
	}
	if err := c.WaitNodesReady(client, 2*time.Minute, hostname()); err != nil {
		return r, err
	}
	time.Sleep(idle)
	if r.idle, err = harness.TreeMemory(c.Server.Pid(), c.Server.DataDir); err != nil {
		return r, err
	}
	for _, name := range []string{"a1", "a2"} {
		start := time.Now()
		if _, err := c.AddAgent(name, filepath.Join(root, name)); err != nil {
			return r, err
		}
		if err := c.WaitNodesReady(client, 2*time.Minute, "skiff-"+name); err != nil {
			return r, err
		}
		r.agentReady = append(r.agentReady, time.Since(start).Round(10*time.Millisecond))
	}
	time.Sleep(idle)
	if r.joined, err = harness.TreeMemory(c.Server.Pid(), c.Server.DataDir); err != nil {
		return r, err
	}
	ctx := context.Background()
	target := map[string]string{}
	for _, p := range []struct{ name, node string }{{"pinger", "skiff-a1"}, {"near", "skiff-a1"}, {"far", "skiff-a2"}} {
		ip, err := runPinned(ctx, client, p.name, p.node)
		if err != nil {
			return r, err
		}
		target[p.name] = ip
	}
	if r.rttCross, err = ping(c.Server, target["far"]); err != nil {
		return r, err
	}
	if r.rttLocal, err = ping(c.Server, target["near"]); err != nil {
		return r, err
	}
	return r, nil
}

// hostname is the server's own node's name.
func hostname() string {
	h, _ := os.Hostname()
	return strings.ToLower(h)
}

// runPinned runs a sleeping busybox pod on node and returns its IP.
func runPinned(ctx context.Context, c kubernetes.Interface, name, node string) (string, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers:                    []corev1.Container{{Name: "main", Image: harness.BusyboxImage, ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"}}},
		},
	}
	if _, err := c.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	var ip string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := c.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		ip = p.Status.PodIP
		return p.Status.Phase == corev1.PodRunning && ip != "", nil
	})
	return ip, err
}

var avgRTT = regexp.MustCompile(`min/avg/max = [0-9.]+/([0-9.]+)/`)

// ping sends 50 pings from the pinger pod to ip and returns the average
// round trip in milliseconds.
func ping(s *harness.Server, ip string) (float64, error) {
	out, err := exec.Command(s.Bin, "kubectl", "--kubeconfig", s.Kubeconfig(), "exec", "pinger", "--",
		"ping", "-c", "50", "-i", "0.1", "-q", ip).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("ping %s: %w\n%s", ip, err, out)
	}
	m := avgRTT.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("ping %s: no round-trip figures in %q", ip, out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}
