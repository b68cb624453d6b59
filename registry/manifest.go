package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
)

var manifestAccept = strings.Join([]string{
	ocispec.MediaTypeImageManifest,
	ocispec.MediaTypeImageIndex,
	images.MediaTypeDockerSchema2Manifest,
	images.MediaTypeDockerSchema2ManifestList,
}, ", ")

// FormatBytes renders a byte count for limit messages: "4 MiB", "512 KiB",
// "100 bytes".
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// readLimited reads at most limit bytes from r; more is a LimitError named
// "<what> size (<limit>)".
func readLimited(r io.Reader, limit int64, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if int64(len(b)) > limit {
		return nil, &errs.LimitError{Limit: fmt.Sprintf("%s size (%s)", what, FormatBytes(limit)), Got: "more than " + FormatBytes(limit)}
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

func sizeLimitError(what string, limit, got int64) error {
	return &errs.LimitError{Limit: fmt.Sprintf("%s size (%s)", what, FormatBytes(limit)), Got: fmt.Sprintf("%d bytes", got)}
}

// manifestMediaType picks the media type of a manifest from the response
// header, else from the document's own mediaType field.
func manifestMediaType(header http.Header, body []byte) string {
	if ct := header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err == nil && mt != "application/json" && mt != "text/plain" && mt != "application/octet-stream" {
			return mt
		}
	}
	if body != nil {
		var m struct {
			MediaType string `json:"mediaType"`
		}
		if json.Unmarshal(body, &m) == nil && m.MediaType != "" {
			return m.MediaType
		}
	}
	return ""
}

// Resolve returns the descriptor of the manifest a tag or digest reference
// names. It asks with HEAD and falls back to fetching the manifest when the
// registry does not send a digest. A digest reference whose registry
// answers with another digest is an error.
func (c *Client) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	p, err := parseRef(ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	h := http.Header{}
	h.Set("Accept", manifestAccept)
	resp, err := c.do(ctx, request{method: http.MethodHead, repo: p.repo, path: "manifests/" + p.object(), header: h})
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("resolving %s: %w", ref, err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusMethodNotAllowed:
		_, desc, err := c.FetchManifest(ctx, ref)
		return desc, err
	default:
		return ocispec.Descriptor{}, statusError("resolving "+ref, resp)
	}
	if resp.ContentLength > c.limits.MaxManifestBytes {
		return ocispec.Descriptor{}, fmt.Errorf("resolving %s: %w", ref, sizeLimitError("manifest", c.limits.MaxManifestBytes, resp.ContentLength))
	}
	hdr := resp.Header.Get("Docker-Content-Digest")
	if hdr == "" || resp.ContentLength < 0 {
		_, desc, err := c.FetchManifest(ctx, ref)
		return desc, err
	}
	d, err := digest.Parse(hdr)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("resolving %s: registry sent invalid digest %q: %w", ref, hdr, errs.ErrRegistry)
	}
	if p.digest != "" && d.String() != p.digest {
		return ocispec.Descriptor{}, fmt.Errorf("resolving %s: registry answered with digest %s: %w", ref, d, errs.ErrRegistry)
	}
	return ocispec.Descriptor{
		MediaType: manifestMediaType(resp.Header, nil),
		Digest:    d,
		Size:      resp.ContentLength,
	}, nil
}

// FetchManifest fetches the manifest a tag or digest reference names, reads
// at most Limits.MaxManifestBytes, and checks its sha256: against the
// digest of a digest reference, and against the registry's
// Docker-Content-Digest header when it sends one.
func (c *Client) FetchManifest(ctx context.Context, ref string) ([]byte, ocispec.Descriptor, error) {
	p, err := parseRef(ref)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	return c.fetchManifest(ctx, p, ref)
}

