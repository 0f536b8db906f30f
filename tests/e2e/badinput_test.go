package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/tests/harness"
)

// TestBadInput checks that each kind of bad input exits non-zero with one
// line saying what is wrong and where, and leaves an existing data dir
// exactly as it was.
func TestBadInput(t *testing.T) {
	s := startServer(t)
	mustStop(t, s)
	before := snapshot(t, s.DataDir)
	dir := t.TempDir()

	writeConfig := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	blocker := filepath.Join(dir, "a-file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)

	cases := []struct {
		name string
		args []string // replace the harness's flags of the same name
		want []string // all must appear in the error line
	}{
		{"unknown config key", []string{"--config", writeConfig("unknown.yaml", "cluster-cidr: 10.42.0.0/16\nbogus-key: 1\n")},
			[]string{`unknown key "bogus-key"`, "unknown.yaml:2"}},
		{"malformed config file", []string{"--config", writeConfig("malformed.yaml", "cluster-cidr: [10.42.0.0/16\n")},
			[]string{"malformed.yaml is not valid YAML"}},
		{"list for a single-value key", []string{"--config", writeConfig("list.yaml", "cluster-domain:\n  - a.local\n  - b.local\n")},
			[]string{`key "cluster-domain" takes one value`, "list.yaml:1"}},
		{"missing config file named on the command line", []string{"--config", filepath.Join(dir, "absent.yaml")},
			[]string{"absent.yaml: no such file or directory"}},
		{"invalid cluster CIDR flag", []string{"--cluster-cidr", "10.42.0.0/33"},
			[]string{`invalid cluster-cidr "10.42.0.0/33"`, "from --cluster-cidr"}},
		{"invalid service CIDR in config file", []string{"--config", writeConfig("cidr.yaml", "\nservice-cidr: 10.43.0.1/16\n")},
			[]string{`invalid service-cidr "10.43.0.1/16"`, "host bits", "cidr.yaml:2"}},
		{"overlapping CIDRs", []string{"--service-cidr", "10.42.128.0/20"},
			[]string{"overlaps the cluster CIDR"}},
		{"port in use", []string{"--https-listen-port", busyPort},
			[]string{"port " + busyPort + " for the apiserver is already in use", "--https-listen-port"}},
		{"profiles on a public address", []string{"--pprof-address", "0.0.0.0:6060"},
			[]string{"invalid pprof-address", "loopback"}},
		{"profiles on a port in use", []string{"--pprof-address", "127.0.0.1:" + busyPort},
			[]string{"--pprof-address 127.0.0.1:" + busyPort, "choose a free loopback port"}},
		{"data dir under a file", []string{"--data-dir", filepath.Join(blocker, "data")},
			[]string{"data dir " + filepath.Join(blocker, "data") + " is not usable", "not a directory"}},
		{"extra argument without a value", []string{"--kube-apiserver-arg", "audit-log-maxage"},
			[]string{`invalid kube-apiserver-arg "audit-log-maxage"`, "expected flag=value"}},
		{"unknown upstream flag", []string{"--kube-scheduler-arg", "no-such-flag=1"},
			[]string{"kube-scheduler arguments", "no-such-flag"}},
		{"unknown datastore", []string{"--datastore-endpoint", "cassandra://db:9042"},
			[]string{`unknown datastore scheme "cassandra"`, "from --datastore-endpoint"}},
		{"snapshot dir under a file", []string{"--snapshot-dir", filepath.Join(blocker, "snapshots")},
			[]string{"snapshot dir " + filepath.Join(blocker, "snapshots") + " is not usable", "--snapshot-dir"}},
		{"snapshot schedule that is not cron", []string{"--snapshot-schedule-cron", "twice a day"},
			[]string{`invalid snapshot-schedule-cron "twice a day"`, "not a cron schedule"}},
		{"cluster-init with an external datastore", []string{"--cluster-init", "--datastore-endpoint", "postgres://db/k8s"},
			[]string{"invalid cluster-init", "cannot be combined with --datastore-endpoint"}},
		{"joining a server without its token", []string{"--server", "https://192.0.2.10:6443"},
			[]string{"invalid token", "--server needs that cluster's server token"}},
		{"kubeconfig mode not octal", []string{"--write-kubeconfig-mode", "0999"},
			[]string{`invalid write-kubeconfig-mode "0999"`}},
		{"unknown flag", []string{"--no-such-flag"},
			[]string{"unknown flag: --no-such-flag"}},
		{"unknown kubelet flag", []string{"--disable-agent=false", "--kubelet-arg", "no-such-flag=1"},
			[]string{"kubelet arguments", "no-such-flag", "--kubelet-arg"}},
		{"unknown add-on", []string{"--disable", "traefik"},
			[]string{`invalid disable "traefik"`, "not an add-on", "coredns", "from --disable"}},
		{"bad node IP", []string{"--disable-agent=false", "--node-ip", "10.0.0"},
			[]string{`invalid node-ip "10.0.0"`, "from --node-ip"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			line := runExpectingFailure(t, s, tc.args)
			for _, want := range tc.want {
				if !strings.Contains(line, want) {
					t.Errorf("error line %q lacks %q", line, want)
				}
			}
		})
	}
	if os.Geteuid() == 0 {
		t.Run("read-only data dir", func(t *testing.T) {
			if out, err := exec.Command("mount", "--bind", s.DataDir, s.DataDir).CombinedOutput(); err != nil {
				t.Skipf("cannot bind-mount here: %v %s", err, out)
			}
			defer exec.Command("umount", s.DataDir).Run()
			if out, err := exec.Command("mount", "-o", "remount,bind,ro", s.DataDir).CombinedOutput(); err != nil {
				t.Fatalf("remount read-only: %v %s", err, out)
			}
			line := runExpectingFailure(t, s, nil)
			if !strings.Contains(line, "is not writable") || !strings.Contains(line, "read-only file system") {
				t.Errorf("error line %q does not say the data dir is read-only", line)
			}
		})
	}
	if after := snapshot(t, s.DataDir); after != before {
		t.Errorf("bad input changed the data dir:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// runExpectingFailure runs the server with override flags replacing the
// harness's ones, expects a non-zero exit within a minute, and returns the
// last line of its output, which must be the error.
func runExpectingFailure(t *testing.T, s *harness.Server, override []string) string {
	t.Helper()
	args := withOverrides(s.CommandLine(), override)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, s.Bin, args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("skiff %v still running after a minute:\n%s", args, tail(string(out), 30))
	}
	if err == nil {
		t.Fatalf("skiff %v exited 0:\n%s", args, tail(string(out), 30))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "skiff: ") {
		t.Fatalf("last line of output is not skiff's error:\n%s", tail(string(out), 30))
	}
	return last
}

// withOverrides replaces `--flag value` pairs in args by those in override
// (a flag given with `=` or alone is appended).
func withOverrides(args, override []string) []string {
	out := append([]string(nil), args...)
	for i := 0; i < len(override); i++ {
		flag := override[i]
		if strings.Contains(flag, "=") || i+1 >= len(override) || strings.HasPrefix(override[i+1], "--") {
			out = append(out, flag)
			continue
		}
		value := override[i+1]
		i++
		replaced := false
		for j := 0; j+1 < len(out); j++ {
			if out[j] == flag {
				out[j+1], replaced = value, true
			}
		}
		if !replaced {
			out = append(out, flag, value)
		}
	}
	return out
}

// snapshot describes every file under dir: path, mode, size, modification
// time and content hash.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		sum := ""
		if d.Type().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sum = fmt.Sprintf("%x", sha256.Sum256(data))
		}
		fmt.Fprintf(&b, "%s %v %d %s %s\n", strings.TrimPrefix(path, dir), info.Mode(), info.Size(), info.ModTime().Format(time.RFC3339Nano), sum)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
