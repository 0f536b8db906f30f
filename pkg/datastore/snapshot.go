package datastore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
	"k8s.io/klog/v2"
)

// Snapshot is a saved copy of the datastore in the snapshot directory.
type Snapshot struct {
	Path    string
	Size    int64
	Created time.Time
}

// Snapshot files are <name>-<time>.<kind>: the kind says how to restore.
const (
	SQLiteSnapshotExt = ".sqlite"
	EtcdSnapshotExt   = ".etcd"
)

// SnapshotName is a new snapshot's file name: prefix, the time, the kind.
func SnapshotName(prefix string, now time.Time, ext string) string {
	return fmt.Sprintf("%s-%s%s", prefix, now.UTC().Format("20060102T150405Z"), ext)
}

// SaveSQLite writes a consistent copy of the SQLite database dbFile to out
// through SQLite's online backup API, while kine goes on writing it.
func SaveSQLite(ctx context.Context, dbFile, out string) error {
	if _, err := os.Stat(dbFile); err != nil {
		return fmt.Errorf("no SQLite datastore: %w", err)
	}
	src, err := sql.Open("sqlite3", "file:"+dbFile+"?mode=ro")
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := out + ".part"
	dst, err := sql.Open("sqlite3", "file:"+tmp)
	if err != nil {
		return err
	}
	defer dst.Close()
	defer os.Remove(tmp)
	if err := backup(ctx, src, dst); err != nil {
		return fmt.Errorf("copying %s: %w", dbFile, err)
	}
	if err := dst.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// backup runs SQLite's backup from src to dst, 1024 pages a step so that
// kine's writers are not held up for the whole copy.
func backup(ctx context.Context, src, dst *sql.DB) error {
	srcConn, err := src.Conn(ctx)
	if err != nil {
		return err
	}
	defer srcConn.Close()
	dstConn, err := dst.Conn(ctx)
	if err != nil {
		return err
	}
	defer dstConn.Close()
	return dstConn.Raw(func(d any) error {
		return srcConn.Raw(func(s any) error {
			b, err := d.(*sqlite3.SQLiteConn).Backup("main", s.(*sqlite3.SQLiteConn), "main")
			if err != nil {
				return err
			}
			for done := false; !done; {
				if err := ctx.Err(); err != nil {
					b.Finish()
					return err
				}
				if done, err = b.Step(1024); err != nil {
					b.Finish()
					return err
				}
			}
			return b.Finish()
		})
	})
}

// SaveEtcd writes the snapshot etcd streams from the member client reaches
// to out.
func SaveEtcd(ctx context.Context, client *clientv3.Client, out string) error {
	rc, err := client.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("etcd snapshot: %w", err)
	}
	defer rc.Close()
	tmp := out + ".part"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		return fmt.Errorf("etcd snapshot: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// ListSnapshots lists dir's snapshots, oldest first.
func ListSnapshots(dir string) ([]Snapshot, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var snaps []Snapshot
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || ext != SQLiteSnapshotExt && ext != EtcdSnapshotExt {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		snaps = append(snaps, Snapshot{Path: filepath.Join(dir, e.Name()), Size: info.Size(), Created: info.ModTime()})
	}
	slices.SortFunc(snaps, func(a, b Snapshot) int { return a.Created.Compare(b.Created) })
	return snaps, nil
}

// PruneSnapshots deletes all but the newest keep snapshots whose names
// start with prefix, and returns those it deleted.
func PruneSnapshots(dir, prefix string, keep int) ([]string, error) {
	snaps, err := ListSnapshots(dir)
	if err != nil {
		return nil, err
	}
	snaps = slices.DeleteFunc(snaps, func(s Snapshot) bool { return !strings.HasPrefix(filepath.Base(s.Path), prefix+"-") })
	var deleted []string
	for len(snaps) > keep {
		if err := os.Remove(snaps[0].Path); err != nil {
			return deleted, err
		}
		deleted = append(deleted, snaps[0].Path)
		snaps = snaps[1:]
	}
	return deleted, nil
}

// Progress reports a step of a long operation, as fmt.Printf would.
type Progress func(format string, args ...any)

// RestoreSQLite replaces the stopped server's SQLite database dbFile with
// the snapshot, after checking the snapshot is a sound kine database. The
// database it replaces is kept beside it (.before-restore-<time>).
// progress is told each step as it starts.
func RestoreSQLite(snapshot, dbFile string, now time.Time, progress Progress) error {
	progress("checking %s", snapshot)
	if err := checkSQLiteSnapshot(snapshot); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dbFile), 0o700); err != nil {
		return err
	}
	// Copied beside it first: a failed copy leaves the database as it was.
	restoring := dbFile + ".restoring"
	os.Remove(restoring)
	progress("copying it to %s", restoring)
	if err := copyFile(snapshot, restoring); err != nil {
		os.Remove(restoring)
		return fmt.Errorf("restoring %s: %w; nothing was changed", snapshot, err)
	}
	aside := ".before-restore-" + now.UTC().Format("20060102T150405Z")
	progress("keeping the current database aside as %s", dbFile+aside)
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Rename(dbFile+suffix, dbFile+suffix+aside); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("keeping %s aside: %w", dbFile+suffix, err)
		}
	}
	if err := os.Rename(restoring, dbFile); err != nil {
		return fmt.Errorf("restoring %s: %w (the previous database is %s)", snapshot, err, dbFile+aside)
	}
	klog.InfoS("Restored the SQLite datastore", "snapshot", snapshot, "previous", dbFile+aside)
	return nil
}

