package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/tests/harness"
)

// TestInstallBadInput gives install.sh bad input: each run must exit
// non-zero with one line saying what is wrong, and change nothing.
func TestInstallBadInput(t *testing.T) {
	l, bin := newRootInstallation(t)
	release := filepath.Join(l.Root, "release")
	must(t, os.MkdirAll(release, 0o755))
	// A "release" whose checksum file does not match its binary.
	must(t, os.WriteFile(filepath.Join(release, "skiff-"+runtime.GOARCH), []byte("not skiff"), 0o755))
	must(t, os.WriteFile(filepath.Join(release, "sha256sum.txt"), []byte(strings.Repeat("0", 64)+"  skiff-"+runtime.GOARCH+"\n"), 0o644))
	// A binary for another architecture: this one's ELF header with
	// another machine field.
	other, otherArch := wrongArchBinary(t, bin, l.Root)

	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"unknown value", []string{"INSTALL_SKIFF_SYMLINK=sometimes", "INSTALL_SKIFF_BINARY=" + bin}, nil, "INSTALL_SKIFF_SYMLINK=sometimes: must be skip or force"},
		{"unknown variable", []string{"INSTALL_SKIFF_SKIPSTART=true", "INSTALL_SKIFF_BINARY=" + bin}, nil, "unknown variable INSTALL_SKIFF_SKIPSTART"},
		{"missing binary", []string{"INSTALL_SKIFF_BINARY=" + filepath.Join(l.Root, "nope")}, nil, "nope: no such file"},
		{"checksum mismatch", []string{"INSTALL_SKIFF_BINARY=" + filepath.Join(release, "skiff-"+runtime.GOARCH)}, nil, "does not match " + filepath.Join(release, "sha256sum.txt")},
		{"wrong architecture", []string{"INSTALL_SKIFF_BINARY=" + other}, nil, "is built for " + otherArch + ", but this machine is " + runtime.GOARCH},
		{"bad server flag", []string{"INSTALL_SKIFF_BINARY=" + bin}, []string{"--cluster-cidr", "10.42.0.1/16"}, "did you mean 10.42.0.0/16"},
		{"relative bin dir", []string{"INSTALL_SKIFF_BINARY=" + bin, "INSTALL_SKIFF_BIN_DIR=bin"}, nil, "INSTALL_SKIFF_BIN_DIR=bin: must be an absolute path"},
		{"agent without a token", []string{"INSTALL_SKIFF_BINARY=" + bin, "SKIFF_URL=https://192.0.2.1:6443"}, nil, "SKIFF_URL is set but SKIFF_TOKEN is not"},
		{"agent with a bad server URL", []string{"INSTALL_SKIFF_BINARY=" + bin, "SKIFF_URL=192.0.2.1:6443", "SKIFF_TOKEN=t"}, nil, "not a URL such as https://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkRefused(t, l, tc.env, tc.args, tc.want)
		})
	}

	// A hand-written config file is never overwritten.
	must(t, os.MkdirAll(l.EtcDir, 0o755))
	must(t, os.WriteFile(l.Config, []byte("cluster-domain: edge.local\n"), 0o644))
	checkRefused(t, l, []string{"INSTALL_SKIFF_BINARY=" + bin}, []string{"--tls-san", "a.example"}, "was not written by install.sh; it is kept")
}

