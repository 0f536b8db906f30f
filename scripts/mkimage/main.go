// Command mkimage builds a container image from a root file system directory
// and writes it as an OCI image archive, for the images skiff embeds and the
// test images (see scripts/pause-image.sh and scripts/busybox-image.sh).
//
//	go run ./scripts/mkimage -name NAME -rootfs DIR [-entrypoint ARG]... [-cmd ARG]... [-env K=V]... -o OUT.tar
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/skiff-dev/skiff/pkg/image"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, " ") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var cfg image.Config
	var entrypoint, cmd, env list
	flag.StringVar(&cfg.Name, "name", "", "full image name with tag, such as docker.io/library/busybox:latest")
	rootfs := flag.String("rootfs", "", "directory holding the image's files")
	out := flag.String("o", "", "OCI archive to write")
	flag.Var(&entrypoint, "entrypoint", "entrypoint argument (repeatable)")
	flag.Var(&cmd, "cmd", "command argument (repeatable)")
	flag.Var(&env, "env", "environment variable K=V (repeatable)")
	flag.StringVar(&cfg.WorkingDir, "workdir", "", "working directory")
	flag.Parse()
	cfg.Entrypoint, cfg.Cmd, cfg.Env = entrypoint, cmd, env
	if err := run(cfg, *rootfs, *out); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(cfg image.Config, rootfs, out string) error {
	if cfg.Name == "" || rootfs == "" || out == "" {
		return errors.New("-name, -rootfs and -o are required")
	}
	layer, err := image.LayerFromDir(rootfs)
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
	// Replace the output only when it changed, so an unchanged image keeps
	// its modification time (and does not look new to the agent's import).
	if old, err := os.ReadFile(out); err == nil && bytes.Equal(old, buf.Bytes()) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}
