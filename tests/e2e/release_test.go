package e2e

import (
	"bufio"
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/tests/harness"
)

// TestReleaseArm64 checks the arm64 artifact of `make release` on this
// amd64 machine, under Debian's qemu-user-static: a static aarch64 release
// binary listed in sha256sum.txt, whose launcher unpacks a static aarch64
// program carrying arm64 images, whose `--version`, `check-config` and
// control plane (memory://, to /readyz) work.
func TestReleaseArm64(t *testing.T) {
	release := releaseBinary(t, "arm64")
	checkListedChecksum(t, filepath.Dir(release), "skiff-arm64")
	checkStaticELF(t, release, elf.EM_AARCH64)
	logSize(t, release)

	qemu, err := exec.LookPath("qemu-aarch64-static")
	if err != nil {
		t.Fatal("qemu-aarch64-static is missing: make test installs Debian's qemu-user-static as root (scripts/install-deps.sh)")
	}
	// The launcher's exec of the program would need qemu registered with
	// binfmt_misc, which this machine lacks: unpack it, and run that.
	bin := filepath.Join(t.TempDir(), "skiff")
	if out, err := exec.Command(qemu, release, "unpack", bin).CombinedOutput(); err != nil {
		t.Fatalf("unpack under qemu: %v\n%s", err, out)
	}
	checkStaticELF(t, bin, elf.EM_AARCH64)
	logSize(t, bin)
	// The image configs are stored uncompressed in the embedded OCI
	// archives: the payload must be arm64's.
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`"architecture":"arm64"`)) || bytes.Contains(data, []byte(`"architecture":"amd64"`)) {
		t.Error("the arm64 program does not carry (only) arm64 images")
	}
	data = nil

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

// TestReleaseRunsItsProgram runs this machine's release binary as a user
// would, straight from the download: its first run unpacks the program
// (byte for byte bin/skiff) into the cache and runs it, later runs use it
// as it is, and `unpack` writes the same program where it is told.
func TestReleaseRunsItsProgram(t *testing.T) {
	release := releaseBinary(t, runtime.GOARCH)
	checkListedChecksum(t, filepath.Dir(release), "skiff-"+runtime.GOARCH)
	checkStaticELF(t, release, map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[runtime.GOARCH])
	logSize(t, release)
	program, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	want := mustSum(t, program)

	cache := t.TempDir()
	version := func() (string, os.FileInfo) {
		t.Helper()
		cmd := exec.Command(release, "--version")
		cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+cache)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "kubernetes v1.37.") {
			t.Fatalf("%s --version: %v\n%s", release, err, out)
		}
		unpacked, _ := filepath.Glob(filepath.Join(cache, "skiff", "*", "skiff"))
		if len(unpacked) != 1 {
			t.Fatalf("the cache holds %v, want one program", unpacked)
		}
		t.Logf("--version through the launcher: %s", time.Since(start).Round(time.Millisecond))
		info, err := os.Stat(unpacked[0])
		if err != nil {
			t.Fatal(err)
		}
		return unpacked[0], info
	}
	unpacked, first := version()
	if got := mustSum(t, unpacked); got != want {
		t.Errorf("the unpacked program's sha256 is %s, bin/skiff's %s", got, want)
	}
	if _, second := version(); !os.SameFile(first, second) {
		t.Error("the second run unpacked the program again")
	}

	out := filepath.Join(t.TempDir(), "skiff")
	if b, err := exec.Command(release, "unpack", out).CombinedOutput(); err != nil {
		t.Fatalf("unpack: %v\n%s", err, b)
	}
	if got := mustSum(t, out); got != want {
		t.Errorf("unpack wrote a program with sha256 %s, bin/skiff's is %s", got, want)
	}
}

// releaseBinary is the release binary for arch that `make release` wrote.
func releaseBinary(t *testing.T, arch string) string {
	t.Helper()
	dist := os.Getenv("SKIFF_DIST")
	if dist == "" {
		t.Fatal("SKIFF_DIST is not set: run the end-to-end tests through `make test`, which builds the release")
	}
	return filepath.Join(dist, "skiff-"+arch)
}

// checkStaticELF expects path to be a static program for machine.
func checkStaticELF(t *testing.T, path string, machine elf.Machine) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatalf("%s is not static: it names an interpreter", path)
		}
	}
	if f.Machine != machine {
		t.Fatalf("%s: machine %v, want %v", path, f.Machine, machine)
	}
}

func logSize(t *testing.T, path string) {
	t.Helper()
	if info, err := os.Stat(path); err == nil {
		t.Logf("%s: %.1f MiB", path, float64(info.Size())/(1<<20))
	}
}

// mustSum is the sha256 of the file at path.
func mustSum(t *testing.T, path string) string {
	t.Helper()
	sum, err := fileSum(path)
	if err != nil {
		t.Fatal(err)
	}
	return sum
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
