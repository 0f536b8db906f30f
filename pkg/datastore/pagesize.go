package datastore

import (
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// sqlitePageSize is the page size of a SQLite datastore skiff creates.
// SQLite's default is 4 KiB, but an idle cluster's writes are single small
// rows (the node's lease renewed every 20 s), and each one rewrites a page of the
// table and of each of kine's six indexes, in the WAL and again at the
// checkpoint: with 1 KiB pages an idle cluster writes a quarter as much
// (make bench-footprint, "idle writes"). A row larger than a page spills
// into overflow pages, which SQLite handles as it always does.
const sqlitePageSize = 1024

// createSQLite creates the database file of a sqlite:// endpoint with
// sqlitePageSize pages and in WAL mode, when it does not exist yet, before
// kine opens it. kine's DSN has no page size parameter, and in WAL mode the
// page size of an existing database is fixed, so a database of an earlier
// version keeps its 4 KiB pages.
func createSQLite(endpoint string) error {
	file, _, _ := strings.Cut(strings.TrimPrefix(endpoint, "sqlite://"), "?")
	if _, err := os.Stat(file); !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	db, err := sql.Open("sqlite3", "file:"+file)
	if err != nil {
		return fmt.Errorf("creating the datastore %s: %w", file, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // the pragmas hold for one connection
	for _, stmt := range []string{fmt.Sprintf("PRAGMA page_size = %d", sqlitePageSize), "PRAGMA journal_mode = WAL"} {
		if _, err := db.Exec(stmt); err != nil {
			return fmt.Errorf("creating the datastore %s (%s): %w", file, stmt, err)
		}
	}
	return db.Close()
}
