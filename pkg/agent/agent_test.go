package agent

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/supervisor"
)

func testConfig(t *testing.T) *config.Agent {
	_, cluster, _ := net.ParseCIDR("10.42.0.0/16")
	_, service, _ := net.ParseCIDR("10.43.0.0/16")
	return &config.Agent{
		DataDir: t.TempDir(), NodeName: "node-a", NodeIP: net.ParseIP("192.0.2.2"),
		ClusterCIDR: cluster, ServiceCIDR: service, ClusterDNS: net.ParseIP("10.43.0.10"),
		ClusterDomain: "cluster.local", RunDir: "/run/skiff",
	}
}

func TestPodNetworkConfig(t *testing.T) {
	cfg := testConfig(t)
	data, err := podNetworkConfig(cfg, "10.42.3.0/24", 1450, false)
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Plugins []struct {
			Type   string
			MTU    int
			IPMasq bool
			IPAM   struct {
				Ranges  [][]struct{ Subnet string }
				DataDir string
			}
		}
	}
	if err := json.Unmarshal(data, &conf); err != nil {
		t.Fatal(err)
	}
	if len(conf.Plugins) < 2 || conf.Plugins[0].Type != "bridge" || conf.Plugins[1].Type != "portmap" {
		t.Fatalf("plugins: %+v", conf.Plugins)
	}
	if conf.Plugins[0].MTU != 1450 || conf.Plugins[0].IPMasq {
		t.Errorf("bridge: mtu %d, ipMasq %v", conf.Plugins[0].MTU, conf.Plugins[0].IPMasq)
	}
	ipam := conf.Plugins[0].IPAM
	if ipam.Ranges[0][0].Subnet != "10.42.3.0/24" || !strings.HasPrefix(ipam.DataDir, cfg.DataDir) {
		t.Errorf("ipam: %+v", ipam)
	}
}

func TestOnlyLoopbackNameservers(t *testing.T) {
	for conf, want := range map[string]bool{
		"nameserver 127.0.0.53\noptions edns0\n":       true,
		"nameserver 127.0.0.53\nnameserver 10.0.0.2\n": false,
		"nameserver 10.255.255.53\n":                   false,
		"search example.com\n":                         false,
		"nameserver ::1\n# nameserver 8.8.8.8\n":       true,
	} {
		if got := onlyLoopbackNameservers(conf); got != want {
			t.Errorf("%q: %v, want %v", conf, got, want)
		}
	}
}

