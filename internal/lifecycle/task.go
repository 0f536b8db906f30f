package lifecycle

import (
	"context"
	"errors"
	"time"
)

// Task is a Component made of functions, which is how most of skiff's parts
// are written: an optional setup that must succeed before anything else,
// a run function that blocks until its context ends (the part stops when
// it returns), and an optional readiness wait. Make one with Run or Step.
type Task struct {
	name  string
	setup func(context.Context) error
	run   func(context.Context) error
	ready func(context.Context) error

	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// Run is a long-running part: run blocks until its context is cancelled by
// Stop and then returns. Returning before that is a failure, even with a nil
// error.
func Run(name string, run func(context.Context) error) *Task {
	return &Task{name: name, run: run, done: make(chan struct{})}
}

// Every is a part that calls check once per interval until it is stopped.
// The first call comes one interval after the start: what must happen at
// start belongs to the parts before it, and is not done twice.
func Every(name string, interval time.Duration, check func(context.Context)) *Task {
	return Run(name, func(ctx context.Context) error {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
				check(ctx)
			}
		}
	})
}

// Step is a part that only does something at start (write files, make a
// directory, wait for something): do runs in Start, and the part counts as
// running until it is stopped.
func Step(name string, do func(context.Context) error) *Task {
	return &Task{name: name, setup: do, done: make(chan struct{})}
}

// WithSetup runs setup in Start before the run function starts; an error
// fails the start.
func (t *Task) WithSetup(setup func(context.Context) error) *Task {
	t.setup = setup
	return t
}

// WithReady makes Start return only once ready returns nil, with the run
// function running: the part is then ready for the ones after it.
func (t *Task) WithReady(ready func(context.Context) error) *Task {
	t.ready = ready
	return t
}

// Name implements Component.
func (t *Task) Name() string { return t.name }

// Done implements Component.
func (t *Task) Done() <-chan struct{} { return t.done }

// Err implements Component: what the run function returned.
func (t *Task) Err() error { return t.err }

// Start implements Component. The run function gets a context of its own,
// which only Stop cancels, so that parts stop one by one in reverse order
// rather than all at once.
func (t *Task) Start(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	if t.setup != nil {
		if err := t.setup(ctx); err != nil {
			close(t.done)
			return err
		}
	}
	if t.run == nil {
		go func() {
			<-runCtx.Done()
			close(t.done)
		}()
		return nil
	}
	go func() {
		t.err = t.run(runCtx)
		close(t.done)
	}()
	if t.ready == nil {
		return nil
	}
	// Give up waiting for readiness when the part ends meanwhile.
	readyCtx, stopWaiting := context.WithCancel(ctx)
	defer stopWaiting()
	go func() {
		select {
		case <-t.done:
			stopWaiting()
		case <-readyCtx.Done():
		}
	}()
	err := t.ready(readyCtx)
	select {
	case <-t.done:
		if t.err != nil {
			return t.err
		}
		return errors.New("stopped before it was ready")
	default:
	}
	return err
}

// Stop implements Component: it cancels the run function's context and
// waits for it to return, or for ctx to end.
func (t *Task) Stop(ctx context.Context) error {
	if t.cancel == nil {
		return nil // never started
	}
	t.cancel()
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
