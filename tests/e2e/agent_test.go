package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/tests/harness"
)

const busyboxImage = harness.BusyboxImage

// TestAgent runs real pods on the server's own node: containerd, runc, the
// CNI bridge, the kubelet and kube-proxy, with images imported from archives.
func TestAgent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the node agent needs root")
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	busyboxArchive := filepath.Join(dataDir, "agent", "images", "busybox.tar")
	if err := harness.BuildBusybox(busyboxArchive); err != nil {
		t.Fatal(err)
	}
	mirror, registries := startMirror(t)
	s := newServer(t, dataDir, "--private-registry", registries)
	s.Agent = true
	notified := listenNotify(t, s)
	t.Cleanup(func() { killall(t, s) })
	mustStart(t, s)
	ctx := context.Background()
	c := kubernetes.NewForConfigOrDie(mustRESTConfig(t, s))
	node := waitNodeReady(t, ctx, c, time.Time{})
	checkNotifiedReady(t, ctx, c, notified, node)

	pod := runHTTPPod(t, ctx, c)
	checkCrictl(t, s)
	checkImportWhileRunning(t, ctx, c, s)
	checkLogsExecPortForward(t, s, pod)
	checkDeploymentContainers(t, ctx, c, s)
	checkMissingImage(t, ctx, c)
	checkMirroredPull(t, ctx, c, mirror, busyboxArchive)

	// A restart of the server keeps the pod running: same container, same IP.
	before := mustGetPod(t, ctx, c, "default", pod.Name)
	mustStop(t, s)
	restarted := time.Now()
	mustStart(t, s)
	c = kubernetes.NewForConfigOrDie(mustRESTConfig(t, s))
	waitNodeReady(t, ctx, c, restarted)
	after := waitPodRunning(t, ctx, c, "default", pod.Name)
	if after.Status.PodIP != before.Status.PodIP {
		t.Errorf("pod IP changed across a restart: %s, was %s", after.Status.PodIP, before.Status.PodIP)
	}
	if a, b := containerID(after), containerID(before); a != b || after.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("container changed across a restart: %s (restarts %d), was %s", a, after.Status.ContainerStatuses[0].RestartCount, b)
	}
	httpGet(t, "http://"+after.Status.PodIP+":8080/index.html", "served by skiff")
	// Unchanged archives were not imported again at the second start.
	log, err := os.ReadFile(s.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), `"Imported images" archive="`+filepath.Join(dataDir, "agent", "images", "busybox.tar")+`"`); n != 1 {
		t.Errorf("busybox.tar imported %d times over two starts, want once", n)
	}
	t.Logf("node %s: pod %s kept IP %s and container across a restart", node, pod.Name, after.Status.PodIP)
}

// listenNotify gives the server a $NOTIFY_SOCKET, as systemd gives a
// Type=notify service; the channel gets the time READY=1 arrived.
func listenNotify(t *testing.T, s *harness.Server) <-chan time.Time {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s.Env = append(s.Env, "NOTIFY_SOCKET="+path)
	ready := make(chan time.Time, 1)
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			// READY=1 from anyone: the upstream components send it
			// with a newline.
			if strings.TrimSpace(string(buf[:n])) == "READY=1" {
				ready <- time.Now()
				return
			}
		}
	}()
	return ready
}

// checkNotifiedReady expects READY=1 on the notify socket, sent once the
// node was Ready: install.sh's systemd unit is ready then.
func checkNotifiedReady(t *testing.T, ctx context.Context, c kubernetes.Interface, ready <-chan time.Time, node string) {
	t.Helper()
	var at time.Time
	select {
	case at = <-ready:
	case <-time.After(time.Minute):
		t.Fatal("no READY=1 on $NOTIFY_SOCKET within a minute of the node being Ready")
	}
	got, err := c.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cond := range got.Status.Conditions {
		// The condition's time has whole seconds.
		if cond.Type == corev1.NodeReady && (cond.Status != corev1.ConditionTrue || cond.LastTransitionTime.After(at)) {
			t.Errorf("READY=1 came at %s, before node %s was Ready (%s since %s)", at.Format(time.RFC3339Nano), node, cond.Status, cond.LastTransitionTime)
		}
	}
}

