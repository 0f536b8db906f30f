package control

import (
	"context"
	"fmt"
	"strconv"

	"k8s.io/client-go/tools/cache"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"

	"github.com/skiff-dev/skiff/pkg/config"
)

// SchedulerArgs are skiff's defaults for kube-scheduler, merged with the
// user's --kube-scheduler-arg values. Leader election is off for the reason
// given at ControllerManagerArgs (upstream calls os.Exit when it stops leading).
func SchedulerArgs(cfg *config.Server, kubeconfig string) []string {
	d := map[string]string{
		"authentication-kubeconfig": kubeconfig,
		"authorization-kubeconfig":  kubeconfig,
		"bind-address":              "127.0.0.1",
		"kubeconfig":                kubeconfig,
		"leader-elect":              "false",
		"profiling":                 "false",
		"secure-port":               strconv.Itoa(config.DefaultSchedulerPort),
	}
	return Args(d, cfg.ExtraSchedulerArgs)
}

// RunScheduler runs kube-scheduler until ctx ends.
func RunScheduler(ctx context.Context, args []string) error {
	logArgs("kube-scheduler", args)
	opts, err := schedulerOptions(args)
	if err != nil {
		return err
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("kube-scheduler feature gates: %w", err)
	}
	// Named as the scheduler's own command names them, for informer metrics.
	if opts.InformerName, err = cache.NewInformerName("kube-scheduler"); err != nil {
		return fmt.Errorf("kube-scheduler informers: %w", err)
	}
	cc, sched, err := app.Setup(ctx, opts)
	if err != nil {
		return fmt.Errorf("kube-scheduler setup: %w", err)
	}
	return app.Run(ctx, cc, sched)
}

func schedulerOptions(args []string) (*options.Options, error) {
	opts := options.NewOptions()
	return opts, parseFlags("kube-scheduler", *opts.Flags, args)
}
