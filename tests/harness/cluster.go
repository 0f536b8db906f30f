package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// Cluster is a server on this host, with its own node, and agents in
// network namespaces on a bridge: several nodes on one machine. Every
// node has the busybox test image.
type Cluster struct {
	Server  *Server
	Network *Network
	Agents  []*Agent
	// Token is the server's agent token.
	Token string
	bin   string
}

// NewCluster starts a server with its data dir under root, reachable
// from agents on a new bridge network; serverArgs are added to its own.
func NewCluster(bin, root string, serverArgs ...string) (*Cluster, error) {
	c := &Cluster{bin: bin}
	var err error
	if c.Network, err = NewNetwork(fmt.Sprintf("skf%d", os.Getpid()%100000), "10.250.0.0/24"); err != nil {
		return nil, err
	}
	dataDir := filepath.Join(root, "data")
	if err := BuildBusybox(filepath.Join(dataDir, "agent", "images", "busybox.tar")); err != nil {
		c.Close()
		return nil, err
	}
	if c.Server, err = NewServer(bin, dataDir, append([]string{"--tls-san", c.Network.HostIP.String()}, serverArgs...)...); err != nil {
		c.Close()
		return nil, err
	}
	c.Server.Agent = true
	if err := c.Server.Start(); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.Server.WaitKubeconfig(2 * time.Minute); err != nil {
		c.Close()
		return nil, err
	}
	token, err := os.ReadFile(filepath.Join(dataDir, "server", "agent-token"))
	if err != nil {
		c.Close()
		return nil, err
	}
	c.Token = strings.TrimSpace(string(token))
	return c, nil
}

// ServerURL is the server's address on the bridge, where agents join it.
func (c *Cluster) ServerURL() string {
	return "https://" + c.Network.HostIP.String() + ":" + strconv.Itoa(c.Server.Port)
}

// AddAgent makes agent name (node skiff-<name>), with its state under root,
// and starts it with the busybox image; extra are added to its arguments.
func (c *Cluster) AddAgent(name, root string, extra ...string) (*Agent, error) {
	a, err := c.Network.NewAgent(c.bin, name, root)
	if err != nil {
		return nil, err
	}
	c.Agents = append(c.Agents, a)
	if err := BuildBusybox(filepath.Join(a.DataDir, "agent", "images", "busybox.tar")); err != nil {
		return a, err
	}
	return a, c.StartAgent(a, extra...)
}

// StartAgent starts (or restarts) an agent joining this cluster as node
// skiff-<name>.
func (c *Cluster) StartAgent(a *Agent, extra ...string) error {
	return a.Start(append([]string{"--server", c.ServerURL(), "--token", c.Token, "--node-name", "skiff-" + a.Name,
		// Each node's pods in a cgroup tree of their own: the kubelets
		// share this host's cgroups.
		"--kubelet-arg", "cgroup-root=/" + a.CgroupRoot()}, extra...)...)
}

// WaitNodesReady waits up to timeout until every named node reports Ready,
// and fails at once when the agent of one of them has exited.
func (c *Cluster) WaitNodesReady(client kubernetes.Interface, timeout time.Duration, names ...string) error {
	var notReady []string
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		for _, a := range c.Agents {
			if exited, err := a.Exited(); exited && slices.Contains(names, "skiff-"+a.Name) {
				return false, fmt.Errorf("agent %s exited: %v; see %s", a.Name, err, a.LogPath)
			}
		}
		notReady = notReady[:0]
		for _, name := range names {
			if n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); err != nil || !NodeReady(n) {
				notReady = append(notReady, name)
			}
		}
		return len(notReady) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("nodes %v not Ready: %w", notReady, err)
	}
	return nil
}

// NodeReady reports whether a node's Ready condition is true.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Close removes the agents, then stops the server and removes what its
// node left on this host, then the bridge.
func (c *Cluster) Close() error {
	var errs []error
	for _, a := range c.Agents {
		errs = append(errs, a.Remove())
	}
	if c.Server != nil {
		c.Server.Kill()
		errs = append(errs, Killall(c.Server.DataDir))
	}
	c.Network.Close()
	return errors.Join(errs...)
}
