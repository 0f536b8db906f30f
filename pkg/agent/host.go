package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"k8s.io/klog/v2"
)

// hostSysctls are the kernel settings a node needs, set at start as k3s
// does: forwarding for pod traffic, and bridged traffic through netfilter so
// Service rules see pod-to-pod packets on the same bridge.
var hostSysctls = []struct {
	name     string
	optional bool // absent when br_netfilter is not loaded
}{
	{"net/ipv4/ip_forward", false},
	{"net/bridge/bridge-nf-call-iptables", true},
	{"net/bridge/bridge-nf-call-ip6tables", true},
}

func setSysctls() error {
	for _, s := range hostSysctls {
		path := filepath.Join("/proc/sys", s.name)
		cur, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) && s.optional {
			klog.InfoS("Kernel setting not available; Services may not work between pods of this node (load br_netfilter)", "sysctl", s.name)
			continue
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		if string(cur) == "1\n" {
			continue
		}
		if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("setting %s to 1: %w (set it on the host, for example in /etc/sysctl.d)", s.name, err)
		}
		klog.InfoS("Set kernel setting", "sysctl", s.name, "value", 1)
	}
	return nil
}

// cgroupDriver is systemd when systemd manages the host's cgroups (it runs
// as init on a unified cgroup v2 hierarchy), else cgroupfs. The kubelet and
// runc must agree on it.
func cgroupDriver() string {
	_, systemd := os.Stat("/run/systemd/system")
	_, unified := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	if systemd == nil && unified == nil {
		return "systemd"
	}
	return "cgroupfs"
}
