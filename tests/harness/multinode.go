package harness

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Network is a bridge on this host that agents in network namespaces
// attach to: a small multi-node cluster on one machine. The host (and a
// server on it) has the network's first address.
type Network struct {
	Bridge string
	HostIP net.IP
	subnet *net.IPNet
	next   int
}

// NewNetwork makes the bridge name with subnet (a /24 such as
// 10.250.0.0/24); Close removes it.
func NewNetwork(name, subnet string) (*Network, error) {
	_, ipnet, err := net.ParseCIDR(subnet)
	if err != nil {
		return nil, err
	}
	n := &Network{Bridge: name, subnet: ipnet, next: 2}
	n.HostIP = n.address(1)
	for _, args := range [][]string{
		{"link", "add", name, "type", "bridge"},
		{"addr", "add", n.HostIP.String() + "/24", "dev", name},
		{"link", "set", name, "up"},
	} {
		if err := run("ip", args...); err != nil {
			n.Close()
			return nil, err
		}
	}
	return n, nil
}

func (n *Network) address(i int) net.IP {
	ip := make(net.IP, 4)
	copy(ip, n.subnet.IP.To4())
	ip[3] = byte(i)
	return ip
}

// Close removes the bridge.
func (n *Network) Close() {
	_ = run("ip", "link", "delete", n.Bridge)
}

// Agent is a `skiff agent` (or, with Role "server", a `skiff server` and
// its node) in a network namespace of its own (a veth pair to the
// network's bridge) and a mount namespace of its own, in which the host
// paths a node uses (/run/skiff, /var/lib/kubelet, the pod logs, the CNI
// and flannel state, the pods' network namespaces) are directories of its
// root, so that several nodes share this host without seeing each other's
// state.
type Agent struct {
	Name, NS string
	IP       net.IP
	Root     string // its directories, and DataDir
	DataDir  string
	LogPath  string
	// Role is the skiff command it runs: agent (the default) or server.
	Role   string
	bin    string
	bridge string
	process
}

// privateDirs are the host paths each agent gets a directory of its own
// for.
var privateDirs = []string{"/run/skiff", "/run/flannel", "/run/netns", "/var/lib/kubelet", "/var/lib/cni", "/var/log/pods", "/var/log/containers"}

// NewAgent makes the network namespace and its link for an agent named
// name, keeping its state under root.
func (n *Network) NewAgent(bin, name, root string) (*Agent, error) {
	a := &Agent{Name: name, NS: n.Bridge + "-" + name, IP: n.address(n.next), Root: root, bin: bin, Role: "agent", bridge: n.Bridge,
		DataDir: filepath.Join(root, "data"), LogPath: filepath.Join(root, "agent.log")}
	n.next++
	hostEnd, nsEnd := a.hostEnd(), "eth0"
	if len(hostEnd) > 15 {
		return nil, fmt.Errorf("interface name %s is too long", hostEnd)
	}
	steps := [][]string{
		{"netns", "add", a.NS},
		{"link", "add", hostEnd, "type", "veth", "peer", "name", "tmp" + name},
		{"link", "set", hostEnd, "master", n.Bridge, "up"},
		{"link", "set", "tmp" + name, "netns", a.NS},
		{"-n", a.NS, "link", "set", "tmp" + name, "name", nsEnd},
		{"-n", a.NS, "addr", "add", a.IP.String() + "/24", "dev", nsEnd},
		{"-n", a.NS, "link", "set", nsEnd, "up"},
		{"-n", a.NS, "link", "set", "lo", "up"},
		{"-n", a.NS, "route", "add", "default", "via", n.HostIP.String()},
	}
	for _, args := range steps {
		if err := run("ip", args...); err != nil {
			a.removeNamespace()
			return nil, err
		}
	}
	return a, nil
}

// hostEnd is the host's end of the node's veth.
func (a *Agent) hostEnd() string { return "v" + a.bridge + a.Name }

