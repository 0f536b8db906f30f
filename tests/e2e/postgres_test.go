package e2e

import (
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

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

	endpoint := "postgres://postgres@127.0.0.1:" + strconv.Itoa(port) + "/kubernetes?sslmode=disable"
	s := startServer(t, "--datastore-endpoint", endpoint)
	checkObjectSurvivesRestart(t, s)
	checkTwoServersShareADatastore(t, s, endpoint)
}

// checkTwoServersShareADatastore joins a second server to s on the same
// datastore, kills s, and checks that the second's controllers take over:
// a Deployment made after the kill reaches its replicas (on simulated
// nodes of the second server).
func checkTwoServersShareADatastore(t *testing.T, s *harness.Server, endpoint string) {
	t.Helper()
	ctx := context.Background()
	token := readToken(t, filepath.Join(s.DataDir, "server", "token"))
	s2 := startServer(t, "--datastore-endpoint", endpoint, "--server", "https://127.0.0.1:"+strconv.Itoa(s.Port), "--token", token,
		"--simulated-nodes", "2")
	c2 := kubernetes.NewForConfigOrDie(mustRESTConfig(t, s2))
	lease, err := c2.CoordinationV1().Leases("kube-system").Get(ctx, "kube-controller-manager", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := *lease.Spec.HolderIdentity
	s.Kill()
	killed := time.Now()
	d := httpdDeployment("after-kill", 3, map[string]string{"app": "after-kill"}, "sleep", "3600")
	if _, err := c2.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := c2.AppsV1().Deployments("default").Get(ctx, "after-kill", metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas == 3, nil
	})
	if err != nil {
		t.Fatalf("a Deployment made after the first server was killed: %v", err)
	}
	lease, err = c2.CoordinationV1().Leases("kube-system").Get(ctx, "kube-controller-manager", metav1.GetOptions{})
	if err != nil || *lease.Spec.HolderIdentity == first {
		t.Errorf("the controller-manager's lease did not move from %s: %v", first, err)
	}
	t.Logf("the second server's controllers took over: a Deployment made after the kill was ready %s later", time.Since(killed).Round(100*time.Millisecond))
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
