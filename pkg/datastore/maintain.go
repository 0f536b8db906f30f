package datastore

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"time"

	"k8s.io/klog/v2"
)

// WALLimit is the size past which Maintainer truncates SQLite's
// write-ahead log. kine checkpoints it after every compaction, so it is
// reused from its start, but a burst of writes leaves the file as large as
// the burst made it.
const WALLimit = 64 << 20

// Maintainer keeps an eye on the SQLite datastore that kine runs in DBDir,
// one Check per compaction interval: kine compacts (keeping the newest
// 1000 revisions), checkpoints the WAL after each compaction and vacuums
// at start; Maintainer records when compaction moves, truncates an
// oversized WAL, and says when compaction falls behind.
type Maintainer struct {
	DBDir string

	last      Compaction
	revisions []int64 // the current revision at the last checks, newest last
}

// Check reads the datastore's status, records a move of the compacted
// revision, and truncates the WAL when it has grown past WALLimit. behind
// says compaction has not reached what kine should have compacted by now:
// the revision current two checks ago, less the 1000 it keeps.
func (m *Maintainer) Check(ctx context.Context) (st *Status, behind bool, err error) {
	if st, err = SQLiteStatus(ctx, m.DBDir); err != nil {
		return nil, false, err
	}
	if m.last.At.IsZero() {
		m.last = readCompaction(m.DBDir)
	}
	if st.CompactRevision != m.last.Revision {
		m.last = Compaction{Revision: st.CompactRevision, At: time.Now().UTC()}
		if err := writeCompaction(m.DBDir, m.last); err != nil {
			klog.InfoS("Recording the datastore's compaction", "err", err)
		}
		st.LastCompaction = m.last.At
	}
	if m.revisions = append(m.revisions, st.Revision); len(m.revisions) > 3 {
		m.revisions = m.revisions[1:]
	}
	if len(m.revisions) == 3 {
		behind = st.CompactRevision < m.revisions[0]-compactMinRetain
	}
	if st.WALBytes > WALLimit {
		if err := truncateWAL(ctx, filepath.Join(m.DBDir, "state.db")); err != nil {
			klog.InfoS("Truncating the datastore's WAL; trying again at the next check", "walBytes", st.WALBytes, "err", err)
		} else {
			klog.InfoS("Truncated the datastore's WAL", "was", st.WALBytes)
		}
	}
	return st, behind, nil
}

// truncateWAL checkpoints the whole WAL into the database and truncates
// it, waiting a while for kine's transactions.
func truncateWAL(ctx context.Context, file string) error {
	db, err := sql.Open("sqlite3", "file:"+file+"?_busy_timeout=10000")
	if err != nil {
		return err
	}
	defer db.Close()
	var busy, logPages, checkpointed int
	if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logPages, &checkpointed); err != nil {
		return err
	}
	if busy != 0 {
		return fmt.Errorf("the database was busy (%d of %d pages checkpointed)", checkpointed, logPages)
	}
	return nil
}
