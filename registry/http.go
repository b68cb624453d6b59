package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	creference "github.com/containerd/containerd/v2/pkg/reference"
	"github.com/distribution/reference"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/redact"
	"github.com/vmbuild/vmbuild/internal/termsafe"
)

// repoName is a parsed repository: registry domain and path.
type repoName struct {
	domain string // as written, e.g. docker.io, localhost:5000
	path   string // e.g. library/alpine
}

func (r repoName) String() string { return r.domain + "/" + r.path }

// parseRepo parses a repository name without tag or digest.
func parseRepo(repo string) (repoName, error) {
	named, err := reference.ParseNormalizedNamed(repo)
	if err != nil {
		return repoName{}, fmt.Errorf("parsing repository %q: %w", repo, err)
	}
	if _, ok := named.(reference.Tagged); ok {
		return repoName{}, fmt.Errorf("parsing repository %q: a repository must not carry a tag", repo)
	}
	if _, ok := named.(reference.Digested); ok {
		return repoName{}, fmt.Errorf("parsing repository %q: a repository must not carry a digest", repo)
	}
	return repoName{domain: reference.Domain(named), path: reference.Path(named)}, nil
}

// parsedRef is a parsed image reference.
type parsedRef struct {
	repo   repoName
	tag    string
	digest string // "" unless the reference is by digest
}

// object is what goes after /manifests/: the digest if there is one, else the tag.
func (p parsedRef) object() string {
	if p.digest != "" {
		return p.digest
	}
	return p.tag
}

// parseRef parses "repo:tag", "repo@digest" or "repo" (tag latest).
func parseRef(ref string) (parsedRef, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return parsedRef{}, fmt.Errorf("parsing reference %q: %w", ref, err)
	}
	p := parsedRef{repo: repoName{domain: reference.Domain(named), path: reference.Path(named)}}
	if t, ok := named.(reference.Tagged); ok {
		p.tag = t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		if err := d.Digest().Validate(); err != nil {
			return parsedRef{}, fmt.Errorf("parsing reference %q: %w", ref, err)
		}
		p.digest = d.Digest().String()
	}
	if p.tag == "" && p.digest == "" {
		p.tag = "latest"
	}
	return p, nil
}

// host returns the registry host configuration (scheme, address, client,
// authorizer) from containerd's host configuration.
func (c *Client) host(r repoName) (docker.RegistryHost, error) {
	hs, err := c.hosts(r.domain)
	if err != nil {
		return docker.RegistryHost{}, fmt.Errorf("configuring registry host %s: %w: %w", r.domain, errs.ErrRegistry, err)
	}
	if len(hs) == 0 {
		return docker.RegistryHost{}, fmt.Errorf("configuring registry host %s: no host: %w", r.domain, errs.ErrRegistry)
	}
	return hs[0], nil
}

// scoped adds the repository scope used by containerd's token authorizer.
func scoped(ctx context.Context, r repoName, push bool) (context.Context, error) {
	spec := creference.Spec{Locator: r.String()}
	return docker.ContextWithRepositoryScope(ctx, spec, push)
}

// request describes one registry API call.
type request struct {
	method string
	repo   repoName
	path   string     // after /v2/<repo>/, e.g. "manifests/latest"
	query  url.Values // optional
	header http.Header
	body   []byte // replayable body, or nil
	push   bool   // needs push scope
	rawURL string // absolute URL (pagination, upload locations); overrides path
}

// do sends r, answering at most two authorization challenges through
// containerd's authorizer. The caller closes the body.
func (c *Client) do(ctx context.Context, r request) (*http.Response, error) {
	host, err := c.host(r.repo)
	if err != nil {
		return nil, err
	}
	ctx, err = scoped(c.ctx(ctx), r.repo, r.push)
	if err != nil {
		return nil, err
	}
	u := r.rawURL
	if u == "" {
		u = host.Scheme + "://" + host.Host + host.Path + "/" + r.repo.path + "/" + r.path
		if len(r.query) > 0 {
			u += "?" + r.query.Encode()
		}
	}
	var responses []*http.Response
	for attempt := 0; ; attempt++ {
		rctx := ctx
		if r.body != nil {
			rctx = context.WithValue(ctx, replayableBodyKey{}, true)
		}
		req, err := http.NewRequestWithContext(rctx, r.method, u, nil)
		if err != nil {
			return nil, fmt.Errorf("building request %s %s: %w", r.method, redact.Text(u), err)
		}
		for k, v := range r.header {
			req.Header[k] = append([]string(nil), v...)
		}
		req.Header.Set("User-Agent", c.userAgent)
		if r.body != nil {
			body := r.body
			req.Body = io.NopCloser(bytes.NewReader(body))
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
			req.ContentLength = int64(len(body))
		}
		if host.Authorizer != nil {
			if err := host.Authorizer.Authorize(ctx, req); err != nil {
				return nil, fmt.Errorf("authorizing %s %s: %w: %w", r.method, redact.Text(u), errs.ErrRegistry, err)
			}
		}
		c.log.Debug("registry request", "method", r.method, "url", redact.Text(u))
		resp, err := host.Client.Do(req)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, fmt.Errorf("%s %s: %w", r.method, redact.Text(u), ctxErr)
			}
			return nil, fmt.Errorf("%s %s: %w: %w", r.method, redact.Text(u), errs.ErrRegistry, err)
		}
		if resp.StatusCode != http.StatusUnauthorized || host.Authorizer == nil || attempt >= 2 {
			return resp, nil
		}
		responses = append(responses, resp)
		if err := host.Authorizer.AddResponses(ctx, responses); err != nil {
			// Not an auth scheme we can answer: hand back the 401.
			c.log.Debug("cannot answer authorization challenge", "err", err)
			return resp, nil
		}
		resp.Body.Close()
	}
}

// statusError turns a non-success response into an error classified with
// errs.ErrNotFound (404) or errs.ErrRegistry (everything else), including
// the registry's error message (bounded, terminal controls escaped).
func statusError(what string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	msg := strings.TrimSpace(string(b))
	var oe struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(b, &oe) == nil && len(oe.Errors) > 0 {
		parts := make([]string, 0, len(oe.Errors))
		for _, e := range oe.Errors {
			parts = append(parts, strings.TrimSpace(e.Code+": "+e.Message))
		}
		msg = strings.Join(parts, "; ")
	}
	if len(msg) > 300 {
		msg = strings.ToValidUTF8(msg[:300], "") + "…"
	}
	// Everything here is the registry's text: escaped before it can
	// reach a terminal.
	detail := termsafe.Text(resp.Status)
	if msg != "" {
		detail += ": " + termsafe.Text(msg)
	}
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%s: %s: %w", what, detail, errs.ErrNotFound)
	}
	return fmt.Errorf("%s: %s: %w", what, detail, errs.ErrRegistry)
}

// isNotFound reports whether err is a registry not-found error.
func isNotFound(err error) bool { return errors.Is(err, errs.ErrNotFound) }
