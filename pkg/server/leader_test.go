package server

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// Of two servers one runs the controller; when it stops, it releases the
// lease and the other takes over; a stop through the context is no
// failure.
func TestLeaderElectedRunsOneAtATime(t *testing.T) {
	client := fake.NewClientset()
	var running, runs atomic.Int32
	run := func(ctx context.Context) error {
		if running.Add(1) > 1 {
			t.Error("two servers run the controller at once")
		}
		runs.Add(1)
		<-ctx.Done()
		running.Add(-1)
		return nil
	}
	ctx1, stop1 := context.WithCancel(context.Background())
	ctx2, stop2 := context.WithCancel(context.Background())
	defer stop2()
	done1, done2 := make(chan error, 1), make(chan error, 1)
	go func() { done1 <- leaderElected("test", client, run)(ctx1) }()
	waitFor(t, func() bool { return runs.Load() == 1 })
	go func() { done2 <- leaderElected("test", client, run)(ctx2) }()
	time.Sleep(3 * retryPeriod / 2)
	if runs.Load() != 1 {
		t.Fatalf("the second server runs the controller while the first holds the lease")
	}
	stop1()
	if err := <-done1; err != nil {
		t.Errorf("a stop through the context: %v", err)
	}
	waitFor(t, func() bool { return runs.Load() == 2 }) // released, not expired: well under the lease's 15s
	stop2()
	if err := <-done2; err != nil {
		t.Errorf("a stop through the context: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A server that cannot renew its lease stops the controller and reports
// the loss, for the runner to stop the server cleanly.
func TestLeaderElectedReportsALostLease(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the renew deadline")
	}
	client := fake.NewClientset()
	var stopped atomic.Bool
	started := make(chan struct{})
	run := func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		stopped.Store(true)
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- leaderElected("test", client, run)(context.Background()) }()
	<-started
	// The datastore stops answering the lease's renewals.
	client.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("etcdserver: request timed out")
	})
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "lost the test lease") || !stopped.Load() {
			t.Errorf("after a lost lease: %v (controller stopped: %v)", err, stopped.Load())
		}
	case <-time.After(renewDeadline + 10*time.Second):
		t.Fatal("the controller ran on without its lease")
	}
}
