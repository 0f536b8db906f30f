package cli

import (
	"errors"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// newConfigCommand turns a command's flags into the config file that says
// the same: install.sh writes /etc/skiff/config.yaml with it, and a user can
// move a long command line into a file with it.
func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print the config file that a command's flags make, after checking them",
	}
	server := &serverFlags{}
	agent := &agentFlags{}
	cmd.AddCommand(
		configSubcommand("server", server.add, func(from origins) error {
			_, err := server.serverConfig(from)
			return err
		}, "data-dir", "write-kubeconfig"),
		configSubcommand("agent", agent.add, func(from origins) error {
			_, err := agent.agentConfig(from)
			return err
		}, "data-dir"),
	)
	return cmd
}

// configSubcommand is `skiff config <command>`: it checks the command's
// flags with check, as the command would, and prints those given, and the
// always ones resolved, as a config file.
func configSubcommand(command string, addFlags func(*pflag.FlagSet), check func(origins) error, always ...string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   command + " [" + command + " flags]",
		Short: "Check these `skiff " + command + "` flags (and SKIFF_* variables) and print them as a config file",
		Long: "Check these `skiff " + command + "` flags and SKIFF_* variables as `skiff " + command + "` would, then\n" +
			"print the flags given as a config file (keys are the flag names). " + strings.Join(always, " and ") + " are\n" +
			"always written, resolved, so the file says where state is kept. Every value is a\n" +
			"double-quoted YAML string.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			if fs.Changed("config") {
				return errors.New("--config names a file to read and has no place inside one")
			}
			given := map[string]bool{}
			for _, name := range always {
				given[name] = true
			}
			fs.Visit(func(fl *pflag.Flag) { given[fl.Name] = true })
			from := origins{}
			if err := applyEnv(fs, from); err != nil {
				return err
			}
			if err := check(from); err != nil {
				return err
			}
			return writeConfigFile(cmd.OutOrStdout(), fs, given)
		},
	}
	addFlags(cmd.Flags())
	return cmd
}

// writeConfigFile writes the named flags of fs as a config file that
// applyConfigFile reads back to the same values: repeatable flags as lists,
// every value a double-quoted string (parsed by the flag, as on a command
// line), keys in the flag set's order.
func writeConfigFile(w io.Writer, fs *pflag.FlagSet, names map[string]bool) error {
	doc := &yaml.Node{Kind: yaml.MappingNode}
	str := func(s string) *yaml.Node {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Style: yaml.DoubleQuotedStyle, Value: s}
	}
	fs.VisitAll(func(fl *pflag.Flag) {
		if !names[fl.Name] {
			return
		}
		value := str(fl.Value.String())
		if list, ok := fl.Value.(pflag.SliceValue); ok {
			value = &yaml.Node{Kind: yaml.SequenceNode}
			for _, item := range list.GetSlice() {
				value.Content = append(value.Content, str(item))
			}
		}
		doc.Content = append(doc.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: fl.Name}, value)
	})
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return err
	}
	return enc.Close()
}