// checkSQLiteSnapshot opens a snapshot read-only and checks it is an
// intact SQLite database holding kine's table.
func checkSQLiteSnapshot(path string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("snapshot %s: %w: nothing was changed", path, err)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	var result string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&result); err != nil || result != "ok" {
		return fmt.Errorf("snapshot %s is not an intact SQLite database (%v%s): nothing was changed", path, err, result)
	}
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM kine").Scan(&n); err != nil {
		return fmt.Errorf("snapshot %s holds no kine datastore (%w): nothing was changed", path, err)
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// RestoreEtcd makes the data dir of member e a new one-member cluster
// holding the etcd snapshot, after checking the snapshot. The data dir it
// replaces is kept beside it (.before-restore-<time>). Revisions jump by a
// billion and are marked compacted, as etcd advises for Kubernetes: the
// clients' resourceVersions must not go back. progress is told each step
// as it starts.
func RestoreEtcd(snap string, e *Etcd, now time.Time, progress Progress) error {
	manager := snapshot.NewV3(zap.NewNop())
	progress("checking %s", snap)
	if _, err := manager.Status(snap); err != nil {
		return fmt.Errorf("snapshot %s is not an etcd snapshot (%w): nothing was changed", snap, err)
	}
	restoring := e.DataDir + ".restoring"
	os.RemoveAll(restoring)
	progress("restoring it into %s", restoring)
	if err := manager.Restore(snapshot.RestoreConfig{
		SnapshotPath: snap, Name: e.Name, OutputDataDir: restoring,
		PeerURLs: []string{e.PeerURL()}, InitialCluster: e.Name + "=" + e.PeerURL(), InitialClusterToken: "skiff",
		RevisionBump: 1_000_000_000, MarkCompacted: true,
	}); err != nil {
		os.RemoveAll(restoring)
		return fmt.Errorf("restoring %s: %w: nothing was changed", snap, err)
	}
	aside := e.DataDir + ".before-restore-" + now.UTC().Format("20060102T150405Z")
	progress("keeping the current data aside as %s", aside)
	if err := os.Rename(e.DataDir, aside); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("keeping %s aside: %w", e.DataDir, err)
	}
	if err := os.Rename(restoring, e.DataDir); err != nil {
		return fmt.Errorf("restoring %s: %w (the previous data is %s)", snap, err, aside)
	}
	klog.InfoS("Restored the embedded etcd as a cluster of one", "snapshot", snap, "member", e.Name, "previous", aside)
	return nil
}
