// Package memory holds the process-wide memory settings of every Go program
// skiff runs on a node (skiff itself, containerd, the add-ons' program): the
// garbage collector's target, and what a process gives back once its
// start-up is over (the binary's start-up pages, start-up's garbage).
//
// Why: skiff is one ~300 MB binary holding every component. Each process of
// it (a server, an agent) runs some 1,600 package initialisers at start,
// and the server reads the embedded images through the binary's mapping;
// containerd imports the node's images and starts its first pods. Those
// pages stay mapped, and counted in RSS and PSS, long after they were last
// used. They are clean pages of the file, so giving them back costs nothing
// but a page fault for the few that are used again.
package memory

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// DropStartupPages removes the pages of this process's own executable that
// are mapped read-only and were never written (its code and read-only
// data) from the process's page tables. They stay in the page cache;
// those used again come back with a minor fault, so what stays resident is
// what the process keeps using. It returns the resident bytes it dropped.
// Mappings with private copies (relocated data: anonymous pages) are left
// alone; a page the file's own writer left dirty in the page cache is
// still the file's, and stays there.
//
// It then marks those mappings random (no read-ahead) and evicts the
// binary's pages no process maps from the page cache. Why: a kernel with
// large folios in the page cache (ext4 since Linux 6.16) maps a whole
// folio, up to 2 MiB, on a fault in any of its pages, and read-ahead and
// the writer of a new binary (install.sh, go build) make such folios. With
// them, touching 1 page in 64 of skiff's binary mapped 258 MiB of it; read
// back a page at a time without read-ahead, 4 MiB (measured on this
// kernel, 6.18). Start-up keeps read-ahead, which makes it fast.
//
// Random holds for the read-only data (the tables the garbage collector
// reads for every goroutine's stack), not for the code: since Linux 6.16 a
// fault in an executable mapping reads ahead whatever the advice, up to
// the disk's read_ahead_kb, and fault-around (64 KiB) then maps the cached
// neighbours of every page touched. On this 8 MiB read-ahead VM an idle
// server touched 721 such 64 KiB blocks of its code and had 675 of them
// mapped whole: 44 MiB. Nothing a process can set changes that.
func DropStartupPages() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	var dropped int64
	for _, m := range parseSmaps(smaps) {
		if m.path != exe || m.perms[1] == 'w' || m.anonymous > 0 || m.rss == 0 {
			continue
		}
		// By address: the range is this process's own mapping, never
		// dereferenced here (unix.Madvise would want it as a []byte).
		// Random first, so that what faults back in meanwhile comes a
		// page at a time.
		for _, advice := range []uintptr{unix.MADV_RANDOM, unix.MADV_DONTNEED} {
			if _, _, errno := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, advice); errno != 0 {
				return dropped, fmt.Errorf("madvise %x-%x: %w", m.start, m.end, errno)
			}
		}
		dropped += m.rss
	}
	return dropped, evictFromPageCache(exe)
}

// evictFromPageCache drops the clean pages of path that no process maps.
func evictFromPageCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("evicting %s from the page cache: %w", path, err)
	}
	return nil
}

type mapping struct {
	start, end                   uintptr
	perms, path                  string
	rss, anonymous, privateDirty int64
}

// parseSmaps reads /proc/<pid>/smaps: a header line per mapping
// ("start-end perms offset dev inode path"), then "Key: value kB" lines.
func parseSmaps(data []byte) []mapping {
	var out []mapping
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if key, ok := strings.CutSuffix(fields[0], ":"); ok {
			if len(out) == 0 || len(fields) < 2 {
				continue
			}
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			m := &out[len(out)-1]
			switch key {
			case "Rss":
				m.rss = kb << 10
			case "Anonymous":
				m.anonymous = kb << 10
			}
			continue
		}
		start, end, ok := strings.Cut(fields[0], "-")
		if !ok || len(fields) < 5 {
			continue
		}
		s, err1 := strconv.ParseUint(start, 16, 64)
		e, err2 := strconv.ParseUint(end, 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		m := mapping{start: uintptr(s), end: uintptr(e), perms: fields[1]}
		if len(fields) >= 6 {
			m.path = fields[5]
		}
		out = append(out, m)
	}
	return out
}

// StartupSettles is how long a process waits before it settles: skiff from
// the moment its node is Ready, the programs it carries (containerd, the
// shims, the add-ons) from their own start. By then the node's images are
// imported, the add-ons' pods started and their informers have listed.
const StartupSettles = 30 * time.Second

// SettleIn settles this process once, delay from now, in the background:
// for programs with no lifecycle of their own (containerd, the add-ons'
// program), started with the node and settled by the clock.
func SettleIn(delay time.Duration) {
	time.AfterFunc(delay, Settle)
}

// Settle ends start-up: it lowers the garbage collector's target to
// SettledGCPercent (unless the user chose one), gives the heap that
// start-up left free back to the system, and drops the binary's start-up
// pages. In that order: a collection reads the binary's tables for every
// goroutine's stack, so it runs before the drop rather than mapping those
// pages again, as whole folios, right after it.
func Settle() {
	if percent, lowered := lowerGCPercent(); lowered {
		klog.InfoS("Start-up is over: lowered the garbage collector's target and returned the free heap", "GOGC", percent)
	}
	dropped, err := DropStartupPages()
	if err != nil {
		// Only memory is at stake: say so, and run on.
		klog.ErrorS(err, "Could not drop the binary's start-up pages")
		return
	}
	klog.InfoS("Dropped the binary's start-up pages from memory", "MiB", dropped>>20)
}
