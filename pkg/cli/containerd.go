package cli

import (
	"os"
	"time"

	"github.com/containerd/containerd/v2/cmd/containerd/command"
	ctrapp "github.com/containerd/containerd/v2/cmd/ctr/app"
	"github.com/spf13/cobra"

	// containerd's plugins (snapshotters, the CRI, the runc runtime), as
	// its own main imports them.
	_ "github.com/containerd/containerd/v2/cmd/containerd/builtins"

	"github.com/skiff-dev/skiff/internal/memory"
	"github.com/skiff-dev/skiff/pkg/config"
)

// containerdSettles is how long containerd runs before it settles its
// memory (memory.SettleIn): its node is Ready and the add-ons' images
// imported by then.
const containerdSettles = 30 * time.Second

// newContainerdCommand is upstream containerd, run by the agent as a child
// process of the same binary; not meant to be run by hand.
func newContainerdCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "containerd",
		Short:              "Run containerd (started by the agent)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			// The pages its start-up touched (the whole binary's package
			// initialisers), and the garbage of importing the images, go
			// once the agent has had time to import them.
			memory.SettleIn(containerdSettles)
			return command.App().Run(cmd.Context(), append([]string{"containerd"}, args...))
		},
	}
}

// newCtrCommand is upstream ctr, aimed at the agent's containerd and the
// Kubernetes namespace unless told otherwise (--address/-a, --namespace/-n,
// or CONTAINERD_ADDRESS and CONTAINERD_NAMESPACE).
func newCtrCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "ctr",
		Short:              "Run containerd's ctr against this node's containerd",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			agent := config.Agent{RunDir: config.DefaultRunDir}
			setEnvDefault("CONTAINERD_ADDRESS", agent.ContainerdSocket())
			setEnvDefault("CONTAINERD_NAMESPACE", config.ContainerdNamespace)
			return ctrapp.New().Run(cmd.Context(), append([]string{"ctr"}, args...))
		},
	}
}

func setEnvDefault(name, value string) {
	if os.Getenv(name) == "" {
		os.Setenv(name, value)
	}
}
