package server

import (
	"context"
	"fmt"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

// The upstream components' own lease timings.
const (
	leaseDuration = 15 * time.Second
	renewDeadline = 10 * time.Second
	retryPeriod   = 2 * time.Second
)

// leaderElected runs run only while this server holds the Lease name in
// kube-system, so that of several servers sharing a datastore one runs
// each controller. skiff holds the lease itself, with client-go's
// elector, instead of the components' --leader-elect: upstream ends the
// process when its lease ends (the scheduler even on a requested stop),
// where skiff must stop its other parts in order. run stops before the
// lease is released; a lease lost while running is a failure of the part,
// and the runner then stops the server cleanly for its service manager to
// restart it.
func leaderElected(name string, client kubernetes.Interface, run func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		host, _ := os.Hostname()
		lock, err := resourcelock.New(resourcelock.LeasesResourceLock, "kube-system", name,
			client.CoreV1(), client.CoordinationV1(),
			resourcelock.ResourceLockConfig{Identity: host + "_" + string(uuid.NewUUID())})
		if err != nil {
			return fmt.Errorf("%s lease: %w", name, err)
		}
		// The elector's context ends after run has returned, so that the
		// lease is released (ReleaseOnCancel) only once nothing it guards
		// runs.
		electorCtx, stopElector := context.WithCancel(context.Background())
		defer stopElector()
		lead := make(chan context.Context, 1)
		elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, Name: name, ReleaseOnCancel: true,
			LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(leaderCtx context.Context) { lead <- leaderCtx },
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			return fmt.Errorf("%s lease: %w", name, err)
		}
		electorDone := make(chan struct{})
		go func() {
			defer close(electorDone)
			elector.Run(electorCtx)
		}()
		defer func() {
			stopElector()
			<-electorDone
		}()
		klog.InfoS("Waiting for the lease", "lease", name)
		var leaderCtx context.Context
		select {
		case <-ctx.Done():
			return nil
		case leaderCtx = <-lead:
		}
		klog.InfoS("Leading: starting", "lease", name)
		runCtx, cancel := context.WithCancel(leaderCtx)
		defer cancel()
		defer context.AfterFunc(ctx, cancel)()
		err = run(runCtx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			return err
		}
		return fmt.Errorf("lost the %s lease (the datastore or the apiserver did not answer within %s); stopping so that the service manager restarts this server", name, renewDeadline)
	}
}
