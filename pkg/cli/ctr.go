package cli

import (
	"os"

	ctrapp "github.com/containerd/containerd/v2/cmd/ctr/app"
	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/pkg/config"
)

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
