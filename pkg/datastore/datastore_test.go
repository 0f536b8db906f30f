package datastore

import (
	"context"
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
}
