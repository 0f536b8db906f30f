// Package hostcheck checks that a host can run skiff's node agent: the
// kernel features and programs the kubelet, containerd, runc, the CNI bridge
// and kube-proxy rely on. `skiff check-config` prints the results, and the
// agent refuses to start when a hard requirement fails.
//
// Every check reads files under Host.Root (/proc, /sys) and looks programs
// up through Host.LookPath, so tests can describe a host that lacks a
// feature. Nothing relies on modprobe or /lib/modules, which containers and
// minimal hosts often lack.
package hostcheck

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
)

// Status is the outcome of one check.
type Status string

const (
	Pass Status = "PASS"
	Warn Status = "WARN" // works, with a limitation the detail names
	Fail Status = "FAIL" // the agent cannot run
)

// Result is one check's outcome and, unless it passed, what to do.
type Result struct {
	Name   string
	Status Status
	Detail string
	Fix    string
}

// Host is the host to check.
type Host struct {
	Root     string // "" or "/" for the real host
	DataDir  string // where free space is checked; empty skips the check
	LookPath func(string) (string, error)
}

func (h Host) path(p string) string {
	if h.Root == "" {
		return p
	}
	return filepath.Join(h.Root, p)
}

func (h Host) read(p string) (string, error) {
	data, err := os.ReadFile(h.path(p))
	return string(data), err
}

func (h Host) exists(p string) bool {
	_, err := os.Stat(h.path(p))
	return err == nil
}

func (h Host) lookPath(name string) (string, error) {
	if h.LookPath != nil {
		return h.LookPath(name)
	}
	return exec.LookPath(name)
}

// Run runs every check.
func (h Host) Run() []Result {
	var rs []Result
	rs = append(rs, h.kernel())
	rs = append(rs, h.namespaces()...)
	rs = append(rs, h.cgroups()...)
	rs = append(rs, h.overlay())
	rs = append(rs, h.netfilter()...)
	rs = append(rs, h.bridge()...)
	rs = append(rs, h.forwarding())
	rs = append(rs, h.programs()...)
	rs = append(rs, h.capabilities()...)
	if h.DataDir != "" {
		rs = append(rs, h.diskSpace())
	}
	return rs
}

// Failed returns the results that stop the agent.
func Failed(rs []Result) []Result {
	var failed []Result
	for _, r := range rs {
		if r.Status == Fail {
			failed = append(failed, r)
		}
	}
	return failed
}

