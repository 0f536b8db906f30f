package cli

import (
	"errors"
	"os"

	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/hostcheck"
)

// newCheckConfigCommand checks this host for what the node agent needs, as
// k3s check-config does, and exits non-zero when a hard requirement fails.
func newCheckConfigCommand() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "check-config",
		Short: "Check that this host can run the node agent (kernel features, cgroups, programs)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags(), origins{}); err != nil {
				return err
			}
			results := hostcheck.Host{DataDir: dataDir}.Run()
			hostcheck.Report(os.Stdout, results)
			if len(hostcheck.Failed(results)) > 0 {
				return errors.New("this host cannot run the node agent: fix the FAIL lines above")
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&dataDir, "data-dir", "d", config.DefaultDataDir, "Data dir whose free space is checked")
	return cmd
}
