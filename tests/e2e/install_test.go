package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-dev/skiff/tests/harness"
)

// newRootInstallation is an installation for a test that runs install.sh
// (skipped unless root), and the skiff binary to install.
func newRootInstallation(t *testing.T) (*harness.Installation, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("install.sh needs root")
	}
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	return newInstallation(t), bin
}

func newInstallation(t *testing.T) *harness.Installation {
	t.Helper()
	in, err := harness.NewInstallation(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func skiffPid(t *testing.T, in *harness.Installation) int {
	t.Helper()
	pid, err := in.SkiffPid()
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func mustInstall(t *testing.T, in *harness.Installation, extraEnv ...string) string {
	t.Helper()
	start := time.Now()
	stdout, stderr, err := in.Install(in.Args(), extraEnv...)
	if err != nil {
		t.Fatalf("install.sh: %v\n%s\n%s", err, stdout, stderr)
	}
	t.Logf("install.sh took %s:\n%s", time.Since(start).Round(100*time.Millisecond), stdout)
	return stdout
}

// TestInstall installs skiff with install.sh (no init system), uses it
// through the kubectl symlink, runs install.sh again (nothing changes),
// kills skiff (the supervisor restarts it), upgrades the binary (a running
// pod keeps its container) and uninstalls it (nothing of skiff is left).
func TestInstall(t *testing.T) {
	l, bin := newRootInstallation(t)
	before := readHostState(t)
	if err := harness.BuildBusybox(filepath.Join(l.DataDir, "agent", "images", "busybox.tar")); err != nil {
		t.Fatal(err)
	}
	uninstalled := false
	t.Cleanup(func() {
		if t.Failed() {
			if log, err := os.ReadFile(l.LogFile()); err == nil {
				t.Logf("skiff's log %s:\n%s", l.LogFile(), tail(string(log), 150))
			}
		}
		if !uninstalled {
			if err := l.Uninstall(); err != nil {
				t.Logf("uninstall at cleanup: %v", err)
			}
		}
	})

	// This machine may have a kubectl of its own (a cloud SDK's): link
	// ours anyway, in the throwaway bin dir.
	mustInstall(t, l, "INSTALL_SKIFF_BINARY="+bin, "INSTALL_SKIFF_SYMLINK=force")
	checkInstalledFiles(t, l)

	// Stock kubectl, through the symlink the installer made.
	out, err := exec.Command(filepath.Join(l.BinDir, "kubectl"), "--kubeconfig", l.Kubeconfig, "get", "nodes", "--no-headers").CombinedOutput()
	if err != nil || !strings.Contains(string(out), " Ready ") {
		t.Fatalf("kubectl get nodes through the symlink: %v\n%s", err, out)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", l.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c := kubernetes.NewForConfigOrDie(rc)
	ctx := context.Background()
	pod := runHTTPPod(t, ctx, c)

	// The same input again changes nothing: no file, no process.
	files, pid := installedFiles(t, l), skiffPid(t, l)
	mustInstall(t, l, "INSTALL_SKIFF_BINARY="+bin, "INSTALL_SKIFF_SYMLINK=force")
	if again := installedFiles(t, l); again != files {
		t.Errorf("a second install.sh with the same input changed files:\nbefore:\n%s\nafter:\n%s", files, again)
	}
	if again := skiffPid(t, l); again != pid {
		t.Errorf("a second install.sh with the same input restarted skiff: pid %d, was %d", again, pid)
	}

	// skiff killed: the supervisor starts it again.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitRestarted(t, l, pid)
	pid = skiffPid(t, l)

	// A new binary: install.sh replaces it and restarts skiff; the pod's
	// container keeps running through it.
	upgraded := filepath.Join(t.TempDir(), "skiff")
	if err := harness.CopyAndMark(bin, upgraded); err != nil {
		t.Fatal(err)
	}
	out2 := mustInstall(t, l, "INSTALL_SKIFF_BINARY="+upgraded, "INSTALL_SKIFF_SYMLINK=force")
	if !strings.Contains(out2, "Restarting "+l.Name) {
		t.Errorf("install.sh with a new binary did not restart skiff:\n%s", out2)
	}
	if skiffPid(t, l) == pid {
		t.Errorf("skiff still runs as pid %d after an upgrade", pid)
	}
	if same, err := sameFile(upgraded, filepath.Join(l.BinDir, "skiff")); err != nil || !same {
		t.Errorf("the installed binary is not the new one: %v", err)
	}
	after := waitPodRunning(t, ctx, c, "default", pod.Name)
	if a, b := containerID(after), containerID(pod); a != b || after.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("the pod's container changed across the upgrade: %s (restarts %d), was %s", a, after.Status.ContainerStatuses[0].RestartCount, b)
	}
	httpGet(t, "http://"+after.Status.PodIP+":8080/index.html", "served by skiff")

	// Uninstall: nothing of skiff is left.
	if err := l.Uninstall(); err != nil {
		t.Fatal(err)
	}
	uninstalled = true
	checkUninstalled(t, l, before)
}

// checkInstalledFiles checks what the installer wrote: modes, the config
// file from the arguments, the symlinks, the service's pid and log files.
func checkInstalledFiles(t *testing.T, l *harness.Installation) {
	t.Helper()
	for path, mode := range map[string]os.FileMode{
		filepath.Join(l.BinDir, "skiff"):                0o755,
		filepath.Join(l.BinDir, "skiff-killall.sh"):     0o755,
		filepath.Join(l.BinDir, l.Name+"-uninstall.sh"): 0o755,
		filepath.Join(l.BinDir, l.Name+"-service.sh"):   0o755,
		l.Config:                               0o600,
		filepath.Join(l.EtcDir, l.Name+".env"): 0o600,
		l.Kubeconfig:                           0o600,
	} {
		if info, err := os.Stat(path); err != nil {
			t.Errorf("not installed: %v", err)
		} else if info.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", path, info.Mode().Perm(), mode)
		}
	}
	for _, path := range []string{l.LogFile(), l.PidFile(), l.PidFile() + ".skiff"} {
		if _, err := os.Stat(path); err != nil {
			t.Errorf("the service has no %v", err)
		}
	}
	config, err := os.ReadFile(l.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`data-dir: "` + l.DataDir + `"`, `write-kubeconfig: "` + l.Kubeconfig + `"`, "disable:\n  - \"ingress\"\n  - \"metrics-server\"\n"} {
		if !strings.Contains(string(config), want) {
			t.Errorf("config file lacks %s:\n%s", want, config)
		}
	}
	for _, cmd := range []string{"kubectl", "ctr", "crictl"} {
		if target, err := os.Readlink(filepath.Join(l.BinDir, cmd)); err != nil || target != filepath.Join(l.BinDir, "skiff") {
			t.Errorf("%s symlink: %q %v", cmd, target, err)
		}
	}
	out, err := exec.Command(filepath.Join(l.BinDir, l.Name+"-service.sh"), "status").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "is running") {
		t.Errorf("service status: %v %s", err, out)
	}
}

// installedFiles describes every file install.sh put in the layout, with its
// content hash and modification time, and the supervisor's pid.
func installedFiles(t *testing.T, l *harness.Installation) string {
	t.Helper()
	pid, err := os.ReadFile(l.PidFile())
	if err != nil {
		t.Fatal(err)
	}
	return snapshot(t, l.BinDir) + snapshot(t, l.EtcDir) + "supervisor " + string(pid)
}

func waitRestarted(t *testing.T, l *harness.Installation, old int) {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", l.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc.Timeout = 2 * time.Second
	c := kubernetes.NewForConfigOrDie(rc)
	start := time.Now()
	err = wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		data, err := os.ReadFile(l.PidFile() + ".skiff")
		if err != nil || strings.TrimSpace(string(data)) == strconv.Itoa(old) {
			return false, nil
		}
		_, err = c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("skiff was not restarted and ready within 2 minutes of kill -9: %v", err)
	}
	t.Logf("the supervisor restarted skiff; its API was ready %s after kill -9", time.Since(start).Round(100*time.Millisecond))
}

