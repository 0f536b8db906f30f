package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/klauspost/compress/zstd"
)

func TestOCIArchive(t *testing.T) {
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "bin"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "bin", "tool"), []byte("#!/bin/sh\n"), 0o755))
	must(t, os.Symlink("tool", filepath.Join(root, "bin", "alias")))
	must(t, os.Link(filepath.Join(root, "bin", "tool"), filepath.Join(root, "bin", "hard")))

	write := func() []byte {
		layer, err := LayerFromDir(root, zstdCompress)
		must(t, err)
		img, err := Build(Config{Name: "example.com/tools:v1", Entrypoint: []string{"/bin/tool"}, Env: []string{"A=b"}}, layer)
		must(t, err)
		var buf bytes.Buffer
		must(t, WriteOCIArchive(&buf, img, "example.com/tools:v1"))
		return buf.Bytes()
	}
	archive := write()
	if !bytes.Equal(archive, write()) {
		t.Error("two writes of the same files differ")
	}

	if name, err := ArchiveName(bytes.NewReader(archive)); err != nil || name != "example.com/tools:v1" {
		t.Errorf("ArchiveName: %q %v", name, err)
	}
	files := untar(t, bytes.NewReader(archive))
	var index struct {
		Manifests []struct {
			Digest      string
			Annotations map[string]string
		}
	}
	must(t, json.Unmarshal(files["index.json"], &index))
	if len(index.Manifests) != 1 || index.Manifests[0].Annotations[annotationImageName] != "example.com/tools:v1" ||
		index.Manifests[0].Annotations[annotationRefName] != "v1" {
		t.Fatalf("index: %+v", index)
	}
	var manifest struct {
		Config struct{ Digest string }
		Layers []struct{ MediaType, Digest string }
	}
	must(t, json.Unmarshal(blob(t, files, index.Manifests[0].Digest), &manifest))
	var config struct {
		OS, Architecture string
		Config           struct{ Entrypoint, Env []string }
	}
	must(t, json.Unmarshal(blob(t, files, manifest.Config.Digest), &config))
	if config.OS != "linux" || config.Config.Entrypoint[0] != "/bin/tool" || config.Config.Env[0] != "A=b" {
		t.Errorf("config: %+v", config)
	}
	if len(manifest.Layers) != 1 || manifest.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+zstd" {
		t.Fatalf("layers: %+v", manifest.Layers)
	}
	zr, err := zstd.NewReader(bytes.NewReader(blob(t, files, manifest.Layers[0].Digest)))
	must(t, err)
	defer zr.Close()
	tr := tar.NewReader(zr)
	got := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		got[h.Name] = h
	}
	if h := got["bin/alias"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "tool" {
		t.Errorf("symlink: %+v", h)
	}
	if h := got["bin/hard"]; h == nil || h.Mode&0o111 == 0 || h.Uid != 0 || h.ModTime.Unix() != 0 {
		t.Errorf("file: %+v", h)
	}
	// Hard links: the first name in lexical order holds the data.
	if h := got["bin/hard"]; h == nil || h.Typeflag != tar.TypeReg || h.Size == 0 {
		t.Errorf("first name of a linked file: %+v", h)
	}
	if h := got["bin/tool"]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "bin/hard" {
		t.Errorf("hard link: %+v", h)
	}
	if _, ok := got["bin/"]; !ok {
		t.Errorf("no directory entry: %v", got)
	}
}

func TestNameWithoutTagGetsLatest(t *testing.T) {
	img, err := Build(Config{})
	must(t, err)
	var buf bytes.Buffer
	must(t, WriteOCIArchive(&buf, img, "busybox"))
	if !bytes.Contains(untar(t, &buf)["index.json"], []byte(`"docker.io/library/busybox:latest"`)) {
		t.Error("short name not normalised")
	}
	if err := WriteOCIArchive(io.Discard, img, "Not A Name"); err == nil {
		t.Error("bad name accepted")
	}
}

