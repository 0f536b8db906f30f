package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/skiff-dev/skiff/pkg/config"
)

// origins records where each setting came from, to say so in errors.
type origins map[string]string

func (o origins) of(flag string) string {
	if where, ok := o[flag]; ok {
		return where
	}
	return "--" + flag
}

// wrap names where the setting of a *config.FieldError came from.
func (o origins) wrap(err error) error {
	var fe *config.FieldError
	if errors.As(err, &fe) {
		return fmt.Errorf("%w (from %s)", err, o.of(fe.Field))
	}
	return err
}

// applyConfigFile sets, from the YAML file at path, every flag that was not
// given on the command line: the keys are the flag names, a list sets a
// repeatable flag, and command-line flags win (k3s semantics). A missing file
// is fine unless the user named it. Unknown keys and malformed values stop
// with the file and line.
func applyConfigFile(fs *pflag.FlagSet, path string, required bool, from origins) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !required {
		return nil
	}
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config file %s is not valid YAML: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil // empty file
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return fmt.Errorf("config file %s:%d: expected a map of flag names to values", path, top.Line)
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		key, value := top.Content[i], top.Content[i+1]
		where := fmt.Sprintf("%s:%d", path, key.Line)
		flag := fs.Lookup(key.Value)
		if flag == nil || key.Value == "config" || key.Value == "help" {
			return fmt.Errorf("config file %s: unknown key %q (keys are the flag names of this command; see --help)", where, key.Value)
		}
		var values []*yaml.Node
		switch value.Kind {
		case yaml.ScalarNode:
			values = []*yaml.Node{value}
		case yaml.SequenceNode:
			if _, repeatable := flag.Value.(pflag.SliceValue); !repeatable {
				return fmt.Errorf("config file %s: key %q takes one value, not a list", where, key.Value)
			}
			values = value.Content
		default:
			return fmt.Errorf("config file %s: key %q must be a value or a list of values", where, key.Value)
		}
		if flag.Changed {
			continue // the command line wins, but a malformed entry was still an error
		}
		for _, v := range values {
			if v.Kind != yaml.ScalarNode {
				return fmt.Errorf("config file %s:%d: key %q: list items must be plain values", path, v.Line, key.Value)
			}
			if err := fs.Set(key.Value, v.Value); err != nil {
				return fmt.Errorf("config file %s: invalid value %q for %q: %w", where, v.Value, key.Value, err)
			}
		}
		from[key.Value] = "config file " + where
	}
	return nil
}
