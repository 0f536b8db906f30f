package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/pkg/payload"
	"github.com/skiff-dev/skiff/pkg/pki"
)

// pinnedLabel keeps the kubelet's image garbage collection away from an
// image (containerd's CRI reports such images as pinned).
const pinnedLabel = "io.cri-containerd.pinned"

// imageScanInterval is how often the images directory is looked at for new
// or changed archives.
const imageScanInterval = 2 * time.Second

// importer loads image archives into containerd's k8s.io namespace and
// remembers what it loaded, so an unchanged archive is not imported again.
type importer struct {
	client      *containerd.Client
	snapshotter string
	statePath   string

	mu    sync.Mutex
	state map[string]imported // by archive path, or "embedded:<name>"
}

type imported struct {
	// Key identifies the archive's content: its sha256 for embedded
	// archives, size and modification time for files.
	Key    string   `json:"key"`
	Images []string `json:"images"`
}

func newImporter(client *containerd.Client, statePath string) *importer {
	im := &importer{client: client, snapshotter: "overlayfs", statePath: statePath, state: map[string]imported{}}
	if data, err := os.ReadFile(statePath); err == nil {
		if err := json.Unmarshal(data, &im.state); err != nil {
			klog.InfoS("Ignoring unreadable image import record; archives will be imported again", "path", statePath, "err", err)
			im.state = map[string]imported{}
		}
	}
	return im
}

// importEmbedded imports the images carried in the binary, pinned.
func (im *importer) importEmbedded(ctx context.Context, archives map[string]payload.Archive) error {
	g, ctx := errgroup.WithContext(ctx)
	for name, a := range archives {
		g.Go(func() error { return im.importOnce(ctx, "embedded:"+name, a.Digest, true, a.Open) })
	}
	return g.Wait()
}

// watchDir imports every archive in dir, runs afterFirstScan, then imports
// archives added or changed later, until ctx ends or afterFirstScan fails.
// A file is imported once its size and modification time have stayed the
// same for one scan, so a copy in progress is not read.
func (im *importer) watchDir(ctx context.Context, dir string, afterFirstScan func() error) error {
	seen, failed := map[string]string{}, map[string]string{}
	im.scan(ctx, dir, seen, failed)
	if err := afterFirstScan(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(imageScanInterval):
		}
		im.scan(ctx, dir, seen, failed)
	}
}

// scan imports the archives of dir that have settled, and returns once
// they are imported. seen holds each file's
// size and modification time from the last scan; failed those of archives
// that did not import, which are tried again only once they change.
func (im *importer) scan(ctx context.Context, dir string, seen, failed map[string]string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			klog.InfoS("Reading the images directory", "dir", dir, "err", err)
		}
		return
	}
	g := errgroup.Group{}
	g.SetLimit(2)
	for _, e := range entries {
		if !isImageArchive(e.Name()) || e.IsDir() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		info, err := e.Info()
		if err != nil {
			continue
		}
		key := fmt.Sprintf("size=%d,mtime=%d", info.Size(), info.ModTime().UnixNano())
		// Settled: unchanged since the last scan, or not written for a
		// scan's interval (a file that was there before skiff started
		// is imported at the first scan).
		settled := seen[path] == key || time.Since(info.ModTime()) > imageScanInterval
		seen[path] = key
		if !settled {
			continue
		}
		im.mu.Lock() // imports of this scan record their failures meanwhile
		skip := failed[path] == key
		im.mu.Unlock()
		if skip {
			continue
		}
		g.Go(func() error {
			err := im.importOnce(ctx, path, key, false, func() (io.ReadCloser, error) { return os.Open(path) })
			if err != nil {
				klog.ErrorS(err, "Importing image archive failed; fix or replace the file to retry", "path", path)
				im.mu.Lock()
				failed[path] = key
				im.mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
}

// isImageArchive tells which files of the images directory are archives.
func isImageArchive(name string) bool {
	for _, ext := range []string{".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// importOnce imports an archive unless the same content was imported before
// and its images are all still in containerd.
func (im *importer) importOnce(ctx context.Context, id, key string, pinned bool, open func() (io.ReadCloser, error)) error {
	im.mu.Lock()
	prev, ok := im.state[id]
	im.mu.Unlock()
	if ok && prev.Key == key && im.allPresent(ctx, prev.Images) {
		return nil
	}
	start := time.Now()
	names, err := im.importArchive(ctx, open, pinned)
	if err != nil {
		return fmt.Errorf("importing %s: %w", id, err)
	}
	klog.InfoS("Imported images", "archive", id, "images", names, "after", time.Since(start).Round(time.Millisecond))
	im.mu.Lock()
	defer im.mu.Unlock()
	im.state[id] = imported{Key: key, Images: names}
	data, err := json.MarshalIndent(im.state, "", "  ")
	if err != nil {
		return err
	}
	return pki.WriteFileIfChanged(im.statePath, data, 0o600)
}

func (im *importer) allPresent(ctx context.Context, names []string) bool {
	for _, n := range names {
		if _, err := im.client.ImageService().Get(ctx, n); err != nil {
			return false
		}
	}
	return len(names) > 0
}

// importArchive loads one OCI-archive or `docker save` archive, plain or
// compressed (gzip, zstd), and unpacks its images for the CRI's snapshotter
// so the first container starts without waiting for it.
func (im *importer) importArchive(ctx context.Context, open func() (io.ReadCloser, error), pinned bool) ([]string, error) {
	f, err := open()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := compression.DecompressStream(f)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var opts []containerd.ImportOpt
	if pinned {
		opts = append(opts, containerd.WithImageLabels(map[string]string{pinnedLabel: "pinned"}))
	}
	imgs, err := im.client.Import(ctx, r, opts...)
	if err != nil {
		return nil, err
	}
	if len(imgs) == 0 {
		return nil, errors.New("the archive names no image (an OCI archive needs an io.containerd.image.name or org.opencontainers.image.ref.name annotation)")
	}
	var names []string
	for _, img := range imgs {
		if err := containerd.NewImage(im.client, img).Unpack(ctx, im.snapshotter); err != nil {
			return nil, fmt.Errorf("unpacking %s: %w", img.Name, err)
		}
		names = append(names, img.Name)
	}
	return names, nil
}