func checkRefused(t *testing.T, l *harness.Installation, env, args []string, want string) {
	t.Helper()
	before := snapshot(t, l.Root) + hostFilesOf(l)
	stdout, stderr, err := l.Install(args, env...)
	if err == nil {
		t.Fatalf("install.sh exited 0:\n%s\n%s", stdout, stderr)
	}
	errLines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(errLines) != 1 || !strings.HasPrefix(errLines[0], "[ERROR] ") || !strings.Contains(errLines[0], want) {
		t.Errorf("want one [ERROR] line with %q, got:\n%s", want, stderr)
	}
	if after := snapshot(t, l.Root) + hostFilesOf(l); after != before {
		t.Errorf("refused install.sh changed files:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	t.Logf("refused: %s", strings.TrimSpace(stderr))
}

// hostFilesOf lists which of the files install.sh writes outside the layout
// exist.
func hostFilesOf(l *harness.Installation) string {
	var b strings.Builder
	for _, p := range []string{l.PidFile(), l.LogFile(), "/etc/skiff/config.yaml", "/usr/local/bin/skiff", "/etc/systemd/system/" + l.Name + ".service"} {
		if _, err := os.Lstat(p); err == nil {
			b.WriteString(p + "\n")
		}
	}
	return b.String()
}

// wrongArchBinary writes the first bytes of bin with another ELF machine:
// enough for install.sh, which reads the header without running it.
func wrongArchBinary(t *testing.T, bin, dir string) (string, string) {
	t.Helper()
	f, err := os.Open(bin)
	must(t, err)
	defer f.Close()
	header := make([]byte, 64)
	_, err = f.Read(header)
	must(t, err)
	arch, machine := "arm64", byte(0xb7)
	if runtime.GOARCH == "arm64" {
		arch, machine = "amd64", 0x3e
	}
	header[18], header[19] = machine, 0
	path := filepath.Join(dir, "skiff-"+arch)
	must(t, os.WriteFile(path, header, 0o755))
	return path, arch
}

// TestInstallServiceFiles checks the systemd unit and the openrc script
// install.sh writes (systemd-analyze verifies the unit; no init system runs
// here), the files beside them, and that the generated uninstall script
// removes them again.
func TestInstallServiceFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("install.sh needs root")
	}
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	for _, init := range []string{"systemd", "openrc", "none", "systemd-agent"} {
		t.Run(init, func(t *testing.T) {
			command, extraEnv := "server", []string{}
			if init == "systemd-agent" {
				// SKIFF_URL makes it an agent, which `skiff config agent`
				// checks; the token stays in the environment file.
				init, command = "systemd", "agent"
				extraEnv = []string{"SKIFF_URL=https://192.0.2.9:6443", "SKIFF_TOKEN=node:secret"}
			}
			l := newInstallation(t)
			serviceDir := filepath.Join(l.Root, init)
			// A crictl of the user's own is left alone (no
			// INSTALL_SKIFF_SYMLINK), through install and uninstall.
			userCrictl := filepath.Join(l.BinDir, "crictl")
			must(t, os.MkdirAll(l.BinDir, 0o755))
			must(t, os.WriteFile(userCrictl, []byte("#!/bin/sh\necho mine\n"), 0o755))
			args := []string{"--data-dir", l.DataDir, "--tls-san", "a.example"}
			if command == "agent" {
				args = []string{"--data-dir", l.DataDir, "--node-label", "zone=shed"}
			}
			// The service without an init system is installed from the
			// release binary, which install.sh unpacks: what it installs
			// is the program itself.
			src := bin
			if init == "none" {
				src = releaseBinary(t, runtime.GOARCH)
			}
			stdout, stderr, err := l.Install(args, append(extraEnv,
				"INSTALL_SKIFF_BINARY="+src, "INSTALL_SKIFF_INIT="+init,
				"INSTALL_SKIFF_SYSTEMD_DIR="+serviceDir, "INSTALL_SKIFF_OPENRC_DIR="+serviceDir,
				"INSTALL_SKIFF_SKIP_START=true", "INSTALL_SKIFF_SKIP_ENABLE=true",
				"SKIFF_CLUSTER_DOMAIN=edge.local")...)
			if err != nil {
				t.Fatalf("install.sh: %v\n%s", err, stderr)
			}
			envFile := filepath.Join(l.EtcDir, l.Name+".env")
			if info, err := os.Stat(envFile); err != nil || info.Mode().Perm() != 0o600 {
				t.Errorf("environment file: %v %v", info, err)
			}
			if env := readFile(t, envFile); !strings.Contains(env, "\nSKIFF_CLUSTER_DOMAIN='edge.local'\n") || !strings.Contains(env, "SKIFF_CONFIG_FILE='"+l.Config+"'") {
				t.Errorf("environment file:\n%s", env)
			}
			wantConfig := `tls-san:` + "\n" + `  - "a.example"`
			if command == "agent" {
				wantConfig = `node-label:` + "\n" + `  - "zone=shed"`
				if env := readFile(t, envFile); !strings.Contains(env, "SKIFF_URL='https://192.0.2.9:6443'") || !strings.Contains(env, "SKIFF_TOKEN='node:secret'") {
					t.Errorf("an agent's environment file lacks its server and token:\n%s", env)
				}
			}
			if config := readFile(t, l.Config); !strings.Contains(config, wantConfig) {
				t.Errorf("config file:\n%s", config)
			}
			switch init {
			case "systemd":
				checkSystemdUnit(t, l, filepath.Join(serviceDir, l.Name+".service"), envFile, command)
			case "openrc":
				checkOpenRCScript(t, l, filepath.Join(serviceDir, l.Name), envFile)
			case "none":
				shellcheck(t, filepath.Join(l.BinDir, l.Name+"-service.sh"))
				if !strings.Contains(stdout, "Unpacked the skiff program from "+src) {
					t.Errorf("install.sh did not say it unpacked the release binary:\n%s", stdout)
				}
			}
			if got, want := mustSum(t, filepath.Join(l.BinDir, "skiff")), mustSum(t, bin); got != want {
				t.Errorf("installed skiff from %s: sha256 %s, want the program's %s", src, got, want)
			}
			shellcheck(t, l.Uninstaller())
			if err := l.Uninstall(); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, userCrictl); got != "#!/bin/sh\necho mine\n" {
				t.Errorf("the user's crictl was replaced: %q", got)
			}
			must(t, os.Remove(userCrictl))
			for _, dir := range []string{l.BinDir, serviceDir} {
				if entries, _ := os.ReadDir(dir); len(entries) != 0 {
					t.Errorf("left in %s after uninstall: %v", dir, entries)
				}
			}
			if _, err := os.Stat(l.EtcDir); err == nil {
				t.Errorf("left after uninstall: %s", l.EtcDir)
			}
		})
	}
}

