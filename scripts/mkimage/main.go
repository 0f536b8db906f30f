// Command mkimage builds a container image from a root file system directory
// and writes it as an OCI image archive, for the images skiff embeds and the
// test images (see scripts/pause-image.sh and scripts/busybox-image.sh).
//
//	go run ./scripts/mkimage -name NAME -rootfs DIR [-entrypoint ARG]... [-cmd ARG]...
//		[-env K=V]... [-label K=V]... [-workdir DIR] [-arch GOARCH] -o OUT.tar
package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/skiff-dev/skiff/pkg/image"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, " ") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var cfg image.Config
	var entrypoint, cmd, env, labels list
	flag.StringVar(&cfg.Name, "name", "", "full image name with tag, such as docker.io/library/busybox:latest")
	rootfs := flag.String("rootfs", "", "directory holding the image's files")
	out := flag.String("o", "", "OCI archive to write")
	flag.Var(&entrypoint, "entrypoint", "entrypoint argument (repeatable)")
	flag.Var(&cmd, "cmd", "command argument (repeatable)")
	flag.Var(&env, "env", "environment variable K=V (repeatable)")
	flag.Var(&labels, "label", "image label K=V (repeatable)")
	flag.StringVar(&cfg.WorkingDir, "workdir", "", "working directory")
	flag.StringVar(&cfg.Arch, "arch", "", "GOARCH of the programs in -rootfs (default: this machine's)")
	level := flag.Int("zstd-level", 19, "zstd level of the layer: 19 for images skiff embeds; a low one builds faster images that are only imported")
	flag.Parse()
	cfg.Entrypoint, cfg.Cmd, cfg.Env = entrypoint, cmd, env
	err := run(cfg, labels, *rootfs, *out, *level)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(cfg image.Config, labels []string, rootfs, out string, level int) error {
	if cfg.Name == "" || rootfs == "" || out == "" {
		return errors.New("-name, -rootfs and -o are required")
	}
	// A stray argument is most likely a command word meant for -cmd; say so
	// rather than build an image without it.
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (give each command word its own -cmd)", flag.Args())
	}
	for _, kv := range labels {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("-label %q: want KEY=VALUE", kv)
		}
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		cfg.Labels[k] = v
	}
	layer, err := image.LayerFromDir(rootfs, layerCompressor(level))
	if err != nil {
		return err
	}
	img, err := image.Build(cfg, layer)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := image.WriteOCIArchive(&buf, img, cfg.Name); err != nil {
		return err
	}
	return writeIfChanged(out, buf.Bytes())
}

// layerCompressor compresses a layer with the zstd program at level: at 19
// a third smaller than gzip, which matters in a binary that embeds the
// images. That takes ~30 s for an add-on's layer, so results are kept in the
// user's cache directory under the uncompressed layer's checksum, and an
// unchanged image is written again at no cost. zstd's output does not
// depend on the number of threads, so the cache holds what a compression
// here would give.
func layerCompressor(level int) func(tar []byte) ([]byte, error) {
	flag := fmt.Sprintf("-%d", level)
	return func(tar []byte) ([]byte, error) {
		dir, err := os.UserCacheDir()
		if err != nil {
			return nil, err
		}
		cached := filepath.Join(dir, "skiff-mkimage", fmt.Sprintf("%x.%s.zst", sha256.Sum256(tar), flag))
		if data, err := os.ReadFile(cached); err == nil {
			return data, nil
		}
		cmd := exec.Command("zstd", "-q", flag, "-T0", "-c")
		cmd.Stdin = bytes.NewReader(tar)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		data, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("zstd %s (apt-get install zstd): %w %s", flag, err, stderr.Bytes())
		}
		if err := os.MkdirAll(filepath.Dir(cached), 0o755); err == nil {
			_ = writeIfChanged(cached, data) // a cache: a failure costs time only
		}
		return data, nil
	}
}

// writeIfChanged replaces out with data atomically (a temporary file in the
// same directory, renamed over it), and only when the bytes differ, so an
// unchanged image keeps its modification time and `make` sees nothing new.
func writeIfChanged(out string, data []byte) error {
	if old, err := os.ReadFile(out); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644) // CreateTemp makes it 0600
	}
	if err == nil {
		err = os.Rename(tmp.Name(), out)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return nil
}
