package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/tests/harness"
)

// haCluster is servers and agents, each in its own network and mount
// namespaces on one bridge.
type haCluster struct {
	t       *testing.T
	bin     string
	network *harness.Network
	nodes   []*harness.Agent
	args    map[*harness.Agent][]string
	root    string
}

func newHACluster(t *testing.T, subnet string) *haCluster {
	t.Helper()
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	network, err := harness.NewNetwork(fmt.Sprintf("skf%dh", os.Getpid()%100000), subnet)
	if err != nil {
		t.Fatal(err)
	}
	// The nodes' directories go after the nodes: a TempDir made before
	// this cleanup is removed after it.
	c := &haCluster{t: t, bin: bin, network: network, args: map[*harness.Agent][]string{}, root: t.TempDir()}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if t.Failed() {
				if log, err := os.ReadFile(n.LogPath); err == nil {
					t.Logf("%s %s log:\n%s", n.Role, n.Name, tail(string(log), 60))
				}
			}
			if err := n.Remove(); err != nil {
				t.Error(err)
			}
		}
		network.Close()
	})
	return c
}

// start makes node name (skiff-<name>) with role, and starts it with args
// and the busybox test image.
func (c *haCluster) start(name, role string, args ...string) *harness.Agent {
	c.t.Helper()
	n, err := c.network.NewAgent(c.bin, name, filepath.Join(c.root, name))
	if err != nil {
		c.t.Fatal(err)
	}
	n.Role = role
	c.nodes = append(c.nodes, n)
	if err := harness.BuildBusybox(filepath.Join(n.DataDir, "agent", "images", "busybox.tar")); err != nil {
		c.t.Fatal(err)
	}
	c.args[n] = append([]string{"--node-name", "skiff-" + name, "--kubelet-arg", "cgroup-root=/" + n.CgroupRoot()}, args...)
	c.restart(n)
	return n
}

// restart starts a node again with the arguments it first had.
func (c *haCluster) restart(n *harness.Agent) {
	c.t.Helper()
	if err := n.Start(c.args[n]...); err != nil {
		c.t.Fatal(err)
	}
}

// waitServer waits until a server's apiserver answers /readyz, and returns
// an admin client through its address.
func (c *haCluster) waitServer(s *harness.Agent) kubernetes.Interface {
	c.t.Helper()
	start := time.Now()
	client, err := s.WaitServer(3 * time.Minute)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Logf("server %s ready after %s", s.Name, time.Since(start).Round(100*time.Millisecond))
	return client
}

func (c *haCluster) waitNodesReady(client kubernetes.Interface, names ...string) {
	c.t.Helper()
	start := time.Now()
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, name := range names {
			n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil || !harness.NodeReady(n) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		c.t.Fatalf("nodes %v not Ready: %v", names, err)
	}
	c.t.Logf("nodes %v Ready after %s", names, time.Since(start).Round(100*time.Millisecond))
}

func readToken(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// TestHighAvailability runs three servers on embedded etcd (--cluster-init
// and two that join it), each with its node, and an agent, each in its own
// namespaces. Under a steady write load it kills one server, then the one
// the agent joined: the API keeps answering through the others, no
// acknowledged write is lost, the agent's node stays Ready and its
// Deployment keeps its replicas, and each killed server, restarted,
// catches up and serves.
func TestHighAvailability(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("servers in network namespaces need root")
	}
	c := newHACluster(t, "10.251.0.0/24")
	common := []string{"--disable", "ingress,metrics-server", "--kube-controller-manager-arg", "node-monitor-grace-period=" + nodeGracePeriod.String()}
	s1 := c.start("s1", "server", append(common, "--cluster-init")...)
	client1 := c.waitServer(s1)
	token := readToken(t, filepath.Join(s1.DataDir, "server", "token"))
	s2 := c.start("s2", "server", append(common, "--server", s1.URL(), "--token", token)...)
	client2 := c.waitServer(s2)
	s3 := c.start("s3", "server", append(common, "--server", s1.URL(), "--token", token)...)
	c.waitServer(s3)
	agentToken := readToken(t, filepath.Join(s1.DataDir, "server", "agent-token"))
	if got := readToken(t, filepath.Join(s3.DataDir, "server", "agent-token")); got != agentToken {
		t.Errorf("a joined server's agent token is %q, the first's %q", got, agentToken)
	}
	c.start("a1", "agent", "--server", s1.URL(), "--token", agentToken)
	c.waitNodesReady(client1, "skiff-s1", "skiff-s2", "skiff-s3", "skiff-a1")

	members, err := s1.EtcdMembers()
	if err != nil || strings.Count(members, " healthy ") != 3 || strings.Contains(members, "learner") {
		t.Fatalf("skiff etcd member list: want three healthy voters, got %v:\n%s", err, members)
	}
	t.Logf("skiff etcd member list:\n%s", members)

	ctx := context.Background()
	keeper := httpdDeployment("keeper", 2, map[string]string{"app": "keeper"}, "sleep", "3600")
	keeper.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "skiff-a1"}
	if _, err := client1.AppsV1().Deployments("default").Create(ctx, keeper, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitDeploymentAvailable(t, ctx, client1, "default", "keeper")

	// A server that is not the agent's, then the agent's: each killed
	// under writes through another, then started again.
	for _, step := range []struct {
		victim, writeVia *harness.Agent
		via              kubernetes.Interface
	}{{s3, s2, client2}, {s1, s2, client2}} {
		w := harness.StartWriter(step.via, "w-"+step.victim.Name)
		time.Sleep(2 * time.Second)
		killed := time.Now()
		step.victim.Kill()
		// Longer than the node grace period: a node cut off from the API
		// would be NotReady by then.
		time.Sleep(nodeGracePeriod + 5*time.Second)
		checkAgentKeptWorking(t, ctx, step.via, "skiff-a1", killed)
		if d, err := step.via.AppsV1().Deployments("default").Get(ctx, "keeper", metav1.GetOptions{}); err != nil || d.Status.AvailableReplicas != 2 {
			t.Errorf("with %s killed, the Deployment: %v, available %v", step.victim.Name, err, availableOf(d))
		}
		c.restart(step.victim)
		restarted := c.waitServer(step.victim)
		acked, errs, gap := w.Stop()
		t.Logf("%s killed: %d writes acknowledged through %s, %d failed, longest gap between writes %s",
			step.victim.Name, len(acked), step.writeVia.Name, errs, gap.Round(10*time.Millisecond))
		if gap > 15*time.Second { // etcd fails a proposal lost with its leader after 5s + 2 election timeouts
			t.Errorf("the API through %s stopped answering writes for %s when %s was killed", step.writeVia.Name, gap, step.victim.Name)
		}
		checkWritesKept(t, ctx, restarted, "default", acked)
	}
	c.waitNodesReady(client1, "skiff-s1", "skiff-s2", "skiff-s3", "skiff-a1")
	checkJoinRefusals(t, c, s1, token)

	// A server's Node deleted: its etcd member goes too.
	if err := client1.CoreV1().Nodes().Delete(ctx, "skiff-s3", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(context.Context) (bool, error) {
		members, err = s1.EtcdMembers()
		return err == nil && strings.Count(members, "https://") == 2*2, nil
	})
	if err != nil {
		t.Errorf("the etcd member of a deleted server's Node is still there: %v\n%s", err, members)
	}
}

