package cli

import (
	"context"
	"time"

	"github.com/skiff-dev/skiff/internal/lifecycle"
	"github.com/skiff-dev/skiff/internal/memory"
)

// settleAfter is the part that calls memory.Settle once,
// memory.StartupSettles after it starts: placed after the parts that say a
// process is ready, so that what start-up touched is dropped, and what the
// running process uses comes back before anyone measures it.
func settleAfter() lifecycle.Component {
	return lifecycle.Run("settle memory", func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(memory.StartupSettles):
		}
		memory.Settle()
		<-ctx.Done()
		return nil
	})
}
