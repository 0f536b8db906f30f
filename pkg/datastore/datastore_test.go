package datastore

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRedactHidesPasswords(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://user:secret@db:5432/k8s":   "postgres://user:xxxxx@db:5432/k8s",
		"mysql://user:secret@tcp(db:3306)/k8s": "mysql://xxxxx@tcp(db:3306)/k8s",
		"memory://":                            "memory://",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSQLiteIsTheDefaultAndStartsInTheDataDir(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	be, err := Start(ctx, Config{}, filepath.Join(dir, "db"), filepath.Join(dir, "kine.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if len(be.Endpoints) != 1 || !strings.HasPrefix(be.Endpoints[0], "unix://") || be.LeaderElect {
		t.Errorf("backend %+v", be)
	}
	if _, err := os.Stat(filepath.Join(dir, "db", "state.db")); err != nil {
		t.Errorf("no SQLite file in the data dir: %v", err)
	}
	cancel()
	be.Wait()
	if got := pragma(t, filepath.Join(dir, "db", "state.db"), "page_size"); got != "1024" {
		t.Errorf("a new datastore has pages of %s bytes, want %d", got, sqlitePageSize)
	}
	if got := pragma(t, filepath.Join(dir, "db", "state.db"), "journal_mode"); got != "wal" {
		t.Errorf("a new datastore's journal mode is %s, want wal", got)
	}
}

// A datastore of an earlier version keeps its page size and its rows.
func TestExistingSQLiteKeepsItsPages(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "db", "state.db")
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+file+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE earlier (x INTEGER); INSERT INTO earlier VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	ctx, cancel := context.WithCancel(context.Background())
	be, err := Start(ctx, Config{}, filepath.Join(dir, "db"), filepath.Join(dir, "kine.sock"))
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	be.Wait()
	if got := pragma(t, file, "page_size"); got != "4096" {
		t.Errorf("an existing datastore's pages became %s bytes", got)
	}
	if got := pragma(t, file, "(SELECT x FROM earlier)"); got != "42" {
		t.Errorf("an existing datastore's row is %s, want 42", got)
	}
}

// pragma reads one value from the database file, a pragma's or a query's.
func pragma(t *testing.T, file, name string) string {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+file+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q := "PRAGMA " + name
	if strings.HasPrefix(name, "(") {
		q = "SELECT " + name
	}
	var v string
	if err := db.QueryRow(q).Scan(&v); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return v
}