func availableOf(d *appsv1.Deployment) any {
	if d == nil {
		return nil
	}
	return d.Status.AvailableReplicas
}

// checkWritesKept checks that every acknowledged write is there, read
// through client.
func checkWritesKept(t *testing.T, ctx context.Context, client kubernetes.Interface, ns string, acked []string) {
	t.Helper()
	list, err := client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, cm := range list.Items {
		have[cm.Name] = true
	}
	var lost []string
	for _, name := range acked {
		if !have[name] {
			lost = append(lost, name)
		}
	}
	if len(lost) > 0 || len(acked) == 0 {
		t.Errorf("%d of %d acknowledged writes lost: %v", len(lost), len(acked), lost)
	}
}

// checkAgentKeptWorking checks that a node kept renewing its lease after
// since, through whatever server it reaches, and is Ready.
func checkAgentKeptWorking(t *testing.T, ctx context.Context, client kubernetes.Interface, node string, since time.Time) {
	t.Helper()
	lease, err := client.CoordinationV1().Leases("kube-node-lease").Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// skiff's kubelet holds its Lease for 80 s and renews it every 20 s:
	// checked more than a grace period after the kill, a node that still
	// reaches the API has renewed well after it.
	if d := lease.Spec.LeaseDurationSeconds; d == nil || *d != 80 {
		t.Errorf("node %s's Lease lasts %v s, want skiff's 80", node, ptr.Deref(d, 0))
	}
	if renewed := lease.Spec.RenewTime.Time; renewed.Before(since.Add(10 * time.Second)) {
		t.Errorf("node %s last renewed its lease %s after the server was killed", node, renewed.Sub(since).Round(time.Second))
	} else {
		t.Logf("node %s renewed its lease %s after the server was killed", node, renewed.Sub(since).Round(time.Second))
	}
	n, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil || !harness.NodeReady(n) {
		t.Errorf("node %s is not Ready after a server was killed: %v", node, err)
	}
}

// checkJoinRefusals: a server joining with a wrong token is refused with
// one line, and neither its data dir nor the cluster's members change.
func checkJoinRefusals(t *testing.T, c *haCluster, s1 *harness.Agent, token string) {
	t.Helper()
	before, _ := s1.EtcdMembers()
	dataDir := filepath.Join(t.TempDir(), "data")
	wrong := strings.TrimSuffix(token, token[len(token)-4:]) + "zzzz"
	start := time.Now()
	out, err := exec.Command(c.bin, "server", "--config", os.DevNull, "--data-dir", dataDir, "--disable-agent",
		"--https-listen-port", "0", "--etcd-client-port", "12379", "--etcd-peer-port", "12380",
		"--server", s1.URL(), "--token", wrong).CombinedOutput()
	last := lastLine(string(out))
	if err == nil || !strings.Contains(last, "refused the token") {
		t.Errorf("a server with a wrong token: %v, last line %q", err, last)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("a refused server left its data dir: %v", err)
	}
	after, _ := s1.EtcdMembers()
	if before != after {
		t.Errorf("a refused join changed the members:\n%s\nto\n%s", before, after)
	}
	t.Logf("wrong server token: refused in %s: %s", time.Since(start).Round(100*time.Millisecond), last)
}