func (c *Client) fetchManifest(ctx context.Context, p parsedRef, ref string) ([]byte, ocispec.Descriptor, error) {
	h := http.Header{}
	h.Set("Accept", manifestAccept)
	resp, err := c.do(ctx, request{method: http.MethodGet, repo: p.repo, path: "manifests/" + p.object(), header: h})
	if err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("fetching manifest %s: %w", ref, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, ocispec.Descriptor{}, statusError("fetching manifest "+ref, resp)
	}
	limit := c.limits.MaxManifestBytes
	if resp.ContentLength > limit {
		return nil, ocispec.Descriptor{}, fmt.Errorf("fetching manifest %s: %w", ref, sizeLimitError("manifest", limit, resp.ContentLength))
	}
	b, err := readLimited(resp.Body, limit, "manifest")
	if err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("fetching manifest %s: %w", ref, wrapRead(err))
	}
	got := digest.FromBytes(b)
	if p.digest != "" {
		alg := digest.Digest(p.digest).Algorithm()
		if !alg.Available() {
			return nil, ocispec.Descriptor{}, fmt.Errorf("fetching manifest %s: unsupported digest algorithm %q", ref, alg)
		}
		got = alg.FromBytes(b)
	}
	if p.digest != "" && got.String() != p.digest {
		return nil, ocispec.Descriptor{}, fmt.Errorf("fetching manifest %s: content has digest %s: %w", ref, got, errs.ErrRegistry)
	}
	if hdr := resp.Header.Get("Docker-Content-Digest"); hdr != "" {
		hd, err := digest.Parse(hdr)
		if err != nil {
			return nil, ocispec.Descriptor{}, fmt.Errorf("fetching manifest %s: registry sent invalid digest %q: %w", ref, hdr, errs.ErrRegistry)
		}
		// Only a sha256 header can be compared with what we computed.
		if hd.Algorithm() == got.Algorithm() && hd != got {
			return nil, ocispec.Descriptor{}, fmt.Errorf("fetching manifest %s: registry says digest %s, content has %s: %w", ref, hd, got, errs.ErrRegistry)
		}
	}
	return b, ocispec.Descriptor{
		MediaType: manifestMediaType(resp.Header, b),
		Digest:    got,
		Size:      int64(len(b)),
	}, nil
}

// wrapRead classifies an error from reading a response body.
func wrapRead(err error) error {
	if _, ok := err.(*errs.LimitError); ok {
		return err
	}
	return fmt.Errorf("reading body: %w", classify(err))
}

// PushManifest uploads a manifest under ref, which is "repo:tag" or
// "repo@digest" (the digest must be that of data). When the manifest has a
// subject and the registry does not process it (no OCI-Subject response
// header), the referrers fallback index tag "sha256-<hex>" of the subject is
// updated, as the OCI distribution spec 1.1 prescribes for clients.
func (c *Client) PushManifest(ctx context.Context, ref string, mediaType string, data []byte) (ocispec.Descriptor, error) {
	p, err := parseRef(ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	if p.digest != "" && p.digest != desc.Digest.String() {
		return ocispec.Descriptor{}, fmt.Errorf("pushing manifest %s: content has digest %s", ref, desc.Digest)
	}
	if mediaType == "" {
		return ocispec.Descriptor{}, fmt.Errorf("pushing manifest %s: media type is empty", ref)
	}
	var doc struct {
		ArtifactType string              `json:"artifactType"`
		Config       *ocispec.Descriptor `json:"config"`
		Subject      *ocispec.Descriptor `json:"subject"`
		Annotations  map[string]string   `json:"annotations"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("pushing manifest %s: manifest is not JSON: %w", ref, err)
	}
	h := http.Header{}
	h.Set("Content-Type", mediaType)
	resp, err := c.do(ctx, request{method: http.MethodPut, repo: p.repo, path: "manifests/" + p.object(), header: h, body: data, push: true})
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("pushing manifest %s: %w", ref, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		return ocispec.Descriptor{}, statusError("pushing manifest "+ref, resp)
	}
	if hdr := resp.Header.Get("Docker-Content-Digest"); hdr != "" && hdr != desc.Digest.String() {
		return ocispec.Descriptor{}, fmt.Errorf("pushing manifest %s: registry stored digest %q, expected %s: %w", ref, hdr, desc.Digest, errs.ErrRegistry)
	}
	if doc.Subject != nil && resp.Header.Get("OCI-Subject") == "" {
		entry := desc
		entry.ArtifactType = doc.ArtifactType
		if entry.ArtifactType == "" && doc.Config != nil {
			entry.ArtifactType = doc.Config.MediaType
		}
		entry.Annotations = doc.Annotations
		if err := c.addToFallbackIndex(ctx, p.repo, doc.Subject.Digest, entry); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("pushing manifest %s: %w", ref, err)
		}
	}
	return desc, nil
}

// Tag points tag at the manifest dgst in repo (fetch, then put under the
// tag; a no-op when the tag already points there).
func (c *Client) Tag(ctx context.Context, repo string, dgst digest.Digest, tag string) error {
	r, err := parseRepo(repo)
	if err != nil {
		return err
	}
	if cur, err := c.Resolve(ctx, r.String()+":"+tag); err == nil && cur.Digest == dgst {
		return nil
	}
	b, desc, err := c.fetchManifest(ctx, parsedRef{repo: r, digest: dgst.String()}, r.String()+"@"+dgst.String())
	if err != nil {
		return fmt.Errorf("tagging %s as %s: %w", dgst, tag, err)
	}
	h := http.Header{}
	h.Set("Content-Type", desc.MediaType)
	resp, err := c.do(ctx, request{method: http.MethodPut, repo: r, path: "manifests/" + tag, header: h, body: b, push: true})
	if err != nil {
		return fmt.Errorf("tagging %s as %s: %w", dgst, tag, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		return statusError(fmt.Sprintf("tagging %s as %s", dgst, tag), resp)
	}
	return nil
}