func sameFile(a, b string) (bool, error) {
	ha, err := fileSum(a)
	if err != nil {
		return false, err
	}
	hb, err := fileSum(b)
	return ha == hb, err
}

func fileSum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	return fmt.Sprintf("%x", h.Sum(nil)), err
}

// hostState is what skiff can leave on a host outside its own files.
type hostState struct {
	mounts, netns, links, rules []string
}

var (
	nftCounter = regexp.MustCompile(`counter packets \d+ bytes \d+|# handle \d+`)
	iptCounter = regexp.MustCompile(`\[\d+:\d+\]`)
)

func readHostState(t *testing.T) hostState {
	t.Helper()
	var s hostState
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(mounts)) {
		if f := strings.Fields(line); len(f) > 4 {
			s.mounts = append(s.mounts, f[4])
		}
	}
	s.netns = lines(t, "ip", "netns", "list")
	for _, l := range lines(t, "ip", "-o", "link", "show") {
		if f := strings.Fields(l); len(f) > 1 {
			s.links = append(s.links, strings.Split(strings.TrimSuffix(f[1], ":"), "@")[0])
		}
	}
	for _, l := range lines(t, "nft", "list", "ruleset") {
		s.rules = append(s.rules, "nft: "+strings.TrimSpace(nftCounter.ReplaceAllString(l, "")))
	}
	for _, l := range lines(t, "iptables-save") {
		if !strings.HasPrefix(l, "#") {
			s.rules = append(s.rules, "iptables: "+iptCounter.ReplaceAllString(l, ""))
		}
	}
	return s
}

func lines(t *testing.T, name string, args ...string) []string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// newSince lists what is in now but not in before.
func newSince(before, now []string) []string {
	var added []string
	for _, x := range now {
		if !slices.Contains(before, x) {
			added = append(added, x)
		}
	}
	return added
}

// checkUninstalled expects no process, file, mount, network namespace,
// interface or netfilter rule of skiff: the host as it was before install.
func checkUninstalled(t *testing.T, l *harness.Installation, before hostState) {
	t.Helper()
	if out, _ := exec.Command("ps", "-e", "-o", "pid=,args=").Output(); len(out) > 0 {
		for line := range strings.Lines(string(out)) {
			if strings.Contains(line, l.Root) || strings.Contains(line, "containerd-shim-runc") {
				t.Errorf("process left after uninstall: %s", strings.TrimSpace(line))
			}
		}
	}
	for _, path := range []string{
		l.DataDir, l.EtcDir, l.PidFile(), l.PidFile() + ".skiff", l.LogFile(), "/run/skiff", "/var/lib/kubelet", "/var/lib/cni",
	} {
		if _, err := os.Lstat(path); err == nil {
			t.Errorf("left after uninstall: %s", path)
		}
	}
	if entries, err := os.ReadDir(l.BinDir); err != nil || len(entries) != 0 {
		t.Errorf("left in the bin dir after uninstall: %v %v", entries, err)
	}
	now := readHostState(t)
	for what, added := range map[string][]string{
		"mount":             newSince(before.mounts, now.mounts),
		"network namespace": newSince(before.netns, now.netns),
		"interface":         newSince(before.links, now.links),
		"netfilter rule":    newSince(before.rules, now.rules),
	} {
		for _, x := range added {
			t.Errorf("%s left after uninstall: %s", what, x)
		}
	}
}
