package hostcheck

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// capabilities needs CAP_SYS_ADMIN and CAP_NET_ADMIN (mounts, namespaces,
// network set-up: in practice, root) and notes a missing CAP_SYS_RESOURCE.
func (h Host) capabilities() []Result {
	eff, err := h.effectiveCaps()
	if err != nil {
		return []Result{{"capabilities", Warn, "cannot read them: " + err.Error(), ""}}
	}
	var rs []Result
	for _, c := range []struct {
		bit  uint
		name string
	}{{unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"}, {unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"}} {
		if eff&(1<<c.bit) == 0 {
			rs = append(rs, Result{c.name, Fail, "missing: the agent mounts file systems and sets up networks", "run skiff as root"})
		}
	}
	if eff&(1<<unix.CAP_SYS_RESOURCE) == 0 {
		rs = append(rs, Result{"CAP_SYS_RESOURCE", Warn, "missing (a container or sandbox): containerd will run with restrict_oom_score_adj, so pods cannot get a lower OOM score than skiff", ""})
	}
	if len(rs) == 0 {
		rs = append(rs, Result{"capabilities", Pass, "root", ""})
	}
	return rs
}

// HasCapSysResource tells whether this process may lower OOM scores, which
// runc does for every pod sandbox unless containerd is told not to.
func (h Host) HasCapSysResource() bool {
	eff, err := h.effectiveCaps()
	return err == nil && eff&(1<<unix.CAP_SYS_RESOURCE) != 0
}

func (h Host) effectiveCaps() (uint64, error) {
	status, err := h.read("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(status) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no CapEff in /proc/self/status")
}

// minFreeBytes is the free space under which containerd's images and pods'
// logs soon fill the disk.
const minFreeBytes = 2 << 30

func (h Host) diskSpace() Result {
	dir := h.DataDir
	// The data dir may not exist yet: check the nearest existing parent.
	var st unix.Statfs_t
	for {
		if err := unix.Statfs(h.path(dir), &st); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return Result{"disk space", Warn, "cannot read free space of " + h.DataDir, ""}
		}
		dir = parent
	}
	free := st.Bavail * uint64(st.Bsize)
	detail := fmt.Sprintf("%.1f GiB free for %s", float64(free)/(1<<30), h.DataDir)
	if free < minFreeBytes {
		return Result{"disk space", Warn, detail, "free space or choose another --data-dir; the kubelet evicts pods when the disk fills"}
	}
	return Result{"disk space", Pass, detail, ""}
}
