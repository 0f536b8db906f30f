// Package cli holds skiff's subcommands: each turns its flags and the config
// file into a typed configuration and hands it to the package that runs it.
package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/skiff-dev/skiff/pkg/version"
)

// NewRootCommand is `skiff` with every subcommand.
func NewRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "skiff",
		Short:         "A small, fast Kubernetes distribution in one binary",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServerCommand(), newAgentCommand(), newTokenCommand(), newEtcdCommand(), newCertificateCommand(), newSecretsEncryptCommand(), newDatastoreCommand(), newSnapshotCommand("etcd-snapshot"), newConfigCommand(), newKubectlCommand(), newCtrCommand(), newCheckConfigCommand(), newCrictlCommand(), &cobra.Command{
		Use:   "version",
		Short: "Print skiff's and Kubernetes' versions",
		Args:  cobra.NoArgs,
		Run:   func(*cobra.Command, []string) { fmt.Print(version.String()) },
	})
	return root
}

// Execute runs the root command with args and returns the exit code. Errors
// are printed as one line: the message is written to be acted on.
func Execute(args []string) int {
	root := NewRootCommand()
	// `--version` is handled here rather than by cobra: component-base
	// registers its own --version flag on pflag's global set, which cobra
	// merges into every command, so cobra's version flag cannot be declared.
	if len(args) == 1 && args[0] == "--version" {
		args = []string{"version"}
	}
	// Process-wide, once: hide that global flag from every command's help,
	// where its text ("sets the reported version") would mislead.
	if f := pflag.CommandLine.Lookup("version"); f != nil {
		f.Hidden = true
	}
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "skiff: "+err.Error())
		return 1
	}
	return 0
}
