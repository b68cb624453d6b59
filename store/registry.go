package store

import (
	"bytes"
	"context"
	"fmt"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/registry"
)

// Registry is a repository of an OCI registry.
type Registry struct {
	c    *registry.Client
	repo string
}

var _ Store = (*Registry)(nil)

// NewRegistry returns the store for repository repo ("host/path", no tag
// or digest; normalized as Docker does) through c, whose limits,
// credentials and retries apply.
func NewRegistry(c *registry.Client, repo string) (*Registry, error) {
	if c == nil {
		return nil, fmt.Errorf("opening repository %s: no registry client: %w", repo, errs.ErrUsage)
	}
	named, err := reference.ParseNormalizedNamed(repo)
	if err != nil {
		return nil, fmt.Errorf("opening repository %q: %w: %v", repo, errs.ErrUsage, err)
	}
	if _, ok := named.(reference.NamedTagged); ok {
		return nil, fmt.Errorf("opening repository %q: %w: a repository carries no tag", repo, errs.ErrUsage)
	}
	if _, ok := named.(reference.Digested); ok {
		return nil, fmt.Errorf("opening repository %q: %w: a repository carries no digest", repo, errs.ErrUsage)
	}
	return &Registry{c: c, repo: named.String()}, nil
}

// Client returns the registry client.
func (r *Registry) Client() *registry.Client { return r.c }

func (r *Registry) String() string     { return r.repo }
func (r *Registry) Repository() string { return r.repo }

func (r *Registry) ref(ref string) (string, error) {
	tag, d, err := parseRef(ref)
	if err != nil {
		return "", fmt.Errorf("%s: %w: %w", r.repo, errs.ErrUsage, err)
	}
	if d != "" {
		return r.repo + "@" + d.String(), nil
	}
	return r.repo + ":" + tag, nil
}

func (r *Registry) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	full, err := r.ref(ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc, err := r.c.Resolve(ctx, full)
	if err != nil {
		return desc, err
	}
	if desc.MediaType == "" {
		desc.MediaType = ocispec.MediaTypeImageManifest
	}
	return desc, nil
}

func (r *Registry) Manifest(ctx context.Context, ref string) ([]byte, ocispec.Descriptor, error) {
	full, err := r.ref(ref)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	return r.c.FetchManifest(ctx, full)
}

func (r *Registry) Blob(ctx context.Context, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	return r.c.FetchBlob(ctx, r.repo, desc, limit)
}

func (r *Registry) PushBlob(ctx context.Context, desc ocispec.Descriptor, data []byte) error {
	return r.c.PushBlob(ctx, r.repo, desc, bytes.NewReader(data))
}

func (r *Registry) PushManifest(ctx context.Context, mediaType string, data []byte, tag string) (ocispec.Descriptor, error) {
	ref := digest.FromBytes(data).String()
	if tag != "" {
		ref = tag
	}
	full, err := r.ref(ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return r.c.PushManifest(ctx, full, mediaType, data)
}

func (r *Registry) Tag(ctx context.Context, d digest.Digest, tag string) error {
	if _, _, err := parseRef(tag); err != nil || isDigest(tag) {
		return fmt.Errorf("tagging %s as %q: %w: not a tag", d, tag, errs.ErrUsage)
	}
	return r.c.Tag(ctx, r.repo, d, tag)
}

func (r *Registry) Referrers(ctx context.Context, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	return r.c.Referrers(ctx, r.repo, subject, artifactType)
}

func (r *Registry) RemoveReferrer(ctx context.Context, subject, d digest.Digest) error {
	return r.c.RemoveReferrer(ctx, r.repo, subject, d)
}
