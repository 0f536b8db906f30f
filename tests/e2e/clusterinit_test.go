package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-dev/skiff/tests/harness"
)

// TestClusterInitMovesSQLite starts a server on SQLite, fills it, and
// restarts it with --cluster-init: every object is then in embedded etcd
// with its UID, the SQLite file is kept aside, and the way back (started
// again without --cluster-init) is refused with one line.
func TestClusterInitMovesSQLite(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	rc := mustRESTConfig(t, s)
	c := kubernetes.NewForConfigOrDie(rc)
	createObjects(t, ctx, rc, c)
	checkSQLiteJoinRefused(t, s)
	before := allUIDs(t, ctx, rc)
	mustStop(t, s)

	sqliteArgs := s.Args
	s.Args = append(append([]string{}, sqliteArgs...), "--cluster-init")
	for _, flag := range []string{"--etcd-client-port", "--etcd-peer-port", "--etcd-metrics-port"} {
		port, err := harness.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		s.Args = append(s.Args, flag, strconv.Itoa(port))
	}
	etcdClientPort := s.Args[len(s.Args)-5] // after --etcd-client-port
	mustStart(t, s)
	after := allUIDs(t, ctx, mustRESTConfig(t, s))
	missing := 0
	for key, uid := range before {
		if after[key] != uid {
			missing++
			t.Errorf("%s: uid %q after --cluster-init, was %q", key, after[key], uid)
		}
	}
	t.Logf("%d objects moved into embedded etcd, %d with another UID or missing", len(before), missing)
	if _, err := os.Stat(filepath.Join(s.DataDir, "server", "db", "state.db.migrated")); err != nil {
		t.Errorf("the SQLite file was not kept aside: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.DataDir, "server", "db", "etcd", "member")); err != nil {
		t.Errorf("no etcd data: %v", err)
	}
	checkEtcdSnapshotRestore(t, s, etcdClientPort, before)
	mustStop(t, s)

	// Back to SQLite: refused, nothing changed.
	s.Args = sqliteArgs
	snap := snapshot(t, s.DataDir)
	out := runExpectingFailure(t, s, []string{})
	if !strings.Contains(out, "--cluster-init") || !strings.Contains(out, "etcd") {
		t.Errorf("a server on etcd data started without --cluster-init: %q", out)
	}
	if snapshot(t, s.DataDir) != snap {
		t.Error("the refused start changed the data dir")
	}
}

// allUIDs lists every object of every listable resource (but events, which
// come and go, and the apiservers' identity leases, made anew at every
// start) as resource/namespace/name → uid.
func allUIDs(t *testing.T, ctx context.Context, rc *rest.Config) map[string]string {
	t.Helper()
	rc = rest.CopyConfig(rc)
	rc.WarningHandler = rest.NoWarnings{} // deprecated kinds are listed on purpose
	lists, err := discovery.NewDiscoveryClientForConfigOrDie(rc).ServerPreferredResources()
	if err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(rc)
	uids := map[string]string{}
	for _, list := range lists {
		gv, _ := schema.ParseGroupVersion(list.GroupVersion)
		for _, r := range list.APIResources {
			if r.Name == "events" || strings.Contains(r.Name, "/") || !strings.Contains(strings.Join(r.Verbs, ","), "list") {
				continue
			}
			items, err := dyn.Resource(gv.WithResource(r.Name)).List(ctx, metav1.ListOptions{})
			if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
				continue
			}
			if err != nil {
				t.Fatalf("listing %s: %v", r.Name, err)
			}
			for _, o := range items.Items {
				if _, ok := o.GetLabels()["apiserver.kubernetes.io/identity"]; ok {
					continue // each apiserver deletes and makes its identity lease at start
				}
				uids[fmt.Sprintf("%s/%s/%s", r.Name, o.GetNamespace(), o.GetName())] = string(o.GetUID())
			}
		}
	}
	return uids
}

// checkSQLiteJoinRefused: a server asking to join a server on SQLite is
// refused with one line, and leaves no data dir.
func checkSQLiteJoinRefused(t *testing.T, s *harness.Server) {
	t.Helper()
	dataDir := filepath.Join(t.TempDir(), "data")
	token := readToken(t, filepath.Join(s.DataDir, "server", "token"))
	args := []string{"server", "--config", os.DevNull, "--data-dir", dataDir, "--disable-agent", "--https-listen-port", "0",
		"--server", "https://127.0.0.1:" + strconv.Itoa(s.Port), "--token", token}
	for _, flag := range []string{"--etcd-client-port", "--etcd-peer-port"} {
		port, err := harness.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, flag, strconv.Itoa(port))
	}
	out, err := exec.Command(s.Bin, args...).CombinedOutput()
	last := lastLine(string(out))
	if err == nil || !strings.Contains(last, "SQLite") || !strings.Contains(last, "--cluster-init") {
		t.Errorf("joining a server on SQLite: %v, last line %q", err, last)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("a refused server left its data dir: %v", err)
	}
	t.Logf("joining a SQLite server: %s", last)
}

// checkEtcdSnapshotRestore saves a snapshot of the running member, writes
// after it, and restores it with --cluster-reset-restore-path: the objects
// of the snapshot are back with their UIDs, the later write is gone, and a
// restart with the flag still given does not restore again.
func checkEtcdSnapshotRestore(t *testing.T, s *harness.Server, clientPort string, before map[string]string) {
	t.Helper()
	ctx := context.Background()
	out := skiffCommand(t, s, true, "datastore", "snapshot", "save", "--etcd-client-port", clientPort)
	f := strings.Fields(out)
	if len(f) < 2 || !strings.HasSuffix(f[1], ".etcd") {
		t.Fatalf("etcd snapshot: %q", out)
	}
	saved := f[1]
	c := kubernetes.NewForConfigOrDie(mustRESTConfig(t, s))
	later := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after-the-snapshot"}}
	if _, err := c.CoreV1().ConfigMaps("default").Create(ctx, later, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mustStop(t, s)
	args := s.Args
	s.Args = append(append([]string{}, args...), "--cluster-reset-restore-path", saved)
	mustStart(t, s)
	c = kubernetes.NewForConfigOrDie(mustRESTConfig(t, s))
	if _, err := c.CoreV1().ConfigMaps("default").Get(ctx, later.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a ConfigMap written after the snapshot, after the restore: %v", err)
	}
	after := allUIDs(t, ctx, mustRESTConfig(t, s))
	for key, uid := range before {
		if after[key] != uid {
			t.Errorf("%s: uid %q after the etcd restore, was %q", key, after[key], uid)
		}
	}
	// Written after the restore: a second start with the flag keeps it.
	if _, err := c.CoreV1().ConfigMaps("default").Create(ctx, later, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mustStop(t, s)
	mustStart(t, s)
	c = kubernetes.NewForConfigOrDie(mustRESTConfig(t, s))
	if _, err := c.CoreV1().ConfigMaps("default").Get(ctx, later.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("a second start with --cluster-reset-restore-path restored again: %v", err)
	}
	s.Args = args
	t.Logf("etcd snapshot %s restored: %d objects back", filepath.Base(saved), len(before))
}