func checkSystemdUnit(t *testing.T, l *harness.Installation, unit, envFile, command string) {
	t.Helper()
	text := readFile(t, unit)
	for _, want := range []string{
		"Type=notify", "KillMode=process", "Delegate=yes", "Restart=on-failure", "EnvironmentFile=-" + envFile,
		`ExecStart="` + filepath.Join(l.BinDir, "skiff") + `" ` + command + ` --config "` + l.Config + `"`, "WantedBy=multi-user.target",
	} {
		if !strings.Contains(text, "\n"+want+"\n") {
			t.Errorf("unit lacks the line %s:\n%s", want, text)
		}
	}
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze is missing: make test installs Debian's systemd package as root (scripts/install-deps.sh)")
	}
	out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
	}
}

func checkOpenRCScript(t *testing.T, l *harness.Installation, script, envFile string) {
	t.Helper()
	text := readFile(t, script)
	for _, want := range []string{
		"#!/sbin/openrc-run", "supervisor=supervise-daemon", `command="` + filepath.Join(l.BinDir, "skiff") + `"`,
		`command_args="server --config ` + l.Config + `"`, `pidfile="` + l.PidFile() + `"`, `output_log="` + l.LogFile() + `"`,
		"respawn_delay=5", `if [ -f "` + envFile + `" ]; then . "` + envFile + `"; fi`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("openrc script lacks %s:\n%s", want, text)
		}
	}
	// openrc-run reads the variables it sets; shellcheck cannot know.
	shellcheck(t, script, "--exclude=SC2034")
}

func shellcheck(t *testing.T, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Fatal("shellcheck is missing: make test installs it as root (scripts/install-deps.sh)")
	}
	if out, err := exec.Command("shellcheck", append([]string{"--shell=sh"}, args...)...).CombinedOutput(); err != nil {
		t.Errorf("shellcheck %v: %v\n%s", args, err, out)
	}
}

// TestScriptsAreShellcheckClean: install.sh and the scripts it installs or
// the build runs are POSIX sh that shellcheck finds nothing in.
func TestScriptsAreShellcheckClean(t *testing.T) {
	scripts, err := filepath.Glob(harness.RepoFile("scripts/*.sh"))
	must(t, err)
	shellcheck(t, append(scripts, harness.RepoFile("install.sh"))...)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	return string(data)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestInstallReportsAFailingStart installs a server whose port is taken:
// skiff exits at start, and install.sh must say so with skiff's own log
// lines and a non-zero exit, not wait out its timeout.
func TestInstallReportsAFailingStart(t *testing.T) {
	l, bin := newRootInstallation(t)
	taken, err := net.Listen("tcp", "0.0.0.0:0")
	must(t, err)
	defer taken.Close()
	port := strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)
	t.Cleanup(func() {
		if err := l.Uninstall(); err != nil {
			t.Error(err)
		}
	})
	start := time.Now()
	stdout, stderr, err := l.Install([]string{"--data-dir", l.DataDir, "--write-kubeconfig", l.Kubeconfig, "--disable-agent", "--https-listen-port", port},
		"INSTALL_SKIFF_BINARY="+bin, "INSTALL_SKIFF_READY_TIMEOUT=120")
	if err == nil {
		t.Fatalf("install.sh exited 0 with skiff's port taken:\n%s\n%s", stdout, stderr)
	}
	if !strings.Contains(stderr, "the last lines of skiff's log") || !strings.Contains(stderr, port) ||
		!strings.Contains(stderr, "[ERROR] skiff server exited while starting") {
		t.Errorf("install.sh did not show why skiff failed:\n%s", stderr)
	}
	t.Logf("install.sh said, after %s:\n%s", time.Since(start).Round(100*time.Millisecond), stderr)
	if took := time.Since(start); took > time.Minute {
		t.Errorf("install.sh took %s to report a skiff that exits at start", took)
	}
}
