// Command skiff is the one binary of the skiff Kubernetes distribution. It
// only dispatches: by the name it was called with (a `kubectl` symlink runs
// kubectl, a `ctr` or `crictl` symlink that subcommand), else to its
// subcommands.
package main

import (
	"os"
	"path/filepath"

	"github.com/skiff-dev/skiff/pkg/cli"
)

func main() {
	switch filepath.Base(os.Args[0]) {
	case "kubectl":
		os.Exit(cli.RunKubectl(os.Args[1:]))
	case "ctr", "crictl":
		os.Exit(cli.Execute(append([]string{filepath.Base(os.Args[0])}, os.Args[1:]...)))
	}
	os.Exit(cli.Execute(os.Args[1:]))
}
