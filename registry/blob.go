package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/termsafe"
)

// resolver returns a fresh containerd resolver (fresh push tracker) over
// this client's hosts.
func (c *Client) resolver() remotes.Resolver {
	h := http.Header{}
	h.Set("User-Agent", c.userAgent)
	return docker.NewResolver(docker.ResolverOptions{Hosts: c.hosts, Headers: h})
}

// FetchBlob fetches the blob desc from repo through containerd's fetcher,
// reading at most limit bytes (limit <= 0 means Limits.MaxBlobBytes), and
// checks the content against desc.Digest and desc.Size. External URLs in
// desc are ignored.
func (c *Client) FetchBlob(ctx context.Context, repo string, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	r, err := parseRepo(repo)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = c.limits.MaxBlobBytes
	}
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("fetching blob %q: %w", desc.Digest, err)
	}
	if desc.Size < 0 {
		return nil, fmt.Errorf("fetching blob %s: negative size %d", desc.Digest, desc.Size)
	}
	if desc.Size > limit {
		return nil, fmt.Errorf("fetching blob %s: %w", desc.Digest, sizeLimitError("blob", limit, desc.Size))
	}
	ctx = c.ctx(ctx)
	f, err := c.resolver().Fetcher(ctx, r.String()+"@"+desc.Digest.String())
	if err != nil {
		return nil, fmt.Errorf("fetching blob %s: %w: %w", desc.Digest, errs.ErrRegistry, err)
	}
	d := ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}
	if d.MediaType == "" {
		d.MediaType = "application/octet-stream"
	}
	rc, err := f.Fetch(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("fetching blob %s from %s: %w", desc.Digest, r, classify(err))
	}
	defer rc.Close()
	b, err := readLimited(rc, limit, "blob")
	if err != nil {
		return nil, fmt.Errorf("fetching blob %s: %w", desc.Digest, wrapRead(err))
	}
	if int64(len(b)) != desc.Size {
		return nil, fmt.Errorf("fetching blob %s: got %d bytes, descriptor says %d: %w", desc.Digest, len(b), desc.Size, errs.ErrRegistry)
	}
	if !desc.Digest.Algorithm().Available() {
		return nil, fmt.Errorf("fetching blob %s: unsupported digest algorithm", desc.Digest)
	}
	if got := desc.Digest.Algorithm().FromBytes(b); got != desc.Digest {
		return nil, fmt.Errorf("fetching blob %s: content has digest %s: %w", desc.Digest, got, errs.ErrRegistry)
	}
	return b, nil
}

// PushBlob uploads the blob desc read from r to repo through containerd's
// pusher; a blob the registry already has is not uploaded again. When r is
// an io.Seeker, transient failures retry the whole upload.
func (c *Client) PushBlob(ctx context.Context, repo string, desc ocispec.Descriptor, r io.Reader) error {
	rn, err := parseRepo(repo)
	if err != nil {
		return err
	}
	if err := desc.Digest.Validate(); err != nil {
		return fmt.Errorf("pushing blob %q: %w", desc.Digest, err)
	}
	if desc.MediaType == "" {
		desc.MediaType = "application/octet-stream"
	}
	seeker, canRetry := r.(io.Seeker)
	attempts := 1
	if canRetry {
		attempts = c.attempts
	}
	for i := 0; ; i++ {
		err = c.pushBlobOnce(ctx, rn, desc, r)
		if err == nil || i >= attempts-1 || !retryableErr(err) {
			break
		}
		c.log.Debug("blob upload failed, retrying", "digest", desc.Digest, "attempt", i+1, "err", err)
		if err := c.sleep(ctx, i+1); err != nil {
			return err
		}
		if _, serr := seeker.Seek(0, io.SeekStart); serr != nil {
			return fmt.Errorf("pushing blob %s: rewinding: %w", desc.Digest, serr)
		}
	}
	if err != nil {
		return fmt.Errorf("pushing blob %s to %s: %w", desc.Digest, rn, err)
	}
	return nil
}

func (c *Client) pushBlobOnce(ctx context.Context, rn repoName, desc ocispec.Descriptor, r io.Reader) error {
	ctx = c.ctx(ctx)
	p, err := c.resolver().Pusher(ctx, rn.String()+"@"+desc.Digest.String())
	if err != nil {
		return fmt.Errorf("%w: %w", errs.ErrRegistry, err)
	}
	w, err := p.Push(ctx, ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size})
	if err != nil {
		if errdefs.IsAlreadyExists(err) {
			c.log.Debug("blob exists", "repo", rn.String(), "digest", desc.Digest)
			return nil
		}
		return classify(err)
	}
	defer w.Close()
	v := desc.Digest.Verifier()
	n, err := io.Copy(w, io.TeeReader(io.LimitReader(r, desc.Size+1), v))
	if err != nil {
		return classify(err)
	}
	if n != desc.Size {
		return fmt.Errorf("read %d bytes, descriptor says %d", n, desc.Size)
	}
	if !v.Verified() {
		return fmt.Errorf("content does not match digest %s", desc.Digest)
	}
	if err := w.Commit(ctx, desc.Size, desc.Digest); err != nil {
		return classify(err)
	}
	return nil
}

// classify maps containerd errors onto the errs catalogue. containerd's
// errors carry the registry's status line and error messages: their text
// is escaped (termsafe) and their chain kept.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, errs.ErrRegistry) || errors.Is(err, errs.ErrNotFound) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("%w: %w", errs.ErrNotFound, remoteText{err})
	}
	var ue remoteerrors.ErrUnexpectedStatus
	if errors.As(err, &ue) && ue.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %w", errs.ErrNotFound, remoteText{err})
	}
	return fmt.Errorf("%w: %w", errs.ErrRegistry, remoteText{err})
}

// remoteText is an error whose message may carry a registry's text: it
// prints escaped and unwraps to the original.
type remoteText struct{ err error }

func (e remoteText) Error() string { return termsafe.Text(e.err.Error()) }
func (e remoteText) Unwrap() error { return e.err }

// retryableErr reports whether a failed operation may succeed if retried.
func retryableErr(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ue remoteerrors.ErrUnexpectedStatus
	if errors.As(err, &ue) {
		return retryableStatus(ue.StatusCode)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.ErrClosedPipe) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED)
}
