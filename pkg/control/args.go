// Package control builds the arguments of the upstream kube-apiserver,
// kube-controller-manager and kube-scheduler and runs them in-process from
// their own `cmd/*/app` packages.
//
// The components are not started through their cobra commands: those install
// process-wide signal handlers (and kube-scheduler's and
// kube-controller-manager's can only be installed once), which would take
// shutdown ordering away from skiff. Instead each component's own options
// type parses the argument list, exactly as its command line would, and its
// exported Run function is called with a context skiff cancels.
package control

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/pkg/config"
)

// Args merges a component's defaults with the user's extra `flag=value`
// arguments (the user's value wins, as in k3s) into a sorted argument list.
func Args(defaults map[string]string, extra []string) []string {
	merged := make(map[string]string, len(defaults)+len(extra))
	for k, v := range defaults {
		merged[k] = v
	}
	for _, a := range extra {
		// Validated by config.Server.Validate.
		if k, v, err := config.SplitArg(a); err == nil {
			merged[k] = v
		}
	}
	keys := make([]string, 0, len(merged))
	for k := range merged {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := make([]string, 0, len(keys))
	for _, k := range keys {
		args = append(args, "--"+k+"="+merged[k])
	}
	return args
}

// ArgValue returns the value of --name in args, or "" when it is absent.
func ArgValue(args []string, name string) string {
	for _, a := range args {
		if k, v, err := config.SplitArg(a); err == nil && k == name {
			return v
		}
	}
	return ""
}

// CheckArgs parses every component's arguments without starting anything,
// so that a bad --kube-*-arg stops the server before it touches any state.
func CheckArgs(apiserver, controllerManager, scheduler []string) error {
	if _, err := apiServerOptions(apiserver); err != nil {
		return err
	}
	if _, err := controllerManagerOptions(controllerManager); err != nil {
		return err
	}
	_, err := schedulerOptions(scheduler)
	return err
}

func logArgs(component string, args []string) {
	klog.InfoS("Running "+component, "args", strings.Join(args, " "))
}

// parseFlags applies args to a component's flag sets the way its own
// command line does.
func parseFlags(component string, nfs cliflag.NamedFlagSets, args []string) error {
	fs := pflag.NewFlagSet(component, pflag.ContinueOnError)
	fs.SetNormalizeFunc(cliflag.WordSepNormalizeFunc)
	for _, name := range nfs.Order {
		fs.AddFlagSet(nfs.FlagSets[name])
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s arguments: %w (check --%s-arg)", component, err, component)
	}
	return nil
}