// Start runs `skiff <role>` with args in the agent's namespaces; a server
// writes its admin kubeconfig to Kubeconfig.
func (a *Agent) Start(args ...string) error {
	var script strings.Builder
	script.WriteString("set -e\n")
	// A sysfs of the agent's network namespace, with this host's cgroups
	// (which the agent's kubelet manages under a cgroup root of its own).
	cgroups := filepath.Join(a.Root, "host", "cgroup")
	if err := os.MkdirAll(cgroups, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(&script, "mount --rbind /sys/fs/cgroup %[1]s\nmount -t sysfs sysfs /sys\nmount --rbind %[1]s /sys/fs/cgroup\n", cgroups)
	// The kubelet's cgroup root (see CgroupRoot) must exist, in every
	// hierarchy; a new cpuset starts empty and takes its parent's.
	fmt.Fprintf(&script, `for h in /sys/fs/cgroup /sys/fs/cgroup/*; do
	[ -d "$h" ] && [ ! -L "$h" ] && mkdir -p "$h/%[1]s" 2>/dev/null || true
	if [ -f "$h/cpuset.cpus" ] && [ -f "$h/%[1]s/cpuset.cpus" ] && [ -z "$(cat "$h/%[1]s/cpuset.cpus")" ]; then
		cat "$h/cpuset.cpus" > "$h/%[1]s/cpuset.cpus"; cat "$h/cpuset.mems" > "$h/%[1]s/cpuset.mems"
	fi
done
`, a.CgroupRoot())
	for _, dir := range privateDirs {
		own := filepath.Join(a.Root, "host", strings.TrimPrefix(dir, "/"))
		if err := os.MkdirAll(own, 0o755); err != nil {
			return err
		}
		fmt.Fprintf(&script, "mkdir -p %s\nmount --bind %s %s\n", dir, own, dir)
	}
	script.WriteString(`exec "$0" "$@"` + "\n")
	// nsenter, not ip netns exec, which would hide the cgroup mounts
	// behind its own sysfs.
	cmdArgs := []string{"--net=/run/netns/" + a.NS, "--", "unshare", "--mount", "--propagation", "private", "sh", "-c", script.String(), a.bin,
		a.Role, "--data-dir", a.DataDir, "--config", os.DevNull}
	if a.Role == "server" {
		cmdArgs = append(cmdArgs, "--write-kubeconfig", a.Kubeconfig())
	}
	cmdArgs = append(cmdArgs, args...)
	return a.start(exec.Command("nsenter", cmdArgs...), a.LogPath)
}

// Kubeconfig is where a server writes its admin kubeconfig, whose
// address (loopback in its namespace) Client replaces.
func (a *Agent) Kubeconfig() string { return filepath.Join(a.Root, "kubeconfig") }

// URL is a server's apiserver on the bridge.
func (a *Agent) URL() string { return "https://" + a.IP.String() + ":6443" }

// RESTConfig is a server's admin configuration through its address on
// the bridge, with a short timeout (tests use it to see whether that
// server answers) and no client-side rate limit below 100 requests a
// second (writers under test must not be spaced by client-go).
func (a *Agent) RESTConfig() (*rest.Config, error) {
	rc, err := clientcmd.BuildConfigFromFlags(a.URL(), a.Kubeconfig())
	if err != nil {
		return nil, err
	}
	rc.Timeout, rc.QPS, rc.Burst = 10*time.Second, 100, 200
	return rc, nil
}

// Client is an admin client of a server (see RESTConfig).
func (a *Agent) Client() (kubernetes.Interface, error) {
	rc, err := a.RESTConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(rc)
}

// WaitServer waits until a server has written its admin kubeconfig and
// its apiserver answers /readyz on the bridge, and returns its client.
func (a *Agent) WaitServer(timeout time.Duration) (kubernetes.Interface, error) {
	var client kubernetes.Interface
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if exited, err := a.Exited(); exited {
			return false, fmt.Errorf("server %s exited: %v", a.Name, err)
		}
		if client == nil {
			if _, err := os.Stat(a.Kubeconfig()); err != nil {
				return false, nil
			}
			var err error
			if client, err = a.Client(); err != nil {
				return false, err
			}
		}
		_, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("server %s not ready: %w; see %s", a.Name, err, a.LogPath)
	}
	return client, nil
}

// EtcdMembers is `skiff etcd member list` on a server.
func (a *Agent) EtcdMembers() (string, error) {
	return a.Exec(a.bin, "etcd", "member", "list", "--data-dir", a.DataDir)
}

// EtcdLeader is the server whose etcd member leads, from
// `skiff etcd member list` on the first (ROLE leader; its PEER URL has
// the server's address).
func EtcdLeader(servers []*Agent) (*Agent, error) {
	out, err := servers[0].EtcdMembers()
	if err != nil {
		return nil, fmt.Errorf("skiff etcd member list: %w\n%s", err, out)
	}
	for line := range strings.Lines(out) {
		// NAME ID ROLE HEALTH PEER CLIENT
		f := strings.Fields(line)
		if len(f) < 5 || f[2] != "leader" {
			continue
		}
		peer, err := url.Parse(strings.Split(f[4], ",")[0])
		if err != nil {
			return nil, fmt.Errorf("the leader's peer URL %q: %w", f[4], err)
		}
		for _, a := range servers {
			if net.ParseIP(peer.Hostname()).Equal(a.IP) {
				return a, nil
			}
		}
		return nil, fmt.Errorf("no server has the leader's address %s", peer.Hostname())
	}
	return nil, fmt.Errorf("no leader in skiff etcd member list:\n%s", out)
}

// Exec runs a command in the node's network namespace and returns its
// combined output.
func (a *Agent) Exec(name string, args ...string) (string, error) {
	out, err := exec.Command("nsenter", append([]string{"--net=/run/netns/" + a.NS, "--", name}, args...)...).CombinedOutput()
	return string(out), err
}

// CgroupRoot is the cgroup the agent's kubelet keeps its pods under
// (--kubelet-arg=cgroup-root=/<it>): the kubelets of the agents share this
// host's cgroups, and each must manage its own tree only.
func (a *Agent) CgroupRoot() string { return "skiff-" + a.Name }

// Remove stops the agent and everything it started (its pods' shims and
// containers, found by its data dir), and deletes its network namespace:
// its mounts, interfaces and netfilter rules go with its namespaces.
func (a *Agent) Remove() error {
	a.Kill()
	err := KillNodeProcesses(a.DataDir)
	a.removeNamespace()
	// Its cgroup tree, deepest first, once its processes are gone.
	for _, h := range append([]string{"/sys/fs/cgroup"}, globDirs("/sys/fs/cgroup/*")...) {
		root := filepath.Join(h, a.CgroupRoot())
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = os.Remove(dirs[i])
		}
	}
	return err
}

func globDirs(pattern string) []string {
	m, _ := filepath.Glob(pattern)
	return m
}

// removeNamespace deletes the network namespace and the host's end of
// its veth: a killed server's namespace outlives its deletion, unseen,
// until the kernel has given up on its orphaned TCP connections (about
// two minutes), and keeps that end on the host meanwhile; deleting it
// deletes the pair.
func (a *Agent) removeNamespace() {
	_ = run("ip", "netns", "delete", a.NS)
	if link := a.hostEnd(); exec.Command("ip", "link", "show", link).Run() == nil {
		_ = run("ip", "link", "delete", link)
	}
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
