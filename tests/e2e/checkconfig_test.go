package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/tests/harness"
)

// TestCheckConfig runs `skiff check-config` on this host, where every hard
// requirement is met, and again with no iptables in reach (a PATH without
// it), which must fail naming it.
func TestCheckConfig(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the checks expect root's capabilities")
	}
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "check-config", "--data-dir", t.TempDir()).CombinedOutput()
	if err != nil {
		t.Fatalf("check-config failed on this host: %v\n%s", err, out)
	}
	for _, want := range []string{"PASS", "overlay", "cgroup", "iptables"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check-config output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "FAIL") {
		t.Errorf("check-config reports a failure but exited 0:\n%s", out)
	}

	noTools := t.TempDir()
	for _, tool := range []string{"mount", "umount", "nft"} {
		if path, err := exec.LookPath(tool); err == nil {
			if err := os.Symlink(path, noTools+"/"+tool); err != nil {
				t.Fatal(err)
			}
		}
	}
	cmd := exec.Command(bin, "check-config", "--data-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "PATH="+noTools)
	out, err = cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("check-config passed without iptables:\n%s", out)
	}
	failLine := ""
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "FAIL") && strings.Contains(line, "iptables") {
			failLine = line
		}
	}
	if failLine == "" {
		t.Errorf("no FAIL line naming iptables:\n%s", out)
	}

	// The server runs the same checks before it writes anything.
	dataDir := filepath.Join(t.TempDir(), "data")
	cmd = exec.Command(bin, "server", "--data-dir", dataDir, "--config", os.DevNull, "--https-listen-port", "0",
		"--write-kubeconfig", filepath.Join(t.TempDir(), "kubeconfig"))
	cmd.Env = append(os.Environ(), "PATH="+noTools)
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "this host cannot run the node agent: iptables") {
		t.Errorf("server without iptables: %v\n%s", err, out)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("the refused server created its data dir: %v", err)
	}
}
