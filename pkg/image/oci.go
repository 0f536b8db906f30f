package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/distribution/reference"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Config is what an image says about how to run it.
type Config struct {
	Name       string // full reference, such as docker.io/library/busybox:latest
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	Labels     map[string]string
}

// Build makes a linux image for this machine's architecture from layers,
// with OCI media types and no creation time, so it is reproducible.
func Build(cfg Config, layers ...v1.Layer) (v1.Image, error) {
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layers...)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config.Entrypoint, cf.Config.Cmd = cfg.Entrypoint, cfg.Cmd
	cf.Config.Env, cf.Config.WorkingDir, cf.Config.Labels = cfg.Env, cfg.WorkingDir, cfg.Labels
	return mutate.ConfigFile(img, cf)
}

// Annotations containerd's importer reads to name an image from an OCI
// archive: the full name first, else the reference name.
const (
	annotationImageName = "io.containerd.image.name"
	annotationRefName   = "org.opencontainers.image.ref.name"
)

// WriteOCIArchive writes img as an OCI image layout in a tar stream, named
// name (a full reference with a tag).
func WriteOCIArchive(w io.Writer, img v1.Image, name string) error {
	ref, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return fmt.Errorf("image name %q: %w", name, err)
	}
	tagged, ok := reference.TagNameOnly(ref).(reference.Tagged)
	if !ok {
		return fmt.Errorf("image name %q has no tag", name)
	}
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	configName, err := img.ConfigName()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	index, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: types.OCIManifestSchema1,
			Digest:    digest,
			Size:      int64(len(manifest)),
			Annotations: map[string]string{
				annotationImageName: reference.TagNameOnly(ref).String(),
				annotationRefName:   tagged.Tag(),
			},
		}},
	})
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	file := func(name string, size int64, r io.Reader) error {
		h := &tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	bytesFile := func(name string, data []byte) error { return file(name, int64(len(data)), bytes.NewReader(data)) }
	if err := bytesFile("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := bytesFile("index.json", index); err != nil {
		return err
	}
	if err := bytesFile("blobs/sha256/"+digest.Hex, manifest); err != nil {
		return err
	}
	if err := bytesFile("blobs/sha256/"+configName.Hex, config); err != nil {
		return err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		size, err := l.Size()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		err = file("blobs/sha256/"+d.Hex, size, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("writing layer %s: %w", d, err)
		}
	}
	return tw.Close()
}

// ArchiveName reads the name of the image in an OCI archive written by
// WriteOCIArchive.
func ArchiveName(archive io.Reader) (string, error) {
	tr := tar.NewReader(archive)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return "", errors.New("no index.json in the archive")
		}
		if err != nil {
			return "", err
		}
		if h.Name != "index.json" {
			continue
		}
		var index v1.IndexManifest
		if err := json.NewDecoder(tr).Decode(&index); err != nil {
			return "", fmt.Errorf("index.json: %w", err)
		}
		for _, m := range index.Manifests {
			if name := m.Annotations[annotationImageName]; name != "" {
				return name, nil
			}
		}
		return "", errors.New("the archive's index names no image")
	}
}
