package hostcheck

import (
	"strings"
)

// cgroups reports the cgroup mode (v2, v1, or v1 with cgroup2 beside it) and
// the controllers the kubelet needs.
func (h Host) cgroups() []Result {
	unified := h.exists("/sys/fs/cgroup/cgroup.controllers")
	available := map[string]bool{}
	mode := "v1"
	if unified {
		mode = "v2"
		data, _ := h.read("/sys/fs/cgroup/cgroup.controllers")
		for _, c := range strings.Fields(data) {
			available[c] = true
		}
		// cpuacct is part of cpu on v2.
		available["cpuacct"] = available["cpu"]
	} else {
		data, err := h.read("/proc/cgroups")
		if err != nil {
			return []Result{{"cgroups", Fail, "cannot read /proc/cgroups: " + err.Error(), "mount /proc and the cgroup file systems"}}
		}
		for line := range strings.Lines(data) {
			f := strings.Fields(line)
			if len(f) == 4 && !strings.HasPrefix(f[0], "#") && f[3] == "1" {
				available[f[0]] = true
			}
		}
		if h.hasCgroup2Mount() {
			mode = "v1 with cgroup2 mounted beside it"
		}
	}
	detail := mode
	if !unified {
		detail += " (the kubelet runs with failCgroupV1: false; cgroup v1 is deprecated upstream)"
	}
	rs := []Result{{"cgroups", Pass, detail, ""}}
	for _, c := range []struct {
		name   string
		status Status
	}{{"cpu", Fail}, {"cpuacct", Warn}, {"memory", Fail}, {"pids", Fail}, {"cpuset", Warn}} {
		if available[c.name] {
			rs = append(rs, Result{"cgroup " + c.name, Pass, "enabled", ""})
			continue
		}
		rs = append(rs, Result{"cgroup " + c.name, c.status, "controller not enabled",
			"enable it on the kernel command line (for memory: cgroup_enable=memory) or in the parent cgroup's cgroup.subtree_control"})
	}
	return rs
}

func (h Host) hasCgroup2Mount() bool {
	data, err := h.read("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for line := range strings.Lines(data) {
		// The file system type follows the " - " separator.
		if _, after, ok := strings.Cut(line, " - "); ok && strings.HasPrefix(after, "cgroup2 ") {
			return true
		}
	}
	return false
}
