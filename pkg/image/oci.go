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
	// Name is the image's full reference, such as
	// docker.io/library/busybox:latest. Build does not store it (a name is
	// not part of an image); callers pass it on to WriteOCIArchive.
	Name       string
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	Labels     map[string]string
	// Arch is the GOARCH of the image's programs, empty for this
	// machine's; an image built for another architecture (a release for
	// arm64 boards) must say so, or containerd there will not run it.
	Arch string
}

// Build makes a linux image for cfg.Arch (this machine's when empty) from
// layers, with OCI media types and a fixed creation time, so it is reproducible.
func Build(cfg Config, layers ...v1.Layer) (v1.Image, error) {
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layers...)
	if err != nil {
		return nil, fmt.Errorf("adding layers to the image: %w", err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the image config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", cfg.Arch
	if cf.Architecture == "" {
		cf.Architecture = runtime.GOARCH
	}
	if cf.Architecture == "arm" {
		cf.Variant = "v7" // the only 32-bit ARM skiff builds for (GOARM=7, armhf)
	}
	// The Unix epoch, not the build time, so that rebuilding the same files
	// gives the same image ID (the reproducible-builds convention).
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	for i := range cf.History { // one entry per layer, else dated year 1
		cf.History[i].Created = cf.Created
	}
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
// name (a full reference; a short name like "busybox" is normalised to
// docker.io/library/busybox:latest, as the CRI does when a pod names it).
// The index's one manifest carries both io.containerd.image.name (the full
// name, which containerd's Import uses verbatim as the image's name) and
// org.opencontainers.image.ref.name (the tag, for other OCI tools; containerd
// falls back to it only without the first, and then it is a bare tag).
func WriteOCIArchive(w io.Writer, img v1.Image, name string) error {
	if err := writeOCIArchive(w, img, name); err != nil {
		return fmt.Errorf("writing the OCI archive of %s: %w", name, err)
	}
	return nil
}

func writeOCIArchive(w io.Writer, img v1.Image, name string) error {
	ref, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return fmt.Errorf("bad image name: %w", err)
	}
	tagged, ok := reference.TagNameOnly(ref).(reference.Tagged)
	if !ok {
		return errors.New("the image name has a digest and no tag")
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
				annotationImageName: tagged.String(),
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
	written := map[v1.Hash]bool{} // the same layer twice is one blob
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		if written[d] {
			continue
		}
		written[d] = true
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