func TestContainerdConfigTemplate(t *testing.T) {
	cfg := testConfig(t)
	v := containerdValues{Root: "/r", State: "/s", Socket: "/s/c.sock", BinDir: "/b", CNIConfDir: "/n",
		SandboxImage: config.DefaultSandboxImage, RestrictOOMScoreAdj: true}
	path, err := writeContainerdConfig(cfg, v)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	for _, want := range []string{`address = "/s/c.sock"`, `BinaryName = "/b/runc"`, "restrict_oom_score_adj = true",
		`sandbox = "` + config.DefaultSandboxImage + `"`, "SystemdCgroup = false"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("rendered config lacks %q:\n%s", want, data)
		}
	}

	// A user's template replaces skiff's, with the same fields.
	user := filepath.Join(cfg.ContainerdConfigDir(), "config.toml.tmpl")
	if err := os.WriteFile(user, []byte("version = 3\nroot = \"{{ .Root }}\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := writeContainerdConfig(cfg, v); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); string(data) != "version = 3\nroot = \"/r\"\n" {
		t.Errorf("user template not used: %q", data)
	}
	// A broken one is an error naming the file.
	if err := os.WriteFile(user, []byte("{{ .NoSuchField }}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := writeContainerdConfig(cfg, v); err == nil || !strings.Contains(err.Error(), user) {
		t.Errorf("broken template: %v", err)
	}
}

func TestArchiveNames(t *testing.T) {
	for name, want := range map[string]bool{
		"a.tar": true, "a.tar.gz": true, "a.tgz": true, "a.tar.zst": true, "a.txt": false, "a.tar.part": false,
	} {
		if got := isImageArchive(name); got != want {
			t.Errorf("%s: %v", name, got)
		}
	}
}

func TestComponentArgs(t *testing.T) {
	cfg := testConfig(t)
	cfg.Node.ExtraKubeletArgs = []string{"max-pods=50"}
	cfg.Node.Labels = []string{"a=b", "edge.example/zone=1"}
	cfg.Node.Taints = []string{"dedicated=edge:NoSchedule"}
	args := kubeletArgs(cfg, "/etc/kubelet.yaml")
	if !slices.Contains(args, "--max-pods=50") || !slices.Contains(args, "--node-ip=192.0.2.2") || !slices.Contains(args, "--hostname-override=node-a") ||
		!slices.Contains(args, "--node-labels=a=b,edge.example/zone=1") || !slices.Contains(args, "--register-with-taints=dedicated=edge:NoSchedule") {
		t.Errorf("kubelet args: %v", args)
	}
	if _, err := kubeletServer(t.Context(), args[:0]); err != nil {
		t.Errorf("kubelet defaults do not parse: %v", err)
	}
	cfg.Node.ExtraKubeletArgs = []string{"no-such-flag=1"}
	if _, err := kubeletServer(t.Context(), kubeletArgs(cfg, "")); err == nil || !strings.Contains(err.Error(), "--kubelet-arg") {
		t.Errorf("unknown kubelet flag: %v", err)
	}
	for _, mode := range []string{"iptables", "nftables"} {
		args := kubeProxyArgs(cfg, mode)
		if _, err := kubeProxyOptions(args); err != nil || !slices.Contains(args, "--iptables-min-sync-period=100ms") {
			t.Errorf("kube-proxy in %s mode: %v, %v", mode, err, args)
		}
	}
	cfg.Node.ExtraKubeProxyArgs = []string{"proxy-mode=nosuch"}
	if _, err := kubeProxyOptions(kubeProxyArgs(cfg, "iptables")); err == nil || !strings.Contains(err.Error(), "--kube-proxy-arg") {
		t.Errorf("bad kube-proxy mode: %v", err)
	}
}

func TestNodeIDIsKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent", "node-id")
	first, err := nodeID(path)
	if err != nil || len(first) != 8 {
		t.Fatalf("nodeID = %q, %v", first, err)
	}
	if again, err := nodeID(path); err != nil || again != first {
		t.Errorf("a second start took %q, the first %q", again, first)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("node-id file: %v %v", info, err)
	}
}

func TestClusterConfigFromTheServer(t *testing.T) {
	cfg := testConfig(t)
	cfg.ClusterCIDR, cfg.ServiceCIDR = nil, nil
	ac := &supervisor.AgentConfig{ClusterCIDR: "10.52.0.0/16", ServiceCIDR: "10.53.0.0/16", ClusterDNS: "10.53.0.10",
		ClusterDomain: "edge.local", FlannelBackend: "host-gw", LocalStorage: true}
	if err := applyClusterConfig(cfg, ac); err != nil {
		t.Fatal(err)
	}
	if cfg.ClusterCIDR.String() != "10.52.0.0/16" || cfg.ClusterDNS.String() != "10.53.0.10" || cfg.FlannelBackend != "host-gw" ||
		cfg.LocalStoragePath != filepath.Join(cfg.DataDir, "storage") {
		t.Errorf("config %+v", cfg)
	}
	ac.LocalStorage = false
	ac.ClusterDNS = "nope"
	if err := applyClusterConfig(cfg, ac); err == nil || !strings.Contains(err.Error(), "cluster DNS") {
		t.Errorf("a bad address from the server: %v", err)
	}
}

func TestNetworkPolicyConfig(t *testing.T) {
	_, v4, _ := net.ParseCIDR("10.43.0.0/16")
	kr := networkPolicyConfig(&config.Agent{NodeName: "n1", ServiceCIDR: v4})
	if !kr.RunFirewall || kr.RunRouter || kr.RunServiceProxy || kr.RunLoadBalancer {
		t.Errorf("kube-router runs more than its firewall: %+v", kr)
	}
	if !kr.EnableIPv4 || kr.EnableIPv6 || kr.HostnameOverride != "n1" || kr.MetricsEnabled ||
		len(kr.ClusterIPCIDRs) != 1 || kr.ClusterIPCIDRs[0] != "10.43.0.0/16" || kr.NodePortRange != "30000:32767" {
		t.Errorf("IPv4 config: %+v", kr)
	}
	_, v6, _ := net.ParseCIDR("fd00:43::/112")
	if kr := networkPolicyConfig(&config.Agent{NodeName: "n1", ServiceCIDR: v6}); kr.EnableIPv4 || !kr.EnableIPv6 {
		t.Errorf("IPv6 service CIDR: v4 %v v6 %v", kr.EnableIPv4, kr.EnableIPv6)
	}
}

// A host without ipset cannot enforce policies: the node does not start,
// and says what to install or which flag turns enforcement off.
func TestNetworkPolicyNeedsIPSet(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	n := &node{cfg: &config.Agent{}}
	if err := n.checkNetworkPolicy(); err == nil || !strings.Contains(err.Error(), "apt-get install ipset") || !strings.Contains(err.Error(), "--disable-network-policy") {
		t.Errorf("without ipset: %v", err)
	}
	n.cfg.DisableNetworkPolicy = true
	if err := n.checkNetworkPolicy(); err != nil {
		t.Errorf("without ipset, enforcement off: %v", err)
	}
}
