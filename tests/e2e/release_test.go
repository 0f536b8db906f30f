package e2e

import (
	"bufio"
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/tests/harness"
)

// TestReleaseArm64 checks the arm64 artifact of `make release` on this
// amd64 machine, under Debian's qemu-user-static: a static aarch64 program
// listed in sha256sum.txt, carrying arm64 images, whose `--version`,
// `check-config` and control plane (memory://, to /readyz) work.
func TestReleaseArm64(t *testing.T) {
	dist := os.Getenv("SKIFF_DIST")
	if dist == "" {
		t.Fatal("SKIFF_DIST is not set: run the end-to-end tests through `make test`, which builds the release")
	}
	bin := filepath.Join(dist, "skiff-arm64")
	checkListedChecksum(t, dist, "skiff-arm64")

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	machine := f.Machine
	static := true
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			static = false
		}
	}
	f.Close()
	if machine != elf.EM_AARCH64 || !static {
		t.Fatalf("%s: machine %v, static %v; want a static EM_AARCH64 program", bin, machine, static)
	}
	// The image configs are stored uncompressed in the embedded OCI
	// archives: the payload must be arm64's.
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`"architecture":"arm64"`)) || bytes.Contains(data, []byte(`"architecture":"amd64"`)) {
		t.Error("the arm64 binary does not carry (only) arm64 images")
	}
	info, _ := os.Stat(bin)
	t.Logf("%s: %.1f MiB", bin, float64(info.Size())/(1<<20))

	qemu, err := exec.LookPath("qemu-aarch64-static")
	if err != nil {
		t.Fatal("qemu-aarch64-static is missing: make test installs Debian's qemu-user-static as root (scripts/install-deps.sh)")
	}
	// A wrapper, so that the harness can start the emulated binary as a
	// server; exec keeps one process to signal.
	wrapper := filepath.Join(t.TempDir(), "skiff-arm64")
	must(t, os.WriteFile(wrapper, []byte("#!/bin/sh\nexec "+qemu+" "+bin+` "$@"`+"\n"), 0o755))

	out, err := exec.Command(wrapper, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "linux/arm64") || !strings.Contains(string(out), "kubernetes v1.37.") {
		t.Fatalf("--version under qemu: %v\n%s", err, out)
	}
	t.Logf("under qemu: %s", firstLine(out))

	// check-config reports this host (its verdict depends on the host,
	// not on the emulation): a table of checks, and the verdict line.
	out, _ = exec.Command(wrapper, "check-config", "--data-dir", t.TempDir()).CombinedOutput()
	if !strings.Contains(string(out), "PASS") || !strings.Contains(string(out), "overlay") {
		t.Fatalf("check-config under qemu:\n%s", out)
	}

	s, err := harness.NewServer(wrapper, filepath.Join(t.TempDir(), "data"), "--datastore-endpoint", "memory://")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			if log, err := os.ReadFile(s.LogPath); err == nil {
				t.Logf("server log:\n%s", tail(string(log), 100))
			}
		}
	})
	start := time.Now()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReady(10 * time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("skiff-arm64 server --disable-agent on memory:// reached /readyz %s after start, under qemu", time.Since(start).Round(100*time.Millisecond))
}

// checkListedChecksum expects name's sha256 in dir/sha256sum.txt.
func checkListedChecksum(t *testing.T, dir, name string) {
	t.Helper()
	sums, err := os.Open(filepath.Join(dir, "sha256sum.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer sums.Close()
	got, err := fileSum(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(sums)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[1] == name {
			if f[0] != got {
				t.Fatalf("%s: sha256 %s, sha256sum.txt says %s", name, got, f[0])
			}
			return
		}
	}
	t.Fatalf("%s is not in %s/sha256sum.txt", name, dir)
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(string(b), "\n")
	return line
}