// waitNodeReady waits for the one node to report Ready in a heartbeat sent
// after since.
func waitNodeReady(t *testing.T, ctx context.Context, c kubernetes.Interface, since time.Time) string {
	t.Helper()
	start := time.Now()
	var name string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil || len(nodes.Items) != 1 {
			return false, nil
		}
		name = nodes.Items[0].Name
		for _, cond := range nodes.Items[0].Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.LastHeartbeatTime.After(since.Truncate(time.Second)) {
				return cond.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("node not Ready within 2m: %v", err)
	}
	t.Logf("node %s Ready %s after the server was", name, time.Since(start).Round(time.Millisecond))
	return name
}

func runHTTPPod(t *testing.T, ctx context.Context, c kubernetes.Interface) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "busybox"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "httpd", Image: busyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", "echo hello; echo served by skiff > /var/www/index.html; exec busybox httpd -f -p 8080 -h /var/www"},
			}},
		},
	}
	if _, err := c.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := waitPodRunning(t, ctx, c, "default", pod.Name)
	// The pod network is reachable from the host.
	httpGet(t, "http://"+got.Status.PodIP+":8080/index.html", "served by skiff")
	return got
}

func waitPodRunning(t *testing.T, ctx context.Context, c kubernetes.Interface, ns, name string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		pod = p
		return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && allReady(p), nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s not Running: %v; status %+v", ns, name, err, statusOf(pod))
	}
	return pod
}

func allReady(p *corev1.Pod) bool {
	for _, cs := range p.Status.ContainerStatuses {
		if !cs.Ready {
			return false
		}
	}
	return len(p.Status.ContainerStatuses) > 0
}

func statusOf(p *corev1.Pod) any {
	if p == nil {
		return nil
	}
	return p.Status
}

func mustGetPod(t *testing.T, ctx context.Context, c kubernetes.Interface, ns, name string) *corev1.Pod {
	t.Helper()
	p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func containerID(p *corev1.Pod) string {
	if len(p.Status.ContainerStatuses) == 0 {
		return ""
	}
	return p.Status.ContainerStatuses[0].ContainerID
}

func httpGet(t *testing.T, url, want string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	var body string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		resp, err := client.Get(url)
		if err != nil {
			body = err.Error()
			return false, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK && strings.Contains(body, want), nil
	})
	if err != nil {
		t.Fatalf("GET %s: want %q, last answer %q", url, want, body)
	}
}

// checkCrictl lists the node's pods, containers and images through the CRI.
func checkCrictl(t *testing.T, s *harness.Server) {
	t.Helper()
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"pods"}, []string{"busybox", "default", "READY"}},
		{[]string{"ps"}, []string{"httpd", busyboxImage, "RUNNING", "busybox"}},
		{[]string{"images"}, []string{busyboxImage, "localhost/skiff/pause:1", "pinned"}},
	} {
		out, err := exec.Command(s.Bin, append([]string{"crictl"}, c.args...)...).Output()
		if err != nil {
			t.Fatalf("skiff crictl %v: %v", c.args, err)
		}
		for _, w := range c.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("skiff crictl %v lacks %q:\n%s", c.args, w, out)
			}
		}
	}
}

// checkImportWhileRunning drops a gzip-compressed archive of a new image
// into the images directory of the running agent and runs a pod from it; a
// broken archive beside it is reported once and stops nothing.
func checkImportWhileRunning(t *testing.T, ctx context.Context, c kubernetes.Interface, s *harness.Server) {
	t.Helper()
	dataDir := s.DataDir
	broken := filepath.Join(dataDir, "agent", "images", "broken.tar")
	if err := os.WriteFile(broken, []byte("not an archive"), 0o644); err != nil {
		t.Fatal(err)
	}
	const image = "docker.io/library/late:1"
	plain := filepath.Join(t.TempDir(), "late.tar")
	if err := harness.BuildBusybox(plain, image); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dataDir, "agent", "images", "late.tar.gz")
	if b, err := exec.Command("sh", "-c", "gzip -c "+plain+" > "+out+".part && mv "+out+".part "+out).CombinedOutput(); err != nil {
		t.Fatalf("compressing: %v %s", err, b)
	}
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		out, err := exec.Command(bin, "ctr", "images", "list", "-q", "name=="+image).Output()
		return err == nil && strings.TrimSpace(string(out)) == image, nil
	})
	if err != nil {
		t.Fatalf("%s dropped into the images directory was not imported within a minute", image)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "late"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers:                    []corev1.Container{{Name: "c", Image: image, ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"}}},
		},
	}
	if _, err := c.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodRunning(t, ctx, c, "default", pod.Name)
	if err := c.CoreV1().Pods("default").Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile(s.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, "Importing image archive failed") && strings.Contains(line, `path="`+broken+`"`) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the broken archive was reported %d times, want once", n)
	}
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
}

