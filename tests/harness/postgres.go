package harness

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Postgres is a PostgreSQL server (Debian's) of a test's own, run as the
// postgres user on a free port of loopback, its log beside its directory.
type Postgres struct {
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	port    int
}

// StartPostgres initializes a database cluster in dir (which must not
// exist; its parent must be reachable by the postgres user) and starts
// PostgreSQL on it.
func StartPostgres(dir string) (*Postgres, error) {
	bindir, err := postgresBinDir()
	if err != nil {
		return nil, fmt.Errorf("no PostgreSQL installed (initdb): %w", err)
	}
	account, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL's user: %w", err)
	}
	uid, _ := strconv.ParseUint(account.Uid, 10, 32)
	gid, _ := strconv.ParseUint(account.Gid, 10, 32)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chown(dir, int(uid), int(gid)); err != nil {
		return nil, err
	}
	asPostgres := func(cmd *exec.Cmd) *exec.Cmd {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, Pdeathsig: syscall.SIGKILL}
		cmd.Dir = dir
		return cmd
	}
	if out, err := asPostgres(exec.Command(filepath.Join(bindir, "initdb"), "-D", dir, "-A", "trust", "-U", "postgres")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	pg := &Postgres{LogPath: dir + ".log", done: make(chan struct{}), port: port}
	log, err := os.Create(pg.LogPath)
	if err != nil {
		return nil, err
	}
	pg.cmd = asPostgres(exec.Command(filepath.Join(bindir, "postgres"), "-D", dir, "-k", dir, "-h", "127.0.0.1", "-p", strconv.Itoa(port)))
	pg.cmd.Stdout, pg.cmd.Stderr = log, log
	if err := pg.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	go func() { _ = pg.cmd.Wait(); log.Close(); close(pg.done) }()
	if err := WaitForPort("127.0.0.1:"+strconv.Itoa(port), 30*time.Second); err != nil {
		return nil, errors.Join(err, pg.Stop())
	}
	return pg, nil
}

// Endpoint is the --datastore-endpoint of database name on it.
func (pg *Postgres) Endpoint(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", pg.port, name)
}

// Stop shuts PostgreSQL down fast (SIGINT) and waits for it; after 20 s
// it is killed.
func (pg *Postgres) Stop() error {
	_ = pg.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-pg.done:
		return nil
	case <-time.After(20 * time.Second):
		_ = pg.cmd.Process.Kill()
		<-pg.done
		return errors.New("PostgreSQL did not stop within 20s of SIGINT; killed")
	}
}

// postgresBinDir is where initdb and postgres are: on the PATH, or
// Debian's newest /usr/lib/postgresql/<version>/bin.
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

// WaitForPort waits until something accepts connections at addr.
func WaitForPort(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s after %s", addr, timeout)
}
