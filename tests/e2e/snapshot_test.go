package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-dev/skiff/pkg/datastore"
	"github.com/skiff-dev/skiff/tests/harness"
)

// TestSnapshots: scheduled snapshots appear and retention prunes them; a
// snapshot saved while the API is written to, restored into the stopped
// server after its datastore is wiped, brings every object back with its
// UID; a restore while the server runs, of a missing or of a corrupt
// snapshot, is refused with one line and changes nothing.
func TestSnapshots(t *testing.T) {
	snaps := filepath.Join(t.TempDir(), "snapshots")
	s := startServer(t, "--snapshot-schedule-cron", "@every 2s", "--snapshot-retention", "2", "--snapshot-dir", snaps)
	ctx := context.Background()
	rc := mustRESTConfig(t, s)
	createObjects(t, ctx, rc, kubernetes.NewForConfigOrDie(rc))
	before := allUIDs(t, ctx, rc)

	rc.QPS, rc.Burst = 100, 200
	w := harness.StartWriter(kubernetes.NewForConfigOrDie(rc), "during-save")
	time.Sleep(500 * time.Millisecond)
	out := skiffCommand(t, s, true, "datastore", "snapshot", "save", "--snapshot-dir", snaps)
	w.Stop()
	saved := strings.Fields(out)[1]
	t.Logf("%s", strings.TrimSpace(out))

	// The schedule keeps two.
	var scheduled []datastore.Snapshot
	err := wait.PollUntilContextTimeout(ctx, time.Second, 30*time.Second, false, func(context.Context) (bool, error) {
		all, err := datastore.ListSnapshots(snaps)
		scheduled = scheduled[:0]
		for _, sn := range all {
			if strings.HasPrefix(filepath.Base(sn.Path), "scheduled-") {
				scheduled = append(scheduled, sn)
			}
		}
		return err == nil && len(scheduled) == 2 && time.Since(scheduled[0].Created) < 3*time.Second, nil
	})
	if err != nil {
		t.Errorf("scheduled snapshots every 2s, keeping 2: %d (%v)", len(scheduled), err)
	}
	if out := skiffCommand(t, s, false, "datastore", "snapshot", "restore", saved, "--snapshot-dir", snaps); !strings.Contains(out, "stop it first") {
		t.Errorf("restore while the server runs: %q", lastLine(out))
	}
	mustStop(t, s)

	dbDir := filepath.Join(s.DataDir, "server", "db")
	state := snapshot(t, dbDir)
	corrupt := filepath.Join(t.TempDir(), "corrupt.sqlite")
	if err := os.WriteFile(corrupt, []byte(strings.Repeat("not a database ", 500)), 0o600); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		filepath.Join(snaps, "absent.sqlite"): "no such file",
		corrupt:                               "not an intact SQLite database",
		saved + ".txt":                        "not a snapshot",
	} {
		if out := lastLine(skiffCommand(t, s, false, "etcd-snapshot", "restore", file)); !strings.Contains(out, want) || !strings.Contains(out, "nothing was changed") {
			t.Errorf("restore %s: %q, want %q", filepath.Base(file), out, want)
		}
	}
	if snapshot(t, dbDir) != state {
		t.Error("a refused restore changed the datastore")
	}

	// Wiped, restored: every object as it was.
	for _, f := range []string{"state.db", "state.db-wal", "state.db-shm"} {
		os.Remove(filepath.Join(dbDir, f))
	}
	skiffCommand(t, s, true, "datastore", "snapshot", "restore", saved)
	mustStart(t, s)
	after := allUIDs(t, ctx, mustRESTConfig(t, s))
	for key, uid := range before {
		if after[key] != uid {
			t.Errorf("%s: uid %q after the restore, was %q", key, after[key], uid)
		}
	}
	t.Logf("%d objects back after the restore", len(before))
}
