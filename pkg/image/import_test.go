package image

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/metadata"
	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/platforms"
	bolt "go.etcd.io/bbolt"
)

// TestContainerdImport imports an archive the way the agent does (the
// containerd client's Import, no options) into an in-process content and
// image store, so the name containerd gives the image is the one we wrote,
// and unpacks the layer with containerd's own applier.
func TestContainerdImport(t *testing.T) {
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "bin"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "bin", "busybox"), []byte("applets"), 0o755))
	must(t, os.Symlink("busybox", filepath.Join(root, "bin", "sh")))
	must(t, os.Link(filepath.Join(root, "bin", "busybox"), filepath.Join(root, "bin", "ls")))
	layer, err := LayerFromDir(root, zstdCompress)
	must(t, err)
	img, err := Build(Config{Cmd: []string{"sh"}}, layer)
	must(t, err)
	var archiveBuf bytes.Buffer
	must(t, WriteOCIArchive(&archiveBuf, img, "busybox"))

	state := t.TempDir()
	bdb, err := bolt.Open(filepath.Join(state, "meta.db"), 0o600, nil)
	must(t, err)
	defer bdb.Close()
	cs, err := local.NewStore(filepath.Join(state, "content"))
	must(t, err)
	db := metadata.NewDB(bdb, cs, nil)
	ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	must(t, db.Init(ctx))
	client, err := containerd.New("", containerd.WithServices(
		containerd.WithContentStore(db.ContentStore()),
		containerd.WithImageStore(metadata.NewImageStore(db)),
		containerd.WithLeasesService(metadata.NewLeaseManager(db)),
	))
	must(t, err)

	imgs, err := client.Import(ctx, &archiveBuf)
	must(t, err)
	if len(imgs) != 1 || imgs[0].Name != "docker.io/library/busybox:latest" {
		t.Fatalf("imported %+v, want one image docker.io/library/busybox:latest", imgs)
	}
	cimg := containerd.NewImage(client, imgs[0])
	spec, err := cimg.Spec(ctx)
	must(t, err)
	if spec.OS != "linux" || spec.Architecture != runtime.GOARCH || !slices.Equal(spec.Config.Cmd, []string{"sh"}) {
		t.Errorf("image config as containerd reads it: %+v", spec)
	}
	manifest, err := images.Manifest(ctx, db.ContentStore(), imgs[0].Target, platforms.Default())
	must(t, err)
	blob, err := content.ReadBlob(ctx, db.ContentStore(), manifest.Layers[0])
	must(t, err)
	gz, err := compression.DecompressStream(bytes.NewReader(blob))
	must(t, err)
	out := t.TempDir()
	_, err = archive.Apply(ctx, out, gz)
	must(t, err)
	if target, err := os.Readlink(filepath.Join(out, "bin", "sh")); err != nil || target != "busybox" {
		t.Errorf("bin/sh unpacked as %q, %v", target, err)
	}
	a, errA := os.Stat(filepath.Join(out, "bin", "busybox"))
	b, errB := os.Stat(filepath.Join(out, "bin", "ls"))
	if errA != nil || errB != nil || !os.SameFile(a, b) || a.Mode().Perm() != 0o755 {
		t.Errorf("hard link unpacked as %v %v (%v, %v)", a, b, errA, errB)
	}
}
