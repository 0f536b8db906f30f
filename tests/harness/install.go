package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// RepoFile is the path of a file of this checkout, such as install.sh.
func RepoFile(name string) string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(self), "..", "..", name)
}

// Installation is a throwaway place for install.sh to install skiff into:
// its own bin dir, config file, data dir, ports and service name, so that
// it touches no installed skiff, and no init system (install.sh's
// supervised background process).
type Installation struct {
	Root, BinDir, EtcDir, Config, DataDir, Kubeconfig, Name string
	port, controllerPort, schedulerPort                     int
}

// NewInstallation lays out an installation under root, named after this
// process and n.
func NewInstallation(root string, n int) (*Installation, error) {
	in := &Installation{
		Root:    root,
		BinDir:  filepath.Join(root, "bin"),
		EtcDir:  filepath.Join(root, "etc"),
		DataDir: filepath.Join(root, "data"),
		Name:    fmt.Sprintf("skiff-test%d-%d", os.Getpid(), n),
	}
	in.Config = filepath.Join(in.EtcDir, "config.yaml")
	in.Kubeconfig = filepath.Join(in.EtcDir, "skiff.yaml")
	for _, p := range []*int{&in.port, &in.controllerPort, &in.schedulerPort} {
		var err error
		if *p, err = FreePort(); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// Env is install.sh's whole environment, plus extra: nothing of the
// caller's (no SKIFF_* of the developer's) reaches it.
func (in *Installation) Env(extra ...string) []string {
	return append([]string{
		"PATH=" + in.BinDir + ":/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + os.Getenv("HOME"),
		"INSTALL_SKIFF_BIN_DIR=" + in.BinDir,
		"INSTALL_SKIFF_NAME=" + in.Name,
		"INSTALL_SKIFF_INIT=none",
		"SKIFF_CONFIG_FILE=" + in.Config,
	}, extra...)
}

// Args are the server's settings: its own ports and data dir, and no
// ingress or metrics add-on (the node and its pods are what install.sh's
// tests and bench look at).
func (in *Installation) Args() []string {
	return []string{
		"--data-dir", in.DataDir, "--write-kubeconfig", in.Kubeconfig,
		"--https-listen-port", strconv.Itoa(in.port),
		"--kube-controller-manager-arg", "secure-port=" + strconv.Itoa(in.controllerPort),
		"--kube-scheduler-arg", "secure-port=" + strconv.Itoa(in.schedulerPort),
		"--disable", "ingress,metrics-server",
	}
}

// PidFile is the supervisor's pid file; PidFile()+".skiff" holds skiff's.
func (in *Installation) PidFile() string { return "/run/" + in.Name + ".pid" }

// LogFile is where the supervised skiff logs.
func (in *Installation) LogFile() string { return "/var/log/skiff/" + in.Name + ".log" }

// Uninstaller is the uninstall script install.sh writes.
func (in *Installation) Uninstaller() string {
	return filepath.Join(in.BinDir, in.Name+"-uninstall.sh")
}

// SkiffPid is the pid of the running skiff server.
func (in *Installation) SkiffPid() (int, error) {
	data, err := os.ReadFile(in.PidFile() + ".skiff")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

// Install runs install.sh with Env(extraEnv...) and args, and returns its
// stdout and stderr.
func (in *Installation) Install(args []string, extraEnv ...string) (string, string, error) {
	return RunScript(in.Env(extraEnv...), RepoFile("install.sh"), args...)
}

// Uninstall runs the uninstall script.
func (in *Installation) Uninstall() error {
	stdout, stderr, err := RunScript([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, in.Uninstaller())
	if err != nil {
		return fmt.Errorf("%s: %w\n%s\n%s", in.Uninstaller(), err, stdout, stderr)
	}
	return nil
}

// RunScript runs a shell script with exactly env, for at most six minutes,
// and returns its stdout and stderr.
func RunScript(env []string, script string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{script}, args...)...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s did not finish in 6 minutes: %w", script, ctx.Err())
	}
	return stdout.String(), stderr.String(), err
}

// CopyAndMark copies a binary and appends a few bytes: a new file (another
// sha256) that runs the same, as an upgrade would bring.
func CopyAndMark(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	data = fmt.Appendf(data, "\nskiff upgrade test %d\n", time.Now().UnixNano())
	return os.WriteFile(dst, data, 0o755)
}
