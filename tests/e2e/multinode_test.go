package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

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

// TestMultiNode joins two agents in network namespaces to a server.
func TestMultiNode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("agents in network namespaces need root")
	}
	c := newCluster(t, "a1", "a2")
	c.waitNodesReady(t, nodeNames(c)...)
	nodes, err := c.client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 3 {
		t.Errorf("%d nodes, want 3", len(nodes.Items))
	}
	for _, n := range nodes.Items {
		var ip string
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ip = a.Address
			}
		}
		t.Logf("node %s: %s, pod CIDR %s", n.Name, ip, n.Spec.PodCIDR)
	}
}
