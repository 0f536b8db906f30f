package cli

import (
	"errors"
	"io"

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
	cmd.AddCommand(newServerConfigCommand())
	return cmd
}

func newServerConfigCommand() *cobra.Command {
	f := &serverFlags{}
	cmd := &cobra.Command{
		Use:   "server [server flags]",
		Short: "Check these `skiff server` flags (and SKIFF_* variables) and print them as a config file",
		Long: "Check these `skiff server` flags and SKIFF_* variables as `skiff server` would, then print the\n" +
			"flags given as a config file (keys are the flag names). data-dir and write-kubeconfig are always\n" +
			"written, resolved, so the file says where the server keeps its state. Every value is a\n" +
			"double-quoted YAML string.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			if fs.Changed("config") {
				return errors.New("--config names a file to read and has no place inside one")
			}
			given := map[string]bool{"data-dir": true, "write-kubeconfig": true}
			fs.Visit(func(fl *pflag.Flag) { given[fl.Name] = true })
			from := origins{}
			if err := applyEnv(fs, from); err != nil {
				return err
			}
			if _, err := f.serverConfig(from); err != nil {
				return err
			}
			return writeConfigFile(cmd.OutOrStdout(), fs, given)
		},
	}
	f.add(cmd.Flags())
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
