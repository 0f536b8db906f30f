package e2e

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

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
	postgres, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("PostgreSQL's user: %v", err)
	}
	uid, _ := strconv.ParseUint(postgres.Uid, 10, 32)
	gid, _ := strconv.ParseUint(postgres.Gid, 10, 32)
	pgdata := filepath.Join(dir, "pg")
	if err := os.Mkdir(pgdata, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(pgdata, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	asPostgres := func(cmd *exec.Cmd) *exec.Cmd {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Dir = pgdata
		return cmd
	}
	if out, err := asPostgres(exec.Command(filepath.Join(bindir, "initdb"), "-D", pgdata, "-A", "trust", "-U", "postgres")).CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	pg := asPostgres(exec.Command(filepath.Join(bindir, "postgres"),
		"-D", pgdata, "-k", pgdata, "-h", "127.0.0.1", "-p", strconv.Itoa(port)))
	// SIGINT is PostgreSQL's fast shutdown.
	startDaemon(t, pg, filepath.Join(dir, "postgres.log"), syscall.SIGINT)
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
