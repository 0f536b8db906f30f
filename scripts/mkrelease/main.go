// Command mkrelease writes a skiff release binary: the launcher, then the
// skiff program as a zstd stream, then the trailer (see pkg/selfextract).
// scripts/pack-release.sh builds its inputs.
//
//	go run ./scripts/mkrelease -launcher LAUNCHER -program PROGRAM.zst -o OUT
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/skiff-dev/skiff/pkg/selfextract"
)

func main() {
	launcher := flag.String("launcher", "", "the launcher program (cmd/skiff-selfextract) for the release's architecture")
	program := flag.String("program", "", "the skiff program, compressed with zstd")
	out := flag.String("o", "", "release binary to write")
	flag.Parse()
	if err := run(*launcher, *program, *out); err != nil {
		fmt.Fprintln(os.Stderr, "mkrelease:", err)
		os.Exit(1)
	}
}

func run(launcher, program, out string) error {
	if launcher == "" || program == "" || out == "" || flag.NArg() > 0 {
		return errors.New("usage: mkrelease -launcher LAUNCHER -program PROGRAM.zst -o OUT")
	}
	l, err := os.Open(launcher)
	if err != nil {
		return err
	}
	defer l.Close()
	p, err := os.Open(program)
	if err != nil {
		return err
	}
	defer p.Close()
	tmp, err := os.CreateTemp(filepath.Dir(out), ".mkrelease-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := selfextract.Pack(tmp, l, p); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o755); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}
