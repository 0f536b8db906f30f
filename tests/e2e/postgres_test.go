package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/tests/harness"
)

// TestPostgres runs the server on a real PostgreSQL (Debian's, started for
// the test as its own user) through kine, and checks that objects survive a
// restart there.
func TestPostgres(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run PostgreSQL as the postgres user")
	}
	bindir, err := postgresBinDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// PostgreSQL runs as its own user: let it reach and own its directory.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pgdata := filepath.Join(dir, "pg")
	if out, err := exec.Command("install", "-d", "-o", "postgres", "-m", "0700", pgdata).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if out, err := exec.Command("runuser", "-u", "postgres", "--", filepath.Join(bindir, "initdb"), "-D", pgdata, "-A", "trust", "-U", "postgres").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	pg := exec.Command("runuser", "-u", "postgres", "--", filepath.Join(bindir, "postgres"),
		"-D", pgdata, "-k", pgdata, "-h", "127.0.0.1", "-p", strconv.Itoa(port))
	log, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	pg.Stdout, pg.Stderr = log, log
	pg.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// SIGINT is PostgreSQL's fast shutdown; runuser passes it on.
		_ = pg.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = pg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = exec.Command("pkill", "-KILL", "-f", "postgres -D "+pgdata).Run()
			<-done
		}
	})
	waitForPort(t, "127.0.0.1:"+strconv.Itoa(port))

	s := startServer(t, "--datastore-endpoint", "postgres://postgres@127.0.0.1:"+strconv.Itoa(port)+"/kubernetes?sslmode=disable")
	checkObjectSurvivesRestart(t, s)
}

func postgresBinDir() (string, error) {
	if initdb, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(initdb); err == nil {
			return filepath.Dir(real), nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", os.ErrNotExist
	}
	return filepath.Dir(matches[len(matches)-1]), nil
}

func waitForPort(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s after 30s", addr)
}
