package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/tests/harness"
)

// cluster is a server on this host and agents in network namespaces on a
// bridge: three nodes on one machine.
type cluster struct {
	server  *harness.Server
	network *harness.Network
	agents  []*harness.Agent
	client  kubernetes.Interface
	token   string
}

// newCluster starts a server (with its node) and the named agents, each in
// its own network and mount namespaces; everything is removed when the
// test ends.
func newCluster(t *testing.T, agents ...string) *cluster {
	t.Helper()
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{}
	c.network, err = harness.NewNetwork(fmt.Sprintf("skf%d", os.Getpid()%100000), "10.250.0.0/24")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.network.Close)
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := harness.BuildBusybox(filepath.Join(dataDir, "agent", "images", "busybox.tar")); err != nil {
		t.Fatal(err)
	}
	c.server = newServer(t, dataDir, "--tls-san", c.network.HostIP.String(), "--disable", "ingress,metrics-server")
	c.server.Agent = true
	t.Cleanup(func() { killall(t, c.server) })
	mustStart(t, c.server)
	c.client = kubernetes.NewForConfigOrDie(mustRESTConfig(t, c.server))
	token, err := os.ReadFile(filepath.Join(dataDir, "server", "agent-token"))
	if err != nil {
		t.Fatal(err)
	}
	c.token = strings.TrimSpace(string(token))
	for _, name := range agents {
		c.addAgent(t, bin, name)
	}
	return c
}

func (c *cluster) serverURL() string {
	return "https://" + c.network.HostIP.String() + ":" + strconv.Itoa(c.server.Port)
}

// addAgent starts agent name (node skiff-<name>) with the busybox image.
func (c *cluster) addAgent(t *testing.T, bin, name string, extra ...string) *harness.Agent {
	t.Helper()
	a, err := c.network.NewAgent(bin, name, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if log, err := os.ReadFile(a.LogPath); err == nil {
				t.Logf("agent %s log:\n%s", name, tail(string(log), 80))
			}
		}
		if err := a.Remove(); err != nil {
			t.Error(err)
		}
	})
	if err := harness.BuildBusybox(filepath.Join(a.DataDir, "agent", "images", "busybox.tar")); err != nil {
		t.Fatal(err)
	}
	c.startAgent(t, a, extra...)
	c.agents = append(c.agents, a)
	return a
}

func (c *cluster) startAgent(t *testing.T, a *harness.Agent, extra ...string) {
	t.Helper()
	args := append([]string{"--server", c.serverURL(), "--token", c.token, "--node-name", "skiff-" + a.Name,
		// Each node's pods in a cgroup tree of their own: the kubelets
		// share this host's cgroups.
		"--kubelet-arg", "cgroup-root=/" + a.CgroupRoot()}, extra...)
	if err := a.Start(args...); err != nil {
		t.Fatal(err)
	}
}

// waitNodesReady waits until every named node reports Ready, and fails at
// once when an agent has exited.
func (c *cluster) waitNodesReady(t *testing.T, names ...string) {
	t.Helper()
	start := time.Now()
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, a := range c.agents {
			if exited, err := a.Exited(); exited {
				return false, fmt.Errorf("agent %s exited: %v", a.Name, err)
			}
		}
		for _, name := range names {
			n, err := c.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil || !isNodeReady(n) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		nodes, _ := c.client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
		var states []string
		for _, n := range nodes.Items {
			states = append(states, fmt.Sprintf("%s ready=%v", n.Name, isNodeReady(&n)))
		}
		t.Fatalf("nodes %v not Ready: %v; nodes: %v", names, err, states)
	}
	t.Logf("nodes %v Ready after %s", names, time.Since(start).Round(100*time.Millisecond))
}

func nodeNames(c *cluster) []string {
	names := []string{}
	for _, a := range c.agents {
		names = append(names, "skiff-"+a.Name)
	}
	return names
}

// TestMultiNode joins two agents in network namespaces to a server, and
// checks the pod network across nodes: pod to pod by IP, through a
// ClusterIP Service by DNS name, a NodePort on every node, and kubectl
// logs and exec for pods on agents.
func TestMultiNode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("agents in network namespaces need root")
	}
	c := newCluster(t, "a1", "a2")
	c.waitNodesReady(t, nodeNames(c)...)
	ctx := context.Background()
	nodes, err := c.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 3 {
		t.Errorf("%d nodes, want 3", len(nodes.Items))
	}
	var addresses []string
	for _, n := range nodes.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				addresses = append(addresses, a.Address)
			}
		}
	}

	// A web server on agent 2, a client on agent 1.
	web := c.pinnedPod(t, "web", "skiff-a2", map[string]string{"app": "web"},
		"sh", "-c", "echo hello from a2 > /var/www/index.html; exec busybox httpd -f -p 8080 -h /var/www")
	client := c.pinnedPod(t, "client", "skiff-a1", nil, "sleep", "3600")
	if out := c.fetch(t, client, "http://"+web.Status.PodIP+":8080/"); !strings.Contains(out, "hello from a2") {
		t.Errorf("pod on a1 to pod on a2 by IP: %q", out)
	}
	svc, err := c.client.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if out := c.fetch(t, client, "http://web.default.svc.cluster.local/"); !strings.Contains(out, "hello from a2") {
		t.Errorf("pod on a1 to a Service by DNS name: %q", out)
	}
	nodePort := strconv.Itoa(int(svc.Spec.Ports[0].NodePort))
	for _, addr := range addresses {
		httpGet(t, "http://"+addr+":"+nodePort+"/", "hello from a2")
	}
	if logs := kubectl(t, c.server, "logs", "web"); logs != "" {
		t.Logf("logs of web: %q", logs)
	}
	if out := kubectl(t, c.server, "exec", "web", "--", "cat", "/var/www/index.html"); !strings.Contains(out, "hello from a2") {
		t.Errorf("kubectl exec in a pod on an agent: %q", out)
	}
	t.Logf("pods across nodes: %s (a1) reached %s (a2) by IP and by Service name; NodePort %s answered on %v", client.Status.PodIP, web.Status.PodIP, nodePort, addresses)
}

// pinnedPod runs a busybox pod on node and waits for it to run.
func (c *cluster) pinnedPod(t *testing.T, name, node string, labels map[string]string, command ...string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers:                    []corev1.Container{{Name: "main", Image: busyboxImage, ImagePullPolicy: corev1.PullNever, Command: command}},
		},
	}
	if _, err := c.client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return waitPodRunning(t, ctx, c.client, "default", name)
}

// fetch gets url from inside pod with busybox wget (whose -T and -O-
// crash busybox 1.35, so through a file).
func (c *cluster) fetch(t *testing.T, pod *corev1.Pod, url string) string {
	t.Helper()
	return c.exec(t, pod, "sh", "-c", "wget -q -O /tmp/body "+url+" && cat /tmp/body")
}

// exec runs a command in a pod through kubectl, retrying briefly (a new
// Service's rules and DNS record take a moment), and returns its output.
func (c *cluster) exec(t *testing.T, pod *corev1.Pod, command ...string) string {
	t.Helper()
	var out []byte
	var err error
	for range 20 {
		out, err = exec.Command(c.server.Bin, append([]string{"kubectl", "--kubeconfig", c.server.Kubeconfig(), "exec", pod.Name, "--"}, command...)...).CombinedOutput()
		if err == nil {
			return string(out)
		}
		time.Sleep(time.Second)
	}
	t.Errorf("kubectl exec %s -- %v: %v\n%s", pod.Name, command, err, out)
	return string(out)
}
