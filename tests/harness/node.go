package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// BusyboxImage is the test image scripts/busybox-image.sh builds.
const BusyboxImage = "docker.io/library/busybox:latest"

// RepoRoot is the skiff checkout the tests run from: the nearest parent of
// the working directory with skiff's go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(data), "module github.com/skiff-dev/skiff\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the skiff checkout")
		}
		dir = parent
	}
}

// BuildBusybox writes the busybox test image archive to out, as a user
// drops archives into <data-dir>/agent/images; name replaces the image's
// name when given.
func BuildBusybox(out string, name ...string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	args := append([]string{out}, name...)
	if b, err := exec.Command(filepath.Join(root, "scripts", "busybox-image.sh"), args...).CombinedOutput(); err != nil {
		return fmt.Errorf("building the busybox image: %w\n%s", err, b)
	}
	return nil
}

// Killall runs scripts/skiff-killall.sh for dataDir: every process, mount,
// interface and rule the node agent made goes.
func Killall(dataDir string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(root, "scripts", "skiff-killall.sh"))
	cmd.Env = append(os.Environ(), "SKIFF_DATA_DIR="+dataDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("skiff-killall.sh: %w\n%s", err, out)
	}
	return nil
}

// Memory is what a set of processes holds in memory, in bytes. RSS counts
// each process's resident pages in full; PSS shares pages mapped by several
// processes among them, so summing it counts a binary's code that several
// processes map (an agent's and a server's skiff on one host, the add-on
// pods' program), once.
//
// Anon counts anonymous memory only (heap, stacks): what the processes
// allocated, which neither RSS nor PSS isolates when other processes of the
// same binary (agents on this host) start and share its file pages.
type Memory struct {
	RSS, PSS, Anon int64
}

// NodeMemory is a node's memory by part: skiff (pid and every process below
// it, which includes its containerd), the runc shims started from the data
// dir's payload (they run in sessions of their own), and the containers'
// processes below those shims (the add-ons' and the pods'). Server is the
// skiff process alone, part of Skiff.
type NodeMemory struct {
	Skiff, Shims, Containers Memory
	Server                   Memory
}

// Total is the whole tree's memory.
func (m NodeMemory) Total() Memory {
	return Memory{RSS: m.Skiff.RSS + m.Shims.RSS + m.Containers.RSS, PSS: m.Skiff.PSS + m.Shims.PSS + m.Containers.PSS,
		Anon: m.Skiff.Anon + m.Shims.Anon + m.Containers.Anon}
}

// TreeMemory measures the node that skiff server pid runs from dataDir.
func TreeMemory(pid int, dataDir string) (m NodeMemory, err error) {
	procs, err := processes()
	if err != nil {
		return m, err
	}
	payload := filepath.Join(dataDir, "data") + "/"
	part := map[int]*Memory{pid: &m.Skiff}
	for p, info := range procs {
		if strings.HasPrefix(info.exe, payload) && strings.Contains(info.exe, "containerd-shim") {
			part[p] = &m.Shims
		}
	}
	// Everything below skiff is skiff's; everything below a shim is a
	// container's.
	for changed := true; changed; {
		changed = false
		for p, info := range procs {
			if part[p] != nil || part[info.ppid] == nil {
				continue
			}
			if part[info.ppid] == &m.Skiff {
				part[p] = &m.Skiff
			} else {
				part[p] = &m.Containers
			}
			changed = true
		}
	}
	for p, into := range part {
		rss, err := RSSOf(p)
		if err != nil {
			continue // gone meanwhile
		}
		pss, anon, err := pssOf(p)
		if err != nil {
			continue
		}
		into.RSS += rss
		into.PSS += pss
		into.Anon += anon
		if p == pid {
			m.Server = Memory{RSS: rss, PSS: pss, Anon: anon}
		}
	}
	return m, nil
}

// pssOf reads a process's proportional set size and anonymous memory
// from smaps_rollup.
func pssOf(pid int) (pss, anon int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0, err
	}
	found := false
	for line := range strings.Lines(string(data)) {
		var kb int64
		switch {
		case strings.HasPrefix(line, "Pss:"):
			if _, err := fmt.Sscanf(line, "Pss: %d kB", &kb); err == nil {
				pss, found = kb*1024, true
			}
		case strings.HasPrefix(line, "Anonymous:"):
			if _, err := fmt.Sscanf(line, "Anonymous: %d kB", &kb); err == nil {
				anon = kb * 1024
			}
		}
	}
	if !found {
		return 0, 0, errors.New("no Pss in smaps_rollup")
	}
	return pss, anon, nil
}

type procInfo struct {
	ppid int
	exe  string
}

func processes() (map[int]procInfo, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	procs := map[int]procInfo{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name may hold spaces; fields after its ')' are fixed.
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		procs[pid] = procInfo{ppid: ppid, exe: exe}
	}
	return procs, nil
}

// KillNodeProcesses kills, with SIGKILL, what a node started from dataDir
// that outlives skiff: the runc shims of its payload and every process
// below them (the containers). A node in namespaces of its own leaves
// nothing else behind once these are gone; skiff-killall.sh, which also
// cleans this host's mounts, interfaces and rules, is for a node on the
// host.
func KillNodeProcesses(dataDir string) error {
	procs, err := processes()
	if err != nil {
		return err
	}
	payload := filepath.Join(dataDir, "data") + "/"
	doomed := map[int]bool{}
	for p, info := range procs {
		if strings.HasPrefix(info.exe, payload) {
			doomed[p] = true
		}
	}
	for changed := true; changed; {
		changed = false
		for p, info := range procs {
			if !doomed[p] && doomed[info.ppid] {
				doomed[p], changed = true, true
			}
		}
	}
	for p := range doomed {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	// Wait for them to be gone: their cgroups cannot go before.
	deadline := time.Now().Add(10 * time.Second)
	for p := range doomed {
		for alive(p) {
			if time.Now().After(deadline) {
				return fmt.Errorf("process %d of %s did not die", p, dataDir)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// alive reports whether a process exists and is not a zombie (which holds
// no cgroup or namespace any more).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}
