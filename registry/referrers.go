package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/termsafe"
)

var versioned2 = specs.Versioned{SchemaVersion: 2}

// FallbackTag returns the referrers tag schema tag of a subject:
// "<alg>-<encoded>" (encoded truncated to 64 characters).
func FallbackTag(subject digest.Digest) string {
	enc := subject.Encoded()
	if len(enc) > 64 {
		enc = enc[:64]
	}
	return string(subject.Algorithm()) + "-" + enc
}

// Referrers lists the manifests that name subject as their subject, using
// the OCI 1.1 referrers API and, where the registry has none, the referrers
// tag schema ("sha256-<hex>" index). With a non-empty artifactType only
// descriptors of that artifact type are returned (filtered here even when
// the registry filters too). The index is read within Limits.MaxIndexBytes
// per page and Limits.MaxReferrers descriptors in all.
func (c *Client) Referrers(ctx context.Context, repo string, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	r, err := parseRepo(repo)
	if err != nil {
		return nil, err
	}
	if err := subject.Validate(); err != nil {
		return nil, fmt.Errorf("listing referrers of %q: %w", subject, err)
	}
	all, native, err := c.referrersAPI(ctx, r, subject, artifactType)
	if err != nil {
		return nil, err
	}
	if !native {
		idx, _, err := c.fallbackIndex(ctx, r, subject)
		if err != nil {
			return nil, err
		}
		if len(idx.Manifests) > c.limits.MaxReferrers {
			return nil, fmt.Errorf("listing referrers of %s: %w", subject, &errs.LimitError{Limit: fmt.Sprintf("referrers count (%d)", c.limits.MaxReferrers), Got: fmt.Sprint(len(idx.Manifests))})
		}
		all = idx.Manifests
	}
	out := make([]ocispec.Descriptor, 0, len(all))
	for _, d := range all {
		if d.Digest.Validate() != nil {
			c.log.Debug("skipping referrer with invalid digest", "digest", string(d.Digest))
			continue
		}
		if artifactType != "" && d.ArtifactType != artifactType {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// referrersAPI asks the referrers API. native is false when the registry
// does not have it.
func (c *Client) referrersAPI(ctx context.Context, r repoName, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, bool, error) {
	h := http.Header{}
	h.Set("Accept", ocispec.MediaTypeImageIndex)
	req := request{method: http.MethodGet, repo: r, path: "referrers/" + subject.String(), header: h}
	if artifactType != "" {
		req.query = url.Values{"artifactType": {artifactType}}
	}
	var all []ocispec.Descriptor
	for page := 0; ; page++ {
		resp, err := c.do(ctx, req)
		if err != nil {
			return nil, false, fmt.Errorf("listing referrers of %s: %w", subject, err)
		}
		if page == 0 {
			switch resp.StatusCode {
			case http.StatusOK:
			case http.StatusNotFound, http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusNotImplemented:
				resp.Body.Close()
				return nil, false, nil
			default:
				err := statusError("listing referrers of "+subject.String(), resp)
				resp.Body.Close()
				return nil, false, err
			}
		} else if resp.StatusCode != http.StatusOK {
			err := statusError("listing referrers of "+subject.String(), resp)
			resp.Body.Close()
			return nil, false, err
		}
		idx, err := c.readIndex(resp, "referrers index")
		resp.Body.Close()
		if err != nil {
			return nil, true, fmt.Errorf("listing referrers of %s: %w", subject, err)
		}
		all = append(all, idx.Manifests...)
		if len(all) > c.limits.MaxReferrers {
			return nil, true, fmt.Errorf("listing referrers of %s: %w", subject, &errs.LimitError{Limit: fmt.Sprintf("referrers count (%d)", c.limits.MaxReferrers), Got: fmt.Sprintf("more than %d", c.limits.MaxReferrers)})
		}
		next, err := nextLink(resp)
		if err != nil {
			return nil, true, fmt.Errorf("listing referrers of %s: %w", subject, err)
		}
		if next == nil {
			return all, true, nil
		}
		if next.Host != resp.Request.URL.Host || next.Scheme != resp.Request.URL.Scheme {
			return nil, true, fmt.Errorf("listing referrers of %s: registry paginates to another host %s: %w", subject, termsafe.Text(next.Host), errs.ErrRegistry)
		}
		req = request{method: http.MethodGet, repo: r, header: h, rawURL: next.String()}
	}
}

// nextLink parses an RFC 5988 Link header with rel="next", relative to the
// request URL.
func nextLink(resp *http.Response) (*url.URL, error) {
	link := resp.Header.Get("Link")
	if link == "" {
		return nil, nil
	}
	for _, part := range strings.Split(link, ",") {
		part = strings.TrimSpace(part)
		if !strings.Contains(part, `rel="next"`) && !strings.Contains(part, "rel=next") {
			continue
		}
		start, end := strings.Index(part, "<"), strings.Index(part, ">")
		if start < 0 || end < start {
			return nil, fmt.Errorf("malformed Link header: %w", errs.ErrRegistry)
		}
		u, err := resp.Request.URL.Parse(part[start+1 : end])
		if err != nil {
			return nil, fmt.Errorf("malformed Link header: %w", errs.ErrRegistry)
		}
		return u, nil
	}
	return nil, nil
}

func (c *Client) readIndex(resp *http.Response, what string) (ocispec.Index, error) {
	limit := c.limits.MaxIndexBytes
	if resp.ContentLength > limit {
		return ocispec.Index{}, sizeLimitError(what, limit, resp.ContentLength)
	}
	b, err := readLimited(resp.Body, limit, what)
	if err != nil {
		return ocispec.Index{}, wrapRead(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return ocispec.Index{}, fmt.Errorf("parsing %s: %w: %w", what, errs.ErrRegistry, err)
	}
	return idx, nil
}

// fallbackIndex reads the referrers tag schema index of subject. A missing
// tag is an empty index (exists false).
func (c *Client) fallbackIndex(ctx context.Context, r repoName, subject digest.Digest) (ocispec.Index, bool, error) {
	tag := FallbackTag(subject)
	h := http.Header{}
	h.Set("Accept", ocispec.MediaTypeImageIndex)
	resp, err := c.do(ctx, request{method: http.MethodGet, repo: r, path: "manifests/" + tag, header: h})
	if err != nil {
		return ocispec.Index{}, false, fmt.Errorf("reading referrers tag %s: %w", tag, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return ocispec.Index{Versioned: versioned2, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}, false, nil
	}
	if resp.StatusCode != http.StatusOK {
		return ocispec.Index{}, false, statusError("reading referrers tag "+tag, resp)
	}
	idx, err := c.readIndex(resp, "referrers index")
	if err != nil {
		return ocispec.Index{}, false, fmt.Errorf("reading referrers tag %s: %w", tag, err)
	}
	return idx, true, nil
}

func (c *Client) putFallbackIndex(ctx context.Context, r repoName, subject digest.Digest, idx ocispec.Index) error {
	idx.SchemaVersion = 2
	idx.MediaType = ocispec.MediaTypeImageIndex
	if idx.Manifests == nil {
		idx.Manifests = []ocispec.Descriptor{}
	}
	b, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	tag := FallbackTag(subject)
	h := http.Header{}
	h.Set("Content-Type", ocispec.MediaTypeImageIndex)
	resp, err := c.do(ctx, request{method: http.MethodPut, repo: r, path: "manifests/" + tag, header: h, body: b, push: true})
	if err != nil {
		return fmt.Errorf("writing referrers tag %s: %w", tag, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		return statusError("writing referrers tag "+tag, resp)
	}
	return nil
}

// addToFallbackIndex adds entry to the referrers tag of subject unless an
// entry with its digest is there already.
func (c *Client) addToFallbackIndex(ctx context.Context, r repoName, subject digest.Digest, entry ocispec.Descriptor) error {
	idx, _, err := c.fallbackIndex(ctx, r, subject)
	if err != nil {
		return err
	}
	for _, d := range idx.Manifests {
		if d.Digest == entry.Digest {
			return nil
		}
	}
	if len(idx.Manifests)+1 > c.limits.MaxReferrers {
		return &errs.LimitError{Limit: fmt.Sprintf("referrers count (%d)", c.limits.MaxReferrers), Got: fmt.Sprint(len(idx.Manifests) + 1)}
	}
	idx.Manifests = append(idx.Manifests, entry)
	return c.putFallbackIndex(ctx, r, subject, idx)
}

// RemoveReferrer detaches the referrer manifest dgst from subject: it is
// removed from the referrers tag schema index, and when the registry has
// the referrers API the manifest itself is deleted (the API lists every
// stored manifest with that subject). Removing a referrer that is not
// there is not an error.
func (c *Client) RemoveReferrer(ctx context.Context, repo string, subject, dgst digest.Digest) error {
	r, err := parseRepo(repo)
	if err != nil {
		return err
	}
	_, native, err := c.referrersAPI(ctx, r, subject, "")
	if err != nil {
		return err
	}
	if native {
		resp, err := c.do(ctx, request{method: http.MethodDelete, repo: r, path: "manifests/" + dgst.String(), push: true})
		if err != nil {
			return fmt.Errorf("deleting referrer %s: %w", dgst, err)
		}
		defer resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusAccepted, http.StatusOK, http.StatusNoContent, http.StatusNotFound:
			return nil
		default:
			return statusError("deleting referrer "+dgst.String(), resp)
		}
	}
	idx, exists, err := c.fallbackIndex(ctx, r, subject)
	if err != nil || !exists {
		return err
	}
	kept := idx.Manifests[:0]
	removed := false
	for _, d := range idx.Manifests {
		if d.Digest == dgst {
			removed = true
			continue
		}
		kept = append(kept, d)
	}
	if !removed {
		return nil
	}
	idx.Manifests = kept
	return c.putFallbackIndex(ctx, r, subject, idx)
}

// ListTags lists the tags of repo (following pagination), at most
// Limits.MaxTags.
func (c *Client) ListTags(ctx context.Context, repo string) ([]string, error) {
	r, err := parseRepo(repo)
	if err != nil {
		return nil, err
	}
	req := request{method: http.MethodGet, repo: r, path: "tags/list"}
	var tags []string
	for {
		resp, err := c.do(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("listing tags of %s: %w", r, err)
		}
		if resp.StatusCode != http.StatusOK {
			err := statusError("listing tags of "+r.String(), resp)
			resp.Body.Close()
			return nil, err
		}
		b, err := readLimited(resp.Body, c.limits.MaxIndexBytes, "tag list")
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("listing tags of %s: %w", r, wrapRead(err))
		}
		var tl struct {
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(b, &tl); err != nil {
			return nil, fmt.Errorf("listing tags of %s: %w: %w", r, errs.ErrRegistry, err)
		}
		tags = append(tags, tl.Tags...)
		if len(tags) > c.limits.MaxTags {
			return nil, fmt.Errorf("listing tags of %s: %w", r, &errs.LimitError{Limit: fmt.Sprintf("tag count (%d)", c.limits.MaxTags)})
		}
		next, err := nextLink(resp)
		if err != nil {
			return nil, fmt.Errorf("listing tags of %s: %w", r, err)
		}
		if next == nil {
			return tags, nil
		}
		if next.Host != resp.Request.URL.Host || next.Scheme != resp.Request.URL.Scheme {
			return nil, fmt.Errorf("listing tags of %s: registry paginates to another host: %w", r, errs.ErrRegistry)
		}
		req = request{method: http.MethodGet, repo: r, rawURL: next.String()}
	}
}
