// Package payload carries the node programs (containerd, runc, the runc v2
// shim, the CNI plugins) and system images (pause) inside the skiff binary,
// and unpacks the programs to <data-dir>/data/<hash>/bin, once per payload
// version, as k3s does. scripts/build-payload.sh makes the embedded files,
// one directory per architecture (data/<GOARCH>); a binary embeds only its
// own (see embed_*.go), so a release for arm64 carries arm64 programs and
// images.
package payload

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
	"k8s.io/klog/v2"
)

// embedded is this architecture's payload directory: embed's own files,
// so Open reads them in place.
var embedded = func() fs.FS {
	sub, err := fs.Sub(archData, archDir)
	if err != nil {
		panic(err) // archDir is a constant, valid path
	}
	return sub
}()

// ErrMissing means the binary was built without its payload (a plain `go
// build` rather than `make build`).
var ErrMissing = errors.New("this skiff binary carries no node payload; build it with `make build`, which runs scripts/build-payload.sh")

// Archive is one embedded image archive.
type Archive struct {
	// Digest is the archive's sha256, recorded at build time, so that
	// whether it was imported already is known without reading it.
	Digest string
	// Open reads the archive straight from the binary's data: no archive
	// is copied into memory (embed.FS's ReadFile would copy each).
	Open func() (io.ReadCloser, error)
}

// Images returns the embedded system images by file name.
func Images() (map[string]Archive, error) {
	entries, err := fs.ReadDir(embedded, "images")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrMissing
	}
	if err != nil {
		return nil, err
	}
	sumsFile, err := fs.ReadFile(embedded, "images/SHA256SUMS")
	if err != nil {
		return nil, fmt.Errorf("%w (no image SHA256SUMS: %v)", ErrMissing, err)
	}
	sums, err := parseSums(sumsFile)
	if err != nil {
		return nil, fmt.Errorf("embedded images: %w", err)
	}
	images := map[string]Archive{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".tar") {
			continue
		}
		digest, ok := sums[e.Name()]
		if !ok {
			return nil, fmt.Errorf("embedded image %s is not in the images' SHA256SUMS: rebuild skiff with `make build`", e.Name())
		}
		name := path.Join("images", e.Name())
		images[e.Name()] = Archive{Digest: digest, Open: func() (io.ReadCloser, error) { return embedded.Open(name) }}
	}
	if len(images) == 0 {
		return nil, ErrMissing
	}
	return images, nil
}

// Unpack makes sure the programs of this binary's payload are present and
// intact under dataDir/data/<hash>/bin, unpacking them if not, and returns
// that directory. The hash is of the payload's SHA256SUMS, so each payload
// version gets its own directory and an upgrade never overwrites programs
// that running shims use.
func Unpack(dataDir string) (string, error) {
	sums, err := fs.ReadFile(embedded, "SHA256SUMS")
	if errors.Is(err, fs.ErrNotExist) {
		return "", ErrMissing
	}
	if err != nil {
		return "", err
	}
	want, err := parseSums(sums)
	if err != nil {
		return "", err
	}
	id := sha256.Sum256(sums)
	dir := filepath.Join(dataDir, "data", hex.EncodeToString(id[:])[:16])
	bin := filepath.Join(dir, "bin")
	if err := verify(bin, want); err == nil {
		return bin, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		klog.InfoS("Unpacked node programs are damaged; unpacking them again", "dir", bin, "reason", err)
	}
	if err := unpack(dir, want); err != nil {
		return "", fmt.Errorf("unpacking the node programs to %s: %w", dir, err)
	}
	klog.InfoS("Unpacked node programs", "dir", bin)
	return bin, nil
}

// unpack extracts the archive into a temporary directory beside dir, checks
// every program against its sum and then moves it into place.
func unpack(dir string, want map[string]string) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, ".unpack-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	f, err := embedded.Open("bin.tar.zst")
	if err != nil {
		return ErrMissing
	}
	defer f.Close()
	zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return err
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := path.Clean(h.Name)
		if h.Typeflag != tar.TypeReg || !strings.HasPrefix(name, "bin/") || strings.Contains(name[4:], "/") {
			continue // only the programs; SHA256SUMS is embedded on its own
		}
		if err := writeFile(filepath.Join(tmp, filepath.FromSlash(name)), tr); err != nil {
			return err
		}
	}
	if err := verify(filepath.Join(tmp, "bin"), want); err != nil {
		return fmt.Errorf("the embedded payload does not match its SHA256SUMS (a damaged binary?): %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

func writeFile(name string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// verify checks that bin holds exactly the programs in want, each with its
// sum. Hashing the ~50 MB takes a fraction of a second and catches a damaged
// or replaced program before containerd runs it.
func verify(bin string, want map[string]string) error {
	for name, sum := range want {
		f, err := os.Open(filepath.Join(bin, name))
		if err != nil {
			return err
		}
		h := sha256.New()
		_, err = io.Copy(h, bufio.NewReaderSize(f, 1<<20))
		f.Close()
		if err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != sum {
			return fmt.Errorf("%s has sha256 %s, want %s", name, got, sum)
		}
	}
	return nil
}

// parseSums reads sha256sum's output format.
func parseSums(data []byte) (map[string]string, error) {
	sums := map[string]string{}
	for line := range bytes.Lines(data) {
		sum, name, ok := strings.Cut(strings.TrimSpace(string(line)), "  ")
		if !ok || len(sum) != 64 || strings.ContainsAny(name, "/\\") || name == "" {
			return nil, fmt.Errorf("malformed SHA256SUMS line %q", line)
		}
		sums[name] = sum
	}
	if len(sums) == 0 {
		return nil, errors.New("empty SHA256SUMS")
	}
	return sums, nil
}
