package lifecycle

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// journal records what the parts did, in order.
type journal struct {
	mu     sync.Mutex
	events []string
}

func (j *journal) add(e string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events = append(j.events, e)
}

func (j *journal) get() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.events)
}

// part is a long-running Task that logs its start (in Start) and stop, and
// fails with fail when that channel is closed.
func part(j *journal, name string, fail <-chan struct{}) *Task {
	return Run(name, func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			j.add("stop " + name)
			return nil
		case <-fail:
			j.add("fail " + name)
			return errors.New(name + " broke")
		}
	}).WithSetup(func(context.Context) error {
		j.add("start " + name)
		return nil
	})
}

func TestRunnerStartsInOrderAndStopsInReverse(t *testing.T) {
	j := &journal{}
	r := &Runner{Components: []Component{
		part(j, "a", nil),
		Step("b", func(context.Context) error { j.add("step b"); return nil }),
		part(j, "c", nil).WithReady(func(ctx context.Context) error {
			// c is ready only once it runs: d must not start before.
			for !slices.Contains(j.get(), "start c") {
				time.Sleep(time.Millisecond)
			}
			j.add("ready c")
			return nil
		}),
		part(j, "d", nil),
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	waitFor(t, j, "start d")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("shutdown through ctx: %v", err)
	}
	want := []string{"start a", "step b", "start c", "ready c", "start d", "stop d", "stop c", "stop a"}
	if got := j.get(); !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

func TestRunnerNamesAFailedStartAndStopsWhatStarted(t *testing.T) {
	j := &journal{}
	r := &Runner{Components: []Component{
		part(j, "a", nil),
		Step("b", func(context.Context) error { return errors.New("no disk") }),
		part(j, "c", nil),
	}}
	err := r.Run(context.Background())
	if err == nil || err.Error() != "b: no disk" {
		t.Fatalf("got %v, want b: no disk", err)
	}
	if got, want := j.get(), []string{"start a", "stop a"}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v (c never started, a stopped)", got, want)
	}
}

func TestRunnerReportsAPartThatFailsLater(t *testing.T) {
	j := &journal{}
	fail := make(chan struct{})
	r := &Runner{Components: []Component{part(j, "a", nil), part(j, "b", fail), part(j, "c", nil)}}
	done := make(chan error)
	go func() { done <- r.Run(context.Background()) }()
	waitFor(t, j, "start c")
	close(fail)
	err := <-done
	if err == nil || err.Error() != "b: b broke" {
		t.Fatalf("got %v, want b: b broke", err)
	}
	if got, want := j.get(), []string{"start a", "start b", "start c", "fail b", "stop c", "stop a"}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

func TestRunnerCallsANilReturnAFailure(t *testing.T) {
	r := &Runner{Components: []Component{Run("quitter", func(context.Context) error { return nil })}}
	if err := r.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "quitter: stopped unexpectedly") {
		t.Fatalf("got %v", err)
	}
}

// A part that fails while a later one waits to be ready ends that wait, and
// the failure reported is the first part's.
func TestRunnerFailureEndsAWaitingStart(t *testing.T) {
	j := &journal{}
	fail := make(chan struct{})
	waiting := Run("waiter", func(ctx context.Context) error { <-ctx.Done(); return nil }).
		WithReady(func(ctx context.Context) error {
			close(fail)
			<-ctx.Done()
			return ctx.Err()
		})
	r := &Runner{Components: []Component{part(j, "a", fail), waiting}}
	errc := make(chan error)
	go func() { errc <- r.Run(context.Background()) }()
	select {
	case err := <-errc:
		if err == nil || err.Error() != "a: a broke" {
			t.Fatalf("got %v, want a: a broke", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting start did not end when the part before it failed")
	}
}

func TestReadyWaitEndsWhenThePartDies(t *testing.T) {
	task := Run("dies", func(context.Context) error { return errors.New("exit 1") }).
		WithReady(func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	if err := task.Start(context.Background()); err == nil || err.Error() != "exit 1" {
		t.Fatalf("got %v, want the run function's error", err)
	}
	if err := task.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Stopping is bounded: a part that does not stop is given up on, and the
// parts before it are still stopped.
func TestRunnerBoundsAStop(t *testing.T) {
	j := &journal{}
	stuck := Run("stuck", func(ctx context.Context) error {
		<-ctx.Done()
		j.add("stuck asked to stop")
		select {} // never returns
	})
	r := &Runner{Components: []Component{part(j, "a", nil), stuck}, StopTimeout: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	waitFor(t, j, "start a")
	time.Sleep(10 * time.Millisecond)
	begin := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("stopping took %s with a 50ms bound", took)
	}
	if got, want := j.get(), []string{"start a", "stuck asked to stop", "stop a"}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

func TestShutdownWhileStartingIsNotAnError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	slow := Step("slow", func(ctx context.Context) error {
		cancel()
		<-ctx.Done()
		return ctx.Err()
	})
	if err := (&Runner{Components: []Component{slow}}).Run(ctx); err != nil {
		t.Fatalf("got %v, want nil", err)
	}
}

func waitFor(t *testing.T, j *journal, event string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(j.get(), event) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %v", event, j.get())
		}
		time.Sleep(time.Millisecond)
	}
}

// Every waits one interval before its first check, then checks on each
// interval until stopped, and stops cleanly.
func TestEveryChecksOnEachIntervalNotAtStart(t *testing.T) {
	var mu sync.Mutex
	var at []time.Duration
	start := time.Now()
	part := Every("check", 50*time.Millisecond, func(context.Context) {
		mu.Lock()
		defer mu.Unlock()
		at = append(at, time.Since(start))
	})
	if err := part.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(180 * time.Millisecond)
	if err := part.Stop(context.Background()); err != nil {
		t.Fatalf("stop: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(at) < 2 || at[0] < 50*time.Millisecond {
		t.Errorf("checks at %v: want the first one interval after the start, then more", at)
	}
}
