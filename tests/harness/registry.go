package harness

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"sigs.k8s.io/yaml"

	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/image"
)

// Registry is an OCI registry in the test's own process
// (go-containerregistry's, blobs on disk) that a node reaches as a mirror
// in its registries.yaml: these machines reach no registry, and pulls
// (imagePullPolicy Always) need one.
type Registry struct {
	// Host is its host:port on loopback, plain HTTP.
	Host string
	// Manifests counts the requests for manifests (HEAD or GET) it
	// answered: a pull resolves its tag there even when the node has every
	// blob already.
	Manifests atomic.Int64

	srv *httptest.Server
	dir string
}

// NewRegistry starts a registry keeping its blobs under dir.
func NewRegistry(dir string) (*Registry, error) {
	if err := os.MkdirAll(filepath.Join(dir, "blobs"), 0o755); err != nil {
		return nil, err
	}
	r := &Registry{dir: dir}
	handler := registry.New(registry.Logger(log.New(io.Discard, "", 0)),
		registry.WithBlobHandler(registry.NewDiskBlobHandler(filepath.Join(dir, "blobs"))))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if (req.Method == http.MethodGet || req.Method == http.MethodHead) && strings.Contains(req.URL.Path, "/manifests/") {
			r.Manifests.Add(1)
		}
		handler.ServeHTTP(w, req)
	}))
	r.Host = strings.TrimPrefix(r.srv.URL, "http://")
	return r, nil
}

// Close stops the registry.
func (r *Registry) Close() { r.srv.Close() }

// PushArchive pushes the image of an OCI archive (as skiff's images are
// built) under as, or its own name when as is empty; the name's registry
// is dropped, as a mirror serves it. labels, when given, are added to the
// image's config: that makes another image, with another ID.
func (r *Registry) PushArchive(archive, as string, labels map[string]string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	if as == "" {
		if as, err = image.ArchiveName(f); err != nil {
			return fmt.Errorf("%s: %w", archive, err)
		}
	}
	parsed, err := name.ParseReference(as)
	if err != nil {
		return err
	}
	target, err := name.ParseReference(r.Host+"/"+parsed.Context().RepositoryStr()+":"+parsed.Identifier(), name.Insecure)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(r.dir, "layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := untar(f, dir); err != nil {
		return fmt.Errorf("unpacking %s: %w", archive, err)
	}
	index, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return err
	}
	manifest, err := index.IndexManifest()
	if err != nil {
		return err
	}
	if len(manifest.Manifests) != 1 {
		return fmt.Errorf("%s holds %d images, want one", archive, len(manifest.Manifests))
	}
	img, err := index.Image(manifest.Manifests[0].Digest)
	if err != nil {
		return err
	}
	if len(labels) > 0 {
		if img, err = withLabels(img, labels); err != nil {
			return err
		}
	}
	if err := remote.Write(target, img); err != nil {
		return fmt.Errorf("pushing %s as %s: %w", archive, target, err)
	}
	return nil
}

func withLabels(img v1.Image, labels map[string]string) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	c := cf.Config.DeepCopy()
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	maps.Copy(c.Labels, labels)
	return mutate.Config(img, *c)
}

// WriteMirrors writes a registries.yaml at path that sends the pulls of
// each of registries to this registry first.
func (r *Registry) WriteMirrors(path string, registries ...string) error {
	mirrors := config.Registries{Mirrors: map[string]config.Mirror{}}
	for _, reg := range registries {
		mirrors.Mirrors[reg] = config.Mirror{Endpoints: []string{r.srv.URL}}
	}
	data, err := yaml.Marshal(mirrors)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

// untar unpacks the regular files and directories of a tar stream into dir.
func untar(in io.Reader, dir string) error {
	tr := tar.NewReader(in)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if !filepath.IsLocal(h.Name) {
			return fmt.Errorf("entry %q leaves the archive", h.Name)
		}
		path := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(path, 0o755)
		case tar.TypeReg:
			err = writeFrom(path, tr)
		}
		if err != nil {
			return err
		}
	}
}

func writeFrom(path string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