func untar(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		must(t, err)
		data, err := io.ReadAll(tr)
		must(t, err)
		files[h.Name] = data
	}
}

func blob(t *testing.T, files map[string][]byte, digest string) []byte {
	t.Helper()
	data, ok := files["blobs/sha256/"+digest[len("sha256:"):]]
	if !ok {
		t.Fatalf("no blob %s", digest)
	}
	return data
}

// checkLayerDigests reads a layer's compressed and uncompressed bytes and
// checks them against its digest and diff ID.
func checkLayerDigests(t *testing.T, l v1.Layer) {
	t.Helper()
	digest, err := l.Digest()
	must(t, err)
	diffID, err := l.DiffID()
	must(t, err)
	rc, err := l.Compressed()
	must(t, err)
	defer rc.Close()
	compressed, err := io.ReadAll(rc)
	must(t, err)
	zr, err := zstd.NewReader(bytes.NewReader(compressed))
	must(t, err)
	defer zr.Close()
	uncompressed, err := io.ReadAll(zr)
	must(t, err)
	if got := fmt.Sprintf("sha256:%x", sha256.Sum256(compressed)); got != digest.String() {
		t.Errorf("layer digest %s, its bytes %s", digest, got)
	}
	if got := fmt.Sprintf("sha256:%x", sha256.Sum256(uncompressed)); got != diffID.String() {
		t.Errorf("layer diff ID %s, its uncompressed bytes %s", diffID, got)
	}
}

// zstdCompress compresses layers in-process for the tests, at zstd's
// default level.
func zstdCompress(tar []byte) ([]byte, error) {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		return nil, err
	}
	return enc.EncodeAll(tar, nil), nil
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestLayoutRoundTrip untars an archive and reads it back with
// go-containerregistry's OCI layout reader, which checks every blob's digest
// and size against the manifest, config and layers.
func TestLayoutRoundTrip(t *testing.T) {
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0::/:/bin/sh\n"), 0o644))
	layer, err := LayerFromDir(root, zstdCompress)
	must(t, err)
	img, err := Build(Config{Labels: map[string]string{"a": "b"}, WorkingDir: "/etc"}, layer, layer)
	must(t, err)
	var buf bytes.Buffer
	must(t, WriteOCIArchive(&buf, img, "localhost/skiff/test:1"))
	dir := t.TempDir()
	for name, data := range untar(t, &buf) {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))
	}
	index, err := layout.ImageIndexFromPath(dir)
	must(t, err)
	im, err := index.IndexManifest()
	must(t, err)
	if len(im.Manifests) != 1 {
		t.Fatalf("index: %+v", im)
	}
	got, err := index.Image(im.Manifests[0].Digest)
	must(t, err)
	// validate reads layers as gzip only: it checks the manifest and
	// config here, and the layers' digests below.
	must(t, validate.Image(got, validate.Fast))
	layers, err := got.Layers()
	must(t, err)
	for _, l := range layers {
		checkLayerDigests(t, l)
	}
	cf, err := got.ConfigFile()
	must(t, err)
	if cf.Config.Labels["a"] != "b" || cf.Config.WorkingDir != "/etc" || !cf.Created.Equal(time.Unix(0, 0)) ||
		len(cf.History) != 2 || !cf.History[1].Created.Equal(time.Unix(0, 0)) {
		t.Errorf("config: %+v", cf)
	}
}

func TestBuildForAnotherArchitecture(t *testing.T) {
	for arch, want := range map[string][2]string{
		"":      {runtime.GOARCH, ""},
		"arm64": {"arm64", ""},
		"arm":   {"arm", "v7"},
	} {
		img, err := Build(Config{Arch: arch})
		must(t, err)
		cf, err := img.ConfigFile()
		must(t, err)
		if cf.OS != "linux" || cf.Architecture != want[0] || cf.Variant != want[1] {
			t.Errorf("Arch %q: image for %s/%s/%s, want linux/%s/%s", arch, cf.OS, cf.Architecture, cf.Variant, want[0], want[1])
		}
	}
}
