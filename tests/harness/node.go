package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

// TreeRSS is the resident memory of pid and every process below it
// (skiff and its containerd), plus the runc shims started from dataDir's
// payload, which run in sessions of their own; pods' own processes are not
// counted.
func TreeRSS(pid int, dataDir string) (tree, shims int64, err error) {
	procs, err := processes()
	if err != nil {
		return 0, 0, err
	}
	keep := map[int]bool{pid: true}
	for changed := true; changed; {
		changed = false
		for p, info := range procs {
			if !keep[p] && keep[info.ppid] {
				keep[p], changed = true, true
			}
		}
	}
	payload := filepath.Join(dataDir, "data") + "/"
	for p, info := range procs {
		rss, err := RSSOf(p)
		if err != nil {
			continue // gone meanwhile
		}
		switch {
		case keep[p]:
			tree += rss
		case strings.HasPrefix(info.exe, payload) && strings.Contains(info.exe, "containerd-shim"):
			shims += rss
		}
	}
	return tree, shims, nil
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
