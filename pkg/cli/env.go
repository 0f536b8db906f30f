package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// EnvPrefix starts the environment variable of every flag: --data-dir is
// SKIFF_DATA_DIR, as k3s has K3S_DATA_DIR and the like.
const EnvPrefix = "SKIFF_"

// envName is the environment variable for a flag. As in k3s, the config
// file's is SKIFF_CONFIG_FILE (K3S_CONFIG_FILE) and the server to join's
// SKIFF_URL (K3S_URL).
func envName(flag string) string {
	switch flag {
	case "config":
		return EnvPrefix + "CONFIG_FILE"
	case "server":
		return EnvPrefix + "URL"
	}
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv sets every flag not given on the command line from its
// environment variable, if that is set: the command line wins over the
// environment, which wins over the config file (k3s's order). A repeatable
// flag takes a comma-separated list.
func applyEnv(fs *pflag.FlagSet, from origins) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" || f.Name == "version" {
			return // not skiff's settings (version is component-base's global flag)
		}
		value, ok := os.LookupEnv(envName(f.Name))
		if !ok || f.Changed || err != nil {
			return
		}
		values := []string{value}
		if _, repeatable := f.Value.(pflag.SliceValue); repeatable {
			values = strings.Split(value, ",")
		}
		for _, v := range values {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("environment variable %s: invalid value %q: %w", envName(f.Name), v, serr)
				return
			}
		}
		from[f.Name] = "$" + envName(f.Name)
	})
	return err
}
