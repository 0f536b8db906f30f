// Package image builds container images from files and writes them as OCI
// image archives, the format the agent imports without a registry. Output is
// reproducible: the same files give a byte-identical archive.
package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// LayerFromDir makes a zstd-compressed OCI layer of the tree under root:
// directories, regular files with their modes, symbolic links and hard
// links, owned by root, with zero timestamps, in lexical order. compress
// turns the uncompressed tar stream into a zstd stream: the caller chooses
// the level, and may keep results (scripts/mkimage runs the zstd program
// at -19, whose layers are a third smaller than gzip's).
func LayerFromDir(root string, compress func(tar []byte) ([]byte, error)) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	links := map[fileID]string{} // first path of each multiply-linked file
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		target := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if target, err = os.Readlink(path); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, target)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		h.ModTime, h.AccessTime, h.ChangeTime = time.Unix(0, 0), time.Time{}, time.Time{}
		h.Format = tar.FormatPAX
		if id, ok := hardLinkID(info); ok && info.Mode().IsRegular() {
			if first, seen := links[id]; seen {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			} else {
				links[id] = h.Name
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("packing %s into a layer: %w", root, err)
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data, err := compress(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("compressing the layer of %s: %w", root, err)
	}
	if !bytes.HasPrefix(data, zstdMagic) {
		return nil, fmt.Errorf("compressing the layer of %s: the result is not a zstd stream", root)
	}
	// go-containerregistry sees the compressed stream and reads the
	// uncompressed one (for the layer's diff ID) through its zstd reader.
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayerZStd))
}

// zstdMagic starts every zstd frame.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
