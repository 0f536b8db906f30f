package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/tests/harness"
)

// TestPostgres runs the server on a real PostgreSQL (Debian's, started for
// the test as its own user) through kine, and checks that objects survive a
// restart there.
func TestPostgres(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run PostgreSQL as the postgres user")
	}
	dir := t.TempDir()
	// PostgreSQL runs as its own user: let it reach its directory.
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pg, err := harness.StartPostgres(filepath.Join(dir, "pg"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pg.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			if out, err := os.ReadFile(pg.LogPath); err == nil {
				t.Logf("%s:\n%s", pg.LogPath, tail(string(out), 50))
			}
		}
	})
	endpoint := pg.Endpoint("kubernetes")
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
	// s restarted a moment ago, so its controller-manager may still wait
	// for the lease of its previous run to expire; a second server started
	// then could win it, and there would be nothing to take over.
	c := kubernetes.NewForConfigOrDie(mustRESTConfig(t, s))
	var last string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if exited, err := s.Exited(); exited {
			return false, fmt.Errorf("the server exited (%v); see its log below", err)
		}
		lease, err := c.CoordinationV1().Leases("kube-system").Get(ctx, "kube-controller-manager", metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = describeLease(lease)
		return lease.Spec.AcquireTime != nil && lease.Spec.AcquireTime.After(s.StartedAt()), nil
	})
	if err != nil {
		t.Fatalf("the first server's controller-manager did not take the lease after its restart at %s: %v; the lease last: %s",
			s.StartedAt().Format(time.StampMicro), err, last)
	}
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
	lease, leaseErr := c2.CoordinationV1().Leases("kube-system").Get(ctx, "kube-controller-manager", metav1.GetOptions{})
	if err != nil {
		state := fmt.Sprint(leaseErr)
		if leaseErr == nil {
			state = describeLease(lease)
		}
		t.Fatalf("a Deployment made after the first server was killed: %v; the controller-manager's lease: %s", err, state)
	}
	if leaseErr != nil {
		t.Fatal(leaseErr)
	}
	if ptr.Deref(lease.Spec.HolderIdentity, "") == first {
		t.Errorf("the controller-manager's lease did not move from %s: %s", first, describeLease(lease))
	}
	t.Logf("the second server's controllers took over: a Deployment made after the kill was ready %s later", time.Since(killed).Round(100*time.Millisecond))
}

func describeLease(l *coordinationv1.Lease) string {
	stamp := func(t *metav1.MicroTime) string {
		if t == nil {
			return "none"
		}
		return t.Format(time.StampMicro)
	}
	return fmt.Sprintf("holder %q, acquired %s, renewed %s", ptr.Deref(l.Spec.HolderIdentity, ""),
		stamp(l.Spec.AcquireTime), stamp(l.Spec.RenewTime))
}
