package server

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"
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