// Report prints one aligned line per check, the fix under each that did not
// pass, and a summary.
func Report(w io.Writer, rs []Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	counts := map[Status]int{}
	for _, r := range rs {
		counts[r.Status]++
		fmt.Fprintf(tw, "%s\t%s:\t%s\n", r.Status, r.Name, r.Detail)
		if r.Status != Pass && r.Fix != "" {
			fmt.Fprintf(tw, "\t\t  fix: %s\n", r.Fix)
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d passed, %d warnings, %d failed\n", counts[Pass], counts[Warn], counts[Fail])
}

func (h Host) kernel() Result {
	release, err := h.read("/proc/sys/kernel/osrelease")
	if err != nil {
		return Result{"kernel", Warn, "cannot read the kernel release: " + err.Error(), "mount /proc"}
	}
	return Result{"kernel", Pass, strings.TrimSpace(release), ""}
}

func (h Host) namespaces() []Result {
	var missing []string
	for _, ns := range []string{"mnt", "uts", "ipc", "pid", "net", "cgroup"} {
		if !h.exists("/proc/self/ns/" + ns) {
			missing = append(missing, ns)
		}
	}
	rs := []Result{{"namespaces", Pass, "mnt uts ipc pid net cgroup", ""}}
	if len(missing) > 0 {
		rs[0] = Result{"namespaces", Fail, "missing: " + strings.Join(missing, " "),
			"use a kernel built with CONFIG_NAMESPACES and these namespace types"}
	}
	if h.exists("/proc/self/ns/user") {
		rs = append(rs, Result{"user namespaces", Pass, "available", ""})
	} else {
		rs = append(rs, Result{"user namespaces", Warn, "missing; pods with hostUsers: false cannot run", "enable CONFIG_USER_NS"})
	}
	return rs
}

func (h Host) overlay() Result {
	fss, err := h.read("/proc/filesystems")
	if err == nil {
		for line := range strings.Lines(fss) {
			if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == "overlay" {
				return Result{"overlayfs", Pass, "available", ""}
			}
		}
	}
	return Result{"overlayfs", Fail, "the overlay file system is not available (containerd's overlayfs snapshotter needs it)", "modprobe overlay, or enable CONFIG_OVERLAY_FS"}
}

func (h Host) netfilter() []Result {
	var rs []Result
	if h.exists("/proc/sys/net/netfilter") || h.exists("/proc/net/nf_conntrack") {
		rs = append(rs, Result{"netfilter", Pass, "connection tracking available", ""})
	} else {
		rs = append(rs, Result{"netfilter", Fail, "connection tracking (nf_conntrack) is not available; Services and pod masquerading need it",
			"modprobe nf_conntrack, or enable CONFIG_NF_CONNTRACK"})
	}
	return rs
}

func (h Host) bridge() []Result {
	var rs []Result
	if h.exists("/sys/module/bridge") || h.exists("/sys/class/net/bridge") || h.exists("/proc/sys/net/bridge") {
		rs = append(rs, Result{"bridge", Pass, "loaded", ""})
	} else {
		rs = append(rs, Result{"bridge", Warn, "the bridge module is not loaded yet; the CNI bridge plugin loads it when the first pod starts, if the kernel can",
			"modprobe bridge"})
	}
	if h.exists("/proc/sys/net/bridge/bridge-nf-call-iptables") {
		rs = append(rs, Result{"br_netfilter", Pass, "bridged traffic passes netfilter", ""})
	} else {
		rs = append(rs, Result{"br_netfilter", Warn, "not loaded: Service traffic between pods of one node is not translated",
			"modprobe br_netfilter (and add it to /etc/modules-load.d)"})
	}
	return rs
}

func (h Host) forwarding() Result {
	v, err := h.read("/proc/sys/net/ipv4/ip_forward")
	switch {
	case err != nil:
		return Result{"ip forwarding", Fail, "cannot read net.ipv4.ip_forward: " + err.Error(), "mount /proc"}
	case strings.TrimSpace(v) == "1":
		return Result{"ip forwarding", Pass, "on", ""}
	default:
		return Result{"ip forwarding", Warn, "off; the agent turns it on at start", "sysctl -w net.ipv4.ip_forward=1 (and in /etc/sysctl.d) to keep it on"}
	}
}

func (h Host) programs() []Result {
	var rs []Result
	for _, p := range []struct {
		name, why, pkg string
		status         Status
	}{
		{"iptables", "the CNI bridge masquerades pod traffic with it, and kube-proxy's iptables mode needs it", "iptables", Fail},
		{"nft", "kube-proxy's nftables mode needs it; without it kube-proxy uses iptables mode", "nftables", Warn},
		{"ipset", "NetworkPolicies are enforced with it; without it the node agent will not start unless the server runs with --disable-network-policy", "ipset", Warn},
		{"mount", "the kubelet mounts volumes with it", "mount", Fail},
		{"umount", "the kubelet unmounts volumes with it", "mount", Fail},
	} {
		if path, err := h.lookPath(p.name); err == nil {
			rs = append(rs, Result{p.name, Pass, path, ""})
		} else {
			rs = append(rs, Result{p.name, p.status, "not found in PATH: " + p.why, "apt-get install " + p.pkg + " (or your distribution's " + p.pkg + " package)"})
		}
	}
	return rs
}