// kubectl runs `skiff kubectl` as the admin.
func kubectl(t *testing.T, s *harness.Server, args ...string) string {
	t.Helper()
	cmd := exec.Command(s.Bin, append([]string{"kubectl", "--kubeconfig", s.Kubeconfig()}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func checkLogsExecPortForward(t *testing.T, s *harness.Server, pod *corev1.Pod) {
	t.Helper()
	if logs := kubectl(t, s, "logs", pod.Name); !strings.Contains(logs, "hello") {
		t.Errorf("kubectl logs: %q, want hello", logs)
	}
	if out := kubectl(t, s, "exec", pod.Name, "--", "sh", "-c", "echo exec-$((6*7))"); strings.TrimSpace(out) != "exec-42" {
		t.Errorf("kubectl exec: %q", out)
	}

	cmd := exec.Command(s.Bin, "kubectl", "--kubeconfig", s.Kubeconfig(), "port-forward", "pod/"+pod.Name, ":8080")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	port := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+)`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				port <- m[1]
			}
		}
	}()
	select {
	case p := <-port:
		httpGet(t, "http://127.0.0.1:"+p+"/index.html", "served by skiff")
	case <-time.After(30 * time.Second):
		t.Fatal("kubectl port-forward printed no local port within 30s")
	}
}

// httpdDeployment is a Deployment of busybox pods running command, which
// serves HTTP on 8080.
func httpdDeployment(name string, replicas int32, labels map[string]string, command ...string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers:                    []corev1.Container{{Name: "httpd", Image: busyboxImage, ImagePullPolicy: corev1.PullNever, Command: command}},
				},
			},
		},
	}
}

// checkDeploymentContainers runs a 3-replica Deployment, replaces a deleted
// pod, and checks through containerd that deleting the Deployment removes
// every container.
func checkDeploymentContainers(t *testing.T, ctx context.Context, c kubernetes.Interface, s *harness.Server) {
	t.Helper()
	const ns = "deploy"
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d := httpdDeployment("web", 3, map[string]string{"app": "web"}, "busybox", "httpd", "-f", "-p", "8080")
	if _, err := c.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	running := waitRunningPods(t, ctx, c, ns, 3)
	ips := map[string]bool{}
	for _, p := range running {
		ips[p.Status.PodIP] = true
	}
	if len(ips) != 3 {
		t.Errorf("3 pods with %d distinct IPs: %v", len(ips), ips)
	}
	if n := len(containersIn(t, s, ns)); n < 6 {
		t.Errorf("containerd has %d containers of namespace %s, want 3 sandboxes and 3 containers", n, ns)
	}
	victim := running[0].Name
	if err := c.CoreV1().Pods(ns).Delete(ctx, victim, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	replaced := waitRunningPods(t, ctx, c, ns, 3)
	for _, p := range replaced {
		if p.Name == victim {
			t.Errorf("deleted pod %s still listed as running", victim)
		}
	}
	if err := c.AppsV1().Deployments(ns).Delete(ctx, "web", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(pods.Items) == 0 && len(containersIn(t, s, ns)) == 0, nil
	})
	if err != nil {
		t.Fatalf("containers of the deleted Deployment remain in containerd: %v", containersIn(t, s, ns))
	}
}

func waitRunningPods(t *testing.T, ctx context.Context, c kubernetes.Interface, ns string, n int) []corev1.Pod {
	t.Helper()
	var running []corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		running = running[:0]
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				running = append(running, p)
			}
		}
		return len(running) == n, nil
	})
	if err != nil {
		t.Fatalf("%d Running pods in %s, want %d", len(running), ns, n)
	}
	return running
}

// containersIn lists containerd's containers (sandboxes included) of a
// Kubernetes namespace with `skiff ctr`.
func containersIn(t *testing.T, s *harness.Server, ns string) []string {
	t.Helper()
	// Only stdout: containerd's client warns on stderr about cgroup v1.
	out, err := exec.Command(s.Bin, "ctr", "containers", "list", "-q", fmt.Sprintf(`labels."io.kubernetes.pod.namespace"==%s`, ns)).Output()
	if err != nil {
		t.Fatalf("skiff ctr containers list: %v", err)
	}
	return strings.Fields(string(out))
}

// checkMissingImage expects a pod whose image is neither imported nor
// pullable (there is no registry) to end in ErrImagePull or
// ImagePullBackOff with a Failed event naming the image.
func checkMissingImage(t *testing.T, ctx context.Context, c kubernetes.Interface) {
	t.Helper()
	const image = "registry.invalid/nothing:1"
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "missing-image"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
	}
	if _, err := c.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var reason string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := c.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Waiting == nil {
			return false, nil
		}
		reason = p.Status.ContainerStatuses[0].State.Waiting.Reason
		return reason == "ErrImagePull" || reason == "ImagePullBackOff", nil
	})
	if err != nil {
		t.Fatalf("pod with a missing image: waiting reason %q, want ErrImagePull or ImagePullBackOff", reason)
	}
	events, err := c.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod.Name})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range events.Items {
		if e.Reason == "Failed" && strings.Contains(e.Message, image) {
			found = true
		}
	}
	if !found {
		t.Errorf("no Failed event naming %s: %+v", image, events.Items)
	}
	if err := c.CoreV1().Pods("default").Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
}

// killall stops the server and runs scripts/skiff-killall.sh for its data
// dir, then checks that nothing the test started is left on the host.
func killall(t *testing.T, s *harness.Server) {
	t.Helper()
	s.Kill()
	if err := harness.Killall(s.DataDir); err != nil {
		t.Error(err)
	}
	for _, leftover := range hostLeftovers(s.DataDir) {
		t.Errorf("left on the host after skiff-killall.sh: %s", leftover)
	}
}

// hostLeftovers lists what skiff may leave behind: processes running from
// the data dir (containerd, the shims, containers), mounts, the pod bridge,
// pod network namespaces and netfilter rules of kube-proxy or the CNI
// plugins.
func hostLeftovers(dataDir string) []string {
	var found []string
	if out, _ := exec.Command("ps", "-e", "-o", "pid=,args=").Output(); len(out) > 0 {
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, dataDir) || strings.Contains(line, "containerd-shim-runc") {
				found = append(found, "process: "+strings.TrimSpace(line))
			}
		}
	}
	if mounts, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(mounts), "\n") {
			f := strings.Fields(line)
			if len(f) > 4 && (strings.HasPrefix(f[4], dataDir) || strings.HasPrefix(f[4], "/run/skiff") ||
				strings.HasPrefix(f[4], "/var/lib/kubelet") || strings.HasPrefix(f[4], "/run/netns/cni-")) {
				found = append(found, "mount: "+f[4])
			}
		}
	}
	for _, link := range []string{"cni0", "flannel.1"} {
		if exec.Command("ip", "link", "show", link).Run() == nil {
			found = append(found, "interface: "+link)
		}
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), "cni-") {
		found = append(found, "network namespaces: "+strings.TrimSpace(string(out)))
	}
	if out, _ := exec.Command("iptables-save").Output(); regexp.MustCompile(`KUBE-|CNI-|FLANNEL`).Match(out) {
		found = append(found, "iptables rules of kube-proxy or CNI")
	}
	if out, _ := exec.Command("nft", "list", "tables").Output(); strings.Contains(string(out), "kube-proxy") || strings.Contains(string(out), "flannel") {
		found = append(found, "nftables: "+strings.TrimSpace(string(out)))
	}
	return found
}
