// Command skiff is the one binary of the skiff Kubernetes distribution. It
// only dispatches: by the name it was called with (a `kubectl` symlink runs
// kubectl), else to its subcommands.
package main

import (
	"os"
	"path/filepath"

	"github.com/skiff-dev/skiff/pkg/cli"
)

func main() {
	if filepath.Base(os.Args[0]) == "kubectl" {
		os.Exit(cli.RunKubectl(os.Args[1:]))
	}
	os.Exit(cli.Execute(os.Args[1:]))
}
