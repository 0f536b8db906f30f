package datastore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skiff-dev/skiff/pkg/pki"
)

// Status is what `skiff datastore status` shows: how big the datastore is
// and how far its compaction has come.
type Status struct {
	Kind string `json:"kind"` // sqlite or etcd
	Path string `json:"path"` // the database file, or the etcd endpoint
	// SizeBytes is the database file (SQLite) or etcd's backend; WALBytes
	// SQLite's write-ahead log beside it; FreeBytes the space inside
	// SizeBytes that holds nothing and is reused before the file grows.
	SizeBytes int64 `json:"sizeBytes"`
	WALBytes  int64 `json:"walBytes"`
	FreeBytes int64 `json:"freeBytes"`
	// Rows are kine's rows (SQLite only): one per revision not compacted.
	Rows            int64 `json:"rows,omitempty"`
	Revision        int64 `json:"revision"`
	CompactRevision int64 `json:"compactRevision"`
	// LastCompaction is when the server last saw the compacted revision
	// move (see Compaction); zero when it has not yet.
	LastCompaction time.Time `json:"lastCompaction,omitzero"`
}

// SQLiteStatus reads the status of the SQLite datastore in dbDir, which a
// server may be using: it only reads.
func SQLiteStatus(ctx context.Context, dbDir string) (*Status, error) {
	file := filepath.Join(dbDir, "state.db")
	info, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("no SQLite datastore: %w", err)
	}
	st := &Status{Kind: "sqlite", Path: file, SizeBytes: info.Size()}
	if wal, err := os.Stat(file + "-wal"); err == nil {
		st.WALBytes = wal.Size()
	}
	db, err := sql.Open("sqlite3", "file:"+file+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var free, pageSize int64
	var compact sql.NullInt64
	for _, q := range []struct {
		query string
		into  any
	}{
		{"SELECT COALESCE(MAX(id), 0), COUNT(*) FROM kine", nil},
		{"SELECT MAX(prev_revision) FROM kine WHERE name = 'compact_rev_key'", &compact},
		{"PRAGMA freelist_count", &free},
		{"PRAGMA page_size", &pageSize},
	} {
		row := db.QueryRowContext(ctx, q.query)
		if q.into == nil {
			err = row.Scan(&st.Revision, &st.Rows)
		} else {
			err = row.Scan(q.into)
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s (%s): %w", file, q.query, err)
		}
	}
	st.CompactRevision, st.FreeBytes = compact.Int64, free*pageSize
	st.LastCompaction = readCompaction(dbDir).At
	return st, nil
}

// EtcdStatus reads the status of the etcd member client reaches. etcd
// does not report its compacted revision; a watch from revision 1 is told
// it.
func EtcdStatus(ctx context.Context, client *clientv3.Client) (*Status, error) {
	endpoint := client.Endpoints()[0]
	s, err := client.Status(ctx, endpoint)
	if err != nil {
		return nil, fmt.Errorf("etcd at %s: %w", endpoint, err)
	}
	st := &Status{Kind: "etcd", Path: endpoint, SizeBytes: s.DbSize, FreeBytes: s.DbSize - s.DbSizeInUse, Revision: s.Header.Revision}
	wctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), 2*time.Second)
	defer cancel()
	for resp := range client.Watch(wctx, "\x00", clientv3.WithRev(1)) {
		st.CompactRevision = resp.CompactRevision
		break
	}
	return st, nil
}

// Compaction is what the server last saw of compaction, kept beside the
// database so that `skiff datastore status` can say when it moved.
type Compaction struct {
	Revision int64     `json:"revision"`
	At       time.Time `json:"at"`
}

const compactionFile = "compaction.json"

func readCompaction(dbDir string) Compaction {
	var c Compaction
	if data, err := os.ReadFile(filepath.Join(dbDir, compactionFile)); err == nil {
		_ = json.Unmarshal(data, &c)
	}
	return c
}

func writeCompaction(dbDir string, c Compaction) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return pki.WriteFileIfChanged(filepath.Join(dbDir, compactionFile), data, 0o600)
}
