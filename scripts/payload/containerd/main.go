// Command containerd is upstream's containerd (cmd/containerd, the same
// plugins) that settles its memory once its node has started, as skiff
// itself does: the runtime's start-up garbage goes back to the system and
// the pages of its 40 MB binary that start-up touched (the image imports,
// the first pods) are dropped, so that what stays resident is what the
// daemon keeps using.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/cmd/containerd/command"
	"github.com/skiff-dev/skiff/internal/memory"

	_ "github.com/containerd/containerd/v2/cmd/containerd/builtins"
)

func main() {
	memory.SetGCPercent()
	memory.SettleIn(memory.StartupSettles)
	if err := command.App().Run(context.Background(), os.Args); err != nil {
		_, _ = fmt.Fprintln(os.Stderr, "containerd:", err)
		os.Exit(1)
	}
}
