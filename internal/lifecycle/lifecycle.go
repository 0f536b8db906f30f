// Package lifecycle is how every moving part of skiff starts and stops (the
// datastore, the apiserver, the controllers, containerd, the kubelet, ...):
// one small interface, and one runner that starts the parts in order, each
// once the one before it is ready, watches them, and stops them in reverse
// order, each within a bound, waiting for every one.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/klog/v2"
)

// Component is one moving part.
type Component interface {
	// Name names it in logs and errors.
	Name() string
	// Start starts it and returns once it is ready for the parts started
	// after it, or with the error that keeps it from being so. ctx ends
	// when the runner gives up on the start (shutdown).
	Start(ctx context.Context) error
	// Done is closed once the part has stopped: on its own, which is a
	// failure, or after Stop. Err then says why it stopped on its own.
	Done() <-chan struct{}
	Err() error
	// Stop stops it and returns once it has stopped, or when ctx ends:
	// the runner bounds every stop.
	Stop(ctx context.Context) error
}

// DefaultStopTimeout bounds how long the runner waits for one part to stop.
const DefaultStopTimeout = 10 * time.Second

// Runner starts components in order and stops them in reverse.
type Runner struct {
	Components []Component
	// StopTimeout bounds each part's stop; DefaultStopTimeout when zero.
	StopTimeout time.Duration
}

// Run starts every component in order, then waits until ctx ends or a
// component stops on its own, then stops every started component in
// reverse order. It returns nil after a shutdown through ctx, and otherwise
// an error naming the component that failed, to start or later. A part
// that fails while later ones are starting ends their start too.
func (r *Runner) Run(ctx context.Context) error {
	startCtx, cancelStart := context.WithCancel(ctx)
	defer cancelStart()
	var started []Component
	defer func() { r.stop(started) }()
	// Each watcher ends when its component's Done closes, at the latest
	// when the component is stopped; the buffer keeps them from blocking.
	failed := make(chan Component, len(r.Components))
	for _, c := range r.Components {
		klog.V(2).InfoS("Starting", "component", c.Name())
		err := c.Start(startCtx)
		started = append(started, c) // even a failed start may leave something to stop
		select {
		case f := <-failed:
			return failure(f)
		default:
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil // shut down while starting
			}
			return fmt.Errorf("%s: %w", c.Name(), err)
		}
		go func() {
			<-c.Done()
			failed <- c
			cancelStart()
		}()
	}
	select {
	case <-ctx.Done():
		return nil
	case f := <-failed:
		return failure(f)
	}
}

// failure is the error of a component that stopped while it should run,
// whatever it returned.
func failure(c Component) error {
	err := c.Err()
	if err == nil {
		err = errors.New("stopped unexpectedly")
	}
	return fmt.Errorf("%s: %w", c.Name(), err)
}

// stop stops the started components in reverse order, each within the
// bound, and logs those that do not stop in time.
func (r *Runner) stop(started []Component) {
	timeout := r.StopTimeout
	if timeout == 0 {
		timeout = DefaultStopTimeout
	}
	for i := len(started) - 1; i >= 0; i-- {
		c := started[i]
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		begin := time.Now()
		err := c.Stop(ctx)
		cancel()
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			klog.InfoS("Gave up waiting for a component to stop", "component", c.Name(), "timeout", timeout)
		case err != nil:
			klog.ErrorS(err, "Stopping a component", "component", c.Name())
		default:
			klog.V(2).InfoS("Stopped", "component", c.Name(), "took", time.Since(begin).Round(time.Millisecond))
		}
	}
}
