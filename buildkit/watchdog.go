package buildkit

import (
	"context"
	"fmt"
	"time"

	"github.com/moby/buildkit/client"

	"github.com/vmbuild/vmbuild/errs"
)

// WatchdogOptions tune Watchdog. Zero values take the documented defaults.
type WatchdogOptions struct {
	// Interval between pings. Default 5s.
	Interval time.Duration
	// Timeout for one ping. Default 10s.
	Timeout time.Duration
	// Failures in a row that count as a lost daemon. Default 3.
	Failures int
}

// Watchdog returns a context that is cancelled, with a cause wrapping
// errs.ErrBuildKitUnavailable, when buildkitd stops answering: a killed
// daemon is usually noticed by the build's own stream, but a hung one
// (stopped, partitioned) is not. Call stop when the build is over.
func Watchdog(ctx context.Context, c *client.Client, o WatchdogOptions) (context.Context, func()) {
	if o.Interval == 0 {
		o.Interval = 5 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Failures == 0 {
		o.Failures = 3
	}
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(o.Interval)
		defer t.Stop()
		failed := 0
		var last error
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			pctx, pcancel := context.WithTimeout(ctx, o.Timeout)
			_, err := c.Info(pctx)
			pcancel()
			if err == nil {
				failed = 0
				continue
			}
			if ctx.Err() != nil {
				return
			}
			failed++
			last = err
			if failed >= o.Failures {
				cancel(fmt.Errorf("watching buildkitd: %w: no answer to %d pings in a row: %v", errs.ErrBuildKitUnavailable, failed, last))
				return
			}
		}
	}()
	return ctx, func() { close(done); cancel(nil) }
}
