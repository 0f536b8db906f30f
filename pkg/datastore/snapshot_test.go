package datastore

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestPruneKeepsTheNewestOfAName(t *testing.T) {
	dir := t.TempDir()
	start := time.Now().Add(-time.Hour)
	var names []string
	for i, prefix := range []string{"scheduled", "on-demand", "scheduled", "scheduled", "scheduled"} {
		at := start.Add(time.Duration(i) * time.Minute)
		name := filepath.Join(dir, SnapshotName(prefix, at, SQLiteSnapshotExt))
		if err := os.WriteFile(name, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(name, at, at); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	deleted, err := PruneSnapshots(dir, "scheduled", 2)
	if err != nil || !slices.Equal(deleted, []string{names[0], names[2]}) {
		t.Errorf("pruned %v, %v; want the two oldest scheduled ones", deleted, err)
	}
	left, _ := ListSnapshots(dir)
	if len(left) != 3 || left[0].Path != names[1] {
		t.Errorf("left %v", left)
	}
}
