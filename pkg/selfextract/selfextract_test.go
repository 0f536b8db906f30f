package selfextract

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// release packs program behind a fake launcher into a file and returns
// its path.
func release(t *testing.T, program []byte) string {
	t.Helper()
	dir := t.TempDir()
	zst := filepath.Join(dir, "program.zst")
	enc, _ := zstd.NewWriter(nil)
	if err := os.WriteFile(zst, enc.EncodeAll(program, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	z, err := os.Open(zst)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	var out bytes.Buffer
	if err := Pack(&out, strings.NewReader("#!launcher\n"), z); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "skiff-release")
	if err := os.WriteFile(path, out.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestUnpackWritesTheProgram(t *testing.T) {
	program := bytes.Repeat([]byte("skiff program "), 10000)
	rel := release(t, program)
	if data, _ := os.ReadFile(rel); !bytes.HasPrefix(data, []byte("#!launcher\n")) || !bytes.HasSuffix(data, []byte(Magic)) {
		t.Fatal("the release does not start with the launcher and end with the magic")
	}
	out := filepath.Join(t.TempDir(), "skiff")
	if err := Unpack(rel, out); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, program) {
		t.Fatalf("unpacked %d bytes (%v), want the %d of the program", len(got), err, len(program))
	}
	if info, _ := os.Stat(out); info.Mode().Perm() != 0o755 {
		t.Errorf("unpacked with mode %v, want 0755", info.Mode().Perm())
	}
}

// The cache unpacks a release once, and a newer release replaces it.
func TestCachedUnpacksOnceAndReplacesOlderReleases(t *testing.T) {
	dir := t.TempDir()
	first, err := Cached(release(t, []byte("release one")), dir)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(first)
	again, err := Cached(release(t, []byte("release one")), dir)
	if err != nil || again != first {
		t.Fatalf("second start: %s, %v; want %s", again, err, first)
	}
	if after, _ := os.Stat(again); !os.SameFile(before, after) {
		t.Error("the second start unpacked the program again")
	}
	second, err := Cached(release(t, []byte("release two")), dir)
	if err != nil || second == first {
		t.Fatalf("a newer release: %s, %v", second, err)
	}
	if got, _ := os.ReadFile(second); string(got) != "release two" {
		t.Errorf("the newer release's program is %q", got)
	}
	if _, err := os.Stat(first); !os.IsNotExist(err) {
		t.Errorf("the older release's program is still cached: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*", ".skiff-unpack-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestDamagedReleasesAreRefused(t *testing.T) {
	good, err := os.ReadFile(release(t, bytes.Repeat([]byte("x"), 5000)))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"cut short":    {good[:len(good)-10], "no trailer"},
		"plain binary": {[]byte("\x7fELF not a release"), "plain skiff program"},
		"flipped byte": {flip(good, len(good)-TrailerSize-1), "damaged"},
		"wrong sum":    {flip(good, len(good)-TrailerSize), "does not match its checksum"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(path, tc.data, 0o755); err != nil {
			t.Fatal(err)
		}
		err := Unpack(path, path+".out")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, tc.want)
		}
		if _, err := os.Stat(path + ".out"); !os.IsNotExist(err) {
			t.Errorf("%s: a program was written anyway", name)
		}
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0xff
	return c
}
