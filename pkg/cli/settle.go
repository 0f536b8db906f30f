package cli

import (
	"context"
	"time"

	"github.com/skiff-dev/skiff/internal/lifecycle"
	"github.com/skiff-dev/skiff/internal/memory"
)

// startupSettles is how long after Ready a server or agent settles its
// memory (settleAfter): the add-ons' images are imported and their pods
// started by then.
const startupSettles = 30 * time.Second

// settleAfter is the part that calls memory.Settle once, delay after it
// starts: placed after the parts that say a process is ready, so that what
// start-up touched is dropped, and what the running process uses comes
// back before anyone measures it.
func settleAfter(delay time.Duration) lifecycle.Component {
	return lifecycle.Run("settle memory", func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		memory.Settle()
		<-ctx.Done()
		return nil
	})
}
