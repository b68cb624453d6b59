package registry

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/vmbuild/vmbuild/internal/redact"
)

// retryTransport retries transient failures of requests whose body can be
// replayed (no body, or GetBody set by a bytes body we created). Streaming
// uploads are retried at the operation level instead, see pushWithRetry.
type retryTransport struct {
	c    *Client
	next http.RoundTripper
}

type noRetryKey struct{}

// withoutTransportRetry marks requests made with ctx as not retryable by the
// transport (the operation retries as a whole).
func withoutTransportRetry(ctx context.Context) context.Context {
	return context.WithValue(ctx, noRetryKey{}, true)
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	if v, _ := req.Context().Value(noRetryKey{}).(bool); v {
		replayable = false
	}
	// containerd's streaming pusher sets GetBody to a function that creates
	// a new pipe: calling it would break the writer, so PUT/PATCH bodies are
	// never replayed here.
	if req.Body != nil && req.Body != http.NoBody && (req.Method == http.MethodPut || req.Method == http.MethodPatch) {
		if _, ok := req.Context().Value(replayableBodyKey{}).(bool); !ok {
			replayable = false
		}
	}
	attempts := t.c.attempts
	if !replayable {
		attempts = 1
	}
	var lastErr error
	for i := 0; i < attempts; i++ {
		r := req
		if i > 0 {
			if err := t.c.sleep(req.Context(), i); err != nil {
				return nil, err
			}
			r = req.Clone(req.Context())
			if req.GetBody != nil && req.Body != nil && req.Body != http.NoBody {
				b, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				r.Body = b
			}
		}
		resp, err := t.next.RoundTrip(r)
		if err != nil {
			if !t.c.transientErr(req.URL.Host, err) || i == attempts-1 {
				return nil, err
			}
			t.c.log.Debug("registry request failed, retrying", "method", req.Method, "url", redact.Text(req.URL.String()), "attempt", i+1, "err", err)
			lastErr = err
			continue
		}
		t.c.seen.Store(req.URL.Host, true)
		if retryableStatus(resp.StatusCode) && i < attempts-1 {
			t.c.log.Debug("registry answered with a transient status, retrying", "method", req.Method, "url", redact.Text(req.URL.String()), "status", resp.StatusCode, "attempt", i+1)
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			continue
		}
		return resp, nil
	}
	return nil, lastErr
}

type replayableBodyKey struct{}

func retryableStatus(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusRequestTimeout,
		http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// transientErr reports whether a transport error is worth retrying.
// Connection refused counts only for a host that answered before in this
// client's life: a registry that was never up is a configuration error.
func (c *Client) transientErr(host string, err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		_, ok := c.seen.Load(host)
		return ok
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return false
}

// sleep waits the backoff before attempt i (i >= 1).
func (c *Client) sleep(ctx context.Context, i int) error {
	d := c.backoff
	for j := 1; j < i; j++ {
		d *= 2
		if d >= c.maxBackoff {
			d = c.maxBackoff
			break
		}
	}
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
