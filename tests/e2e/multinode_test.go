package e2e

import (
	"context"
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

	"github.com/skiff-dev/skiff/pkg/supervisor"
	"github.com/skiff-dev/skiff/tests/harness"
)

// nodeGracePeriod is how long the test cluster waits for a silent node
// before it marks it NotReady: shorter than upstream's 50 s, but more than
// two of the kubelet's node Lease renewals (every 20 s with skiff), so a
// node that is alive never looks silent.
const nodeGracePeriod = 45 * time.Second

// cluster is harness.Cluster for a test: removed when the test ends, its
// logs shown when it fails.
type cluster struct {
	*harness.Cluster
	server *harness.Server
	client kubernetes.Interface
	token  string
	agents []*harness.Agent
}

// newCluster starts a server (with its node) and the named agents, each in
// its own network and mount namespaces.
func newCluster(t *testing.T, agents ...string) *cluster {
	t.Helper()
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	hc, err := harness.NewCluster(bin, t.TempDir(), "--disable", "ingress,metrics-server",
		// A node that stops is NotReady after this (upstream: 50s).
		"--kube-controller-manager-arg", "node-monitor-grace-period="+nodeGracePeriod.String())
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{Cluster: hc, server: hc.Server, token: hc.Token}
	t.Cleanup(func() {
		if t.Failed() {
			for _, a := range hc.Agents {
				if log, err := os.ReadFile(a.LogPath); err == nil {
					t.Logf("agent %s log:\n%s", a.Name, tail(string(log), 80))
				}
			}
			if log, err := os.ReadFile(hc.Server.LogPath); err == nil {
				t.Logf("server log:\n%s", tail(string(log), 100))
			}
		}
		if err := hc.Close(); err != nil {
			t.Error(err)
		}
		for _, leftover := range hostLeftovers(hc.Server.DataDir) {
			t.Errorf("left on the host: %s", leftover)
		}
	})
	c.client = kubernetes.NewForConfigOrDie(mustRESTConfig(t, c.server))
	for _, name := range agents {
		a, err := hc.AddAgent(name, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		c.agents = append(c.agents, a)
	}
	return c
}

func (c *cluster) serverURL() string { return c.ServerURL() }

func (c *cluster) startAgent(t *testing.T, a *harness.Agent, extra ...string) {
	t.Helper()
	if err := c.StartAgent(a, extra...); err != nil {
		t.Fatal(err)
	}
}

// waitNodesReady waits until every named node reports Ready.
func (c *cluster) waitNodesReady(t *testing.T, names ...string) {
	t.Helper()
	start := time.Now()
	if err := c.WaitNodesReady(c.client, 3*time.Minute, names...); err != nil {
		t.Fatal(err)
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
		"sh", "-c", "echo serving on a2; echo hello from a2 > /var/www/index.html; exec busybox httpd -f -p 8080 -h /var/www")
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
	if logs := kubectl(t, c.server, "logs", "web"); !strings.Contains(logs, "serving on a2") {
		t.Errorf("kubectl logs of a pod on an agent: %q", logs)
	}
	if out := kubectl(t, c.server, "exec", "web", "--", "cat", "/var/www/index.html"); !strings.Contains(out, "hello from a2") {
		t.Errorf("kubectl exec in a pod on an agent: %q", out)
	}
	t.Logf("pods across nodes: %s (a1) reached %s (a2) by IP and by Service name; NodePort %s answered on %v", client.Status.PodIP, web.Status.PodIP, nodePort, addresses)

	c.checkNetworkPolicy(t, web, client)
	c.checkTwoNodeConformance(t)
	c.checkRefusedJoins(t)
	c.checkNodeDownAndBack(t, web)
}

// checkRefusedJoins has a third host try to join with a token the server
// refuses, with a token that pins another CA, and with a name in use: each
// agent exits at once with one line saying why. A token made with skiff
// token create then joins it.
func (c *cluster) checkRefusedJoins(t *testing.T) {
	t.Helper()
	bin, _ := harness.Binary()
	a3, err := c.Network.NewAgent(bin, "a3", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c.Agents = append(c.Agents, a3) // removed with the cluster
	good, err := supervisor.ParseToken(c.token)
	if err != nil {
		t.Fatal(err)
	}
	wrongSecret := good
	wrongSecret.Secret = strings.Repeat("0", 16)
	otherCA := good
	otherCA.CAHash = strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name, token, node, want string
	}{
		{"wrong token", wrongSecret.String(), "skiff-a3", "the server refused the token"},
		{"another server's CA", otherCA.String(), "skiff-a3", "the server's CA does not match the token"},
		{"name in use", c.token, "skiff-a1", "--with-node-id"},
	} {
		start := time.Now()
		if err := a3.Start("--server", c.serverURL(), "--token", tc.token, "--node-name", tc.node); err != nil {
			t.Fatal(err)
		}
		err := a3.Wait(30 * time.Second)
		log, _ := os.ReadFile(a3.LogPath)
		last := lastLine(string(log))
		if err == nil || !strings.HasPrefix(last, "skiff: ") || !strings.Contains(last, tc.want) {
			t.Errorf("%s: agent exited with %v, last line %q; want one line with %q", tc.name, err, last, tc.want)
		}
		t.Logf("%s: refused in %s: %s", tc.name, time.Since(start).Round(100*time.Millisecond), last)
		must(t, os.Truncate(a3.LogPath, 0))
	}

	// A token from skiff token create, which expires.
	created, err := exec.Command(c.server.Bin, "token", "create", "--kubeconfig", c.server.Kubeconfig(), "--ttl", "1h", "--description", "for a3").CombinedOutput()
	if err != nil {
		t.Fatalf("skiff token create: %v\n%s", err, created)
	}
	token := strings.TrimSpace(string(created))
	c.agents = append(c.agents, a3)
	c.startAgent(t, a3, "--token", token) // the last --token wins
	c.waitNodesReady(t, "skiff-a3")
	list, err := exec.Command(c.server.Bin, "token", "list", "--kubeconfig", c.server.Kubeconfig()).CombinedOutput()
	if err != nil || !strings.Contains(string(list), "for a3") || !strings.Contains(string(list), "in 59m") {
		t.Errorf("skiff token list: %v\n%s", err, list)
	}
	if _, err := a3.Stop(30 * time.Second); err != nil {
		t.Error(err)
	}
	c.agents = c.agents[:len(c.agents)-1]
}

// checkNodeDownAndBack stops agent 2: its Node goes NotReady within the
// grace period and a Deployment's pod that tolerates that for 5 seconds
// moves to another node; started again, the node is Ready under the same
// name, and its pinned pod runs on in the same container.
func (c *cluster) checkNodeDownAndBack(t *testing.T, pinned *corev1.Pod) {
	t.Helper()
	ctx := context.Background()
	tolerate := []corev1.Toleration{
		{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](5)},
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](5)},
	}
	labels := map[string]string{"app": "mover"}
	d := httpdDeployment("mover", 1, labels, "sleep", "3600")
	d.Spec.Template.Spec.Tolerations = tolerate
	d.Spec.Template.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{Weight: 100, Preference: corev1.NodeSelectorTerm{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{"skiff-a2"}}},
		}}},
	}}
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "mover"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.client.AppsV1().Deployments("mover").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	first := waitRunningPods(t, ctx, c.client, "mover", 1)[0]
	if first.Spec.NodeName != "skiff-a2" {
		t.Fatalf("the mover pod runs on %s, want skiff-a2", first.Spec.NodeName)
	}

	a2 := c.agents[1]
	stopped := time.Now()
	if _, err := a2.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, nodeGracePeriod+30*time.Second, true, func(ctx context.Context) (bool, error) {
		n, err := c.client.CoreV1().Nodes().Get(ctx, "skiff-a2", metav1.GetOptions{})
		return err == nil && !harness.NodeReady(n), nil
	})
	if err != nil {
		t.Fatalf("skiff-a2 still Ready %s after its agent stopped (grace period %s)", time.Since(stopped).Round(time.Second), nodeGracePeriod)
	}
	t.Logf("skiff-a2 NotReady %s after its agent stopped", time.Since(stopped).Round(100*time.Millisecond))
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := c.client.CoreV1().Pods("mover").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && p.Spec.NodeName != "" && p.Spec.NodeName != "skiff-a2" && p.Status.Phase == corev1.PodRunning {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal("the mover pod did not move off the stopped node within 2 minutes")
	}
	t.Logf("the mover pod runs on another node %s after skiff-a2 stopped", time.Since(stopped).Round(100*time.Millisecond))

	restarted := time.Now()
	c.startAgent(t, a2)
	c.waitNodesReady(t, "skiff-a2")
	t.Logf("skiff-a2 Ready again %s after its agent started", time.Since(restarted).Round(100*time.Millisecond))
	after := waitPodRunning(t, ctx, c.client, "default", pinned.Name)
	if containerID(after) != containerID(pinned) || after.Spec.NodeName != "skiff-a2" {
		t.Errorf("the pod pinned to skiff-a2 changed: %s on %s, was %s", containerID(after), after.Spec.NodeName, containerID(pinned))
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// pinnedPod runs a busybox pod in the default namespace on node and waits
// for it to run.
func (c *cluster) pinnedPod(t *testing.T, name, node string, labels map[string]string, command ...string) *corev1.Pod {
	t.Helper()
	return c.podIn(t, "default", name, node, labels, command...)
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

// checkTwoNodeConformance runs the [Conformance] specs a single node
// cannot host (twoNodeSpecs) on the cluster's three nodes, each of which
// first imports the agnhost image they run.
func (c *cluster) checkTwoNodeConformance(t *testing.T) {
	t.Helper()
	bin, err := conformanceBin()
	if err != nil {
		t.Fatal(err)
	}
	logs := map[string]string{c.server.LogPath: filepath.Join(c.server.DataDir, "agent", "images")}
	for _, a := range c.agents {
		logs[a.LogPath] = filepath.Join(a.DataDir, "agent", "images")
	}
	for log, dir := range logs {
		linked, err := linkImages(bin, dir, "agnhost-2.66.1.tar")
		if err != nil {
			t.Fatal(err)
		}
		waitImagesImported(t, log, linked)
	}
	reportDir := t.TempDir()
	suite := conformanceRun{bin: bin, kubeconfig: c.server.Kubeconfig(), kubectl: kubectlLink(t, c.server),
		reportDir: reportDir, focus: strings.Join(twoNodeSpecs, "|")}
	runErr := suite.run(t, "two-nodes", 1, "Conformance")
	summary, err := summarize(reportDir, `\[Conformance\]`)
	if err != nil {
		t.Fatal(err)
	}
	if len(summary.Passed) != len(twoNodeSpecs) || len(summary.Failed) > 0 || runErr != nil {
		t.Errorf("two-node conformance specs (ginkgo: %v):\n%s", runErr, summary.Brief())
	}
	t.Logf("two-node conformance specs passed: %v", summary.Passed)
}
