package selfextract

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/klauspost/compress/zstd"
)

// Main is the launcher's main: `unpack PATH` writes the program to PATH;
// anything else runs the program from the cache with these arguments.
func Main(args []string) int {
	if err := run(args); err != nil {
		fmt.Fprintln(os.Stderr, "skiff:", err)
		return 1
	}
	return 0
}

func run(args []string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the release binary: %w", err)
	}
	if len(args) > 1 && args[1] == "unpack" {
		if len(args) != 3 {
			return fmt.Errorf("usage: %s unpack PATH (writes the skiff program this release binary holds to PATH)", filepath.Base(args[0]))
		}
		return Unpack(exe, args[2])
	}
	dir, err := cacheDir()
	if err != nil {
		return err
	}
	program, err := Cached(exe, dir)
	if err != nil {
		return err
	}
	// argv[0] stays as it was: skiff dispatches on the name it was called
	// by (a kubectl symlink runs kubectl).
	if err := syscall.Exec(program, args, os.Environ()); err != nil {
		return fmt.Errorf("running %s: %w", program, err)
	}
	return nil
}

// cacheDir is where the launcher keeps the unpacked program:
// $XDG_CACHE_HOME/skiff, else /var/cache/skiff as root, else ~/.cache/skiff.
func cacheDir() (string, error) {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "skiff"), nil
	}
	if os.Geteuid() == 0 {
		return "/var/cache/skiff", nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory to unpack skiff into (%w): set XDG_CACHE_HOME, or unpack it with `skiff unpack PATH` and run that", err)
	}
	return filepath.Join(d, "skiff"), nil
}

// Cached returns the path of the program that release holds, in dir,
// unpacking it there first unless an earlier run did. Other programs in
// dir, of other releases, are removed after an unpack: a running one keeps
// its file until it exits.
func Cached(release, dir string) (string, error) {
	f, err := os.Open(release)
	if err != nil {
		return "", err
	}
	defer f.Close()
	t, start, err := readTrailer(f)
	if err != nil {
		return "", err
	}
	program := filepath.Join(dir, t.Key(), "skiff")
	// An unpack is complete once it has its name (see unpackTo), so its
	// size is enough of a check for each start.
	if info, err := os.Stat(program); err == nil && info.Size() == t.Size {
		return program, nil
	}
	if err := os.MkdirAll(filepath.Dir(program), 0o755); err != nil {
		return "", fmt.Errorf("creating the cache for the skiff program: %w", err)
	}
	if err := unpackTo(f, t, start, program); err != nil {
		return "", err
	}
	old, _ := filepath.Glob(filepath.Join(dir, "*", "skiff"))
	for _, p := range old {
		if p != program {
			os.RemoveAll(filepath.Dir(p))
		}
	}
	return program, nil
}

// Unpack writes the program that release holds to path, with mode 0755.
func Unpack(release, path string) error {
	f, err := os.Open(release)
	if err != nil {
		return err
	}
	defer f.Close()
	t, start, err := readTrailer(f)
	if err != nil {
		return err
	}
	return unpackTo(f, t, start, path)
}

// unpackTo decompresses the program into a temporary file beside path,
// checks its checksum, syncs it and only then renames it to path: a
// program found at path is always whole.
func unpackTo(f *os.File, t Trailer, start int64, path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".skiff-unpack-*")
	if err != nil {
		return fmt.Errorf("unpacking skiff: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a failure; the rename moved it otherwise
	defer tmp.Close()
	h := sha256.New()
	n, err := decompress(io.MultiWriter(tmp, h), io.NewSectionReader(f, start, t.CompressedSize))
	if err != nil {
		return fmt.Errorf("unpacking skiff into %s (the release binary may be damaged, or the disk full): %w", filepath.Dir(path), err)
	}
	if n != t.Size || !bytes.Equal(h.Sum(nil), t.Sum[:]) {
		return fmt.Errorf("the program unpacked from %s does not match its checksum: the release binary is damaged", f.Name())
	}
	if err := tmp.Chmod(0o755); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("unpacking skiff into %s: %w", filepath.Dir(path), err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// decompress writes the zstd stream r decompresses to into w and returns
// how many bytes that was.
func decompress(w io.Writer, r io.Reader) (int64, error) {
	d, err := zstd.NewReader(r)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	n, err := io.Copy(w, d)
	if errors.Is(err, zstd.ErrMagicMismatch) {
		err = fmt.Errorf("not a zstd stream: %w", err)
	}
	return n, err
}
