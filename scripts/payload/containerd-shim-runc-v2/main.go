// Command containerd-shim-runc-v2 is upstream's runc shim
// (cmd/containerd-shim-runc-v2) that settles its memory once its container
// has started, as containerd and skiff do. A node runs one shim per pod, so
// what each keeps counts once per pod. The shim's short-lived commands
// (start, delete) exit before they would settle.
package main

import (
	"context"

	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/manager"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/skiff-dev/skiff/internal/memory"

	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/task/plugin"
)

func main() {
	memory.SetGCPercent()
	memory.SettleIn(memory.StartupSettles)
	shim.RunShim(context.Background(), manager.NewShimManager("io.containerd.runc.v2"))
}
