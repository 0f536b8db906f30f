package hostcheck

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeHost writes the /proc and /sys files of a host that can run the agent
// (cgroup v1 with cgroup2 beside it, as on the machines skiff is built on)
// and returns it with every program present.
func fakeHost(t *testing.T) Host {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"proc/sys/kernel/osrelease":                   "6.1.0\n",
		"proc/filesystems":                            "nodev\tsysfs\nnodev\toverlay\n\text4\n",
		"proc/cgroups":                                "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t1\t1\t1\ncpu\t2\t1\t1\ncpuacct\t2\t1\t1\nmemory\t3\t1\t1\npids\t4\t1\t1\n",
		"proc/self/mountinfo":                         "30 20 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
		"proc/self/status":                            "Name:\tskiff\nCapEff:\t000001ffffffffff\n",
		"proc/sys/net/ipv4/ip_forward":                "1\n",
		"proc/sys/net/netfilter/nf_conntrack_max":     "262144\n",
		"proc/sys/net/bridge/bridge-nf-call-iptables": "1\n",
		"sys/module/bridge/refcnt":                    "0\n",
	}
	for _, ns := range []string{"mnt", "uts", "ipc", "pid", "net", "cgroup", "user"} {
		files["proc/self/ns/"+ns] = ""
	}
	for name, content := range files {
		write(t, filepath.Join(root, name), content)
	}
	return Host{Root: root, LookPath: func(name string) (string, error) { return "/usr/sbin/" + name, nil }}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func find(t *testing.T, rs []Result, name string) Result {
	t.Helper()
	i := slices.IndexFunc(rs, func(r Result) bool { return r.Name == name })
	if i < 0 {
		t.Fatalf("no check %q in %+v", name, rs)
	}
	return rs[i]
}

func TestPassingHost(t *testing.T) {
	rs := fakeHost(t).Run()
	for _, r := range rs {
		if r.Status != Pass {
			t.Errorf("%s: %s %s", r.Name, r.Status, r.Detail)
		}
	}
	if got := find(t, rs, "cgroups").Detail; !strings.Contains(got, "v1 with cgroup2") {
		t.Errorf("cgroup mode: %q", got)
	}
	var out bytes.Buffer
	Report(&out, rs)
	if !strings.Contains(out.String(), "PASS overlayfs:") || !strings.Contains(out.String(), "0 failed") {
		t.Errorf("report:\n%s", out.String())
	}
}

func TestMissingFeatures(t *testing.T) {
	h := fakeHost(t)
	write(t, filepath.Join(h.Root, "proc/filesystems"), "nodev\tsysfs\n")
	write(t, filepath.Join(h.Root, "proc/sys/net/ipv4/ip_forward"), "0\n")
	write(t, filepath.Join(h.Root, "proc/self/status"), "CapEff:\t000001fffeffffff\n") // no CAP_SYS_RESOURCE (24)
	h.LookPath = func(name string) (string, error) {
		if name == "iptables" {
			return "", errors.New("not found")
		}
		return "/usr/sbin/" + name, nil
	}
	rs := h.Run()
	if r := find(t, rs, "overlayfs"); r.Status != Fail || !strings.Contains(r.Fix, "modprobe overlay") {
		t.Errorf("overlay: %+v", r)
	}
	if r := find(t, rs, "iptables"); r.Status != Fail || !strings.Contains(r.Fix, "apt-get install iptables") {
		t.Errorf("iptables: %+v", r)
	}
	if r := find(t, rs, "ip forwarding"); r.Status != Warn {
		t.Errorf("ip_forward 0: %+v", r)
	}
	if r := find(t, rs, "CAP_SYS_RESOURCE"); r.Status != Warn || h.HasCapSysResource() {
		t.Errorf("CAP_SYS_RESOURCE: %+v", r)
	}
	if n := len(Failed(rs)); n != 2 {
		t.Errorf("%d failures, want 2: %+v", n, Failed(rs))
	}
	var out bytes.Buffer
	Report(&out, rs)
	if !strings.Contains(out.String(), "fix: modprobe overlay") || !strings.Contains(out.String(), "2 failed") {
		t.Errorf("report:\n%s", out.String())
	}
}

func TestCgroupV2(t *testing.T) {
	h := fakeHost(t)
	os.Remove(filepath.Join(h.Root, "proc/cgroups"))
	write(t, filepath.Join(h.Root, "sys/fs/cgroup/cgroup.controllers"), "cpuset cpu io memory pids\n")
	rs := h.Run()
	if r := find(t, rs, "cgroups"); r.Status != Pass || r.Detail != "v2" {
		t.Errorf("v2: %+v", r)
	}
	if r := find(t, rs, "cgroup cpuacct"); r.Status != Pass {
		t.Errorf("cpuacct on v2 is cpu's: %+v", r)
	}
	write(t, filepath.Join(h.Root, "sys/fs/cgroup/cgroup.controllers"), "cpuset cpu io pids\n")
	if r := find(t, h.Run(), "cgroup memory"); r.Status != Fail {
		t.Errorf("memory controller missing: %+v", r)
	}
}
