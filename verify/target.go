package verify

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/store"
)

// LayoutPrefix starts a reference to an image in an OCI image layout
// directory, as `vmbuild build --output oci:DIR` writes it.
const LayoutPrefix = "oci:"

// Target is the image to verify, pinned by digest: either a registry
// repository or an OCI layout directory.
type Target struct {
	// Repository is the registry repository, e.g. "ghcr.io/acme/app"
	// (normalized: "docker.io/library/alpine"). Empty for a layout.
	Repository string `json:"repository,omitempty"`
	// Layout is the OCI image layout directory. Empty for a registry image.
	Layout string `json:"layout,omitempty"`
	// Digest is the image manifest (or index) digest.
	Digest digest.Digest `json:"digest"`
}

// String renders the target as a reference: REPO@sha256:… or
// oci:DIR@sha256:….
func (t Target) String() string {
	if t.Layout != "" {
		return LayoutPrefix + t.Layout + "@" + t.Digest.String()
	}
	return t.Repository + "@" + t.Digest.String()
}

func (t Target) validate() error {
	if (t.Repository == "") == (t.Layout == "") {
		return fmt.Errorf("%w: a target names exactly one of a repository and a layout", errs.ErrUsage)
	}
	if t.Digest == "" {
		return fmt.Errorf("%w: %s has no digest: verify an image by digest (resolve a tag first)", errs.ErrUsage, t.where())
	}
	if err := t.Digest.Validate(); err != nil || t.Digest.Algorithm() != digest.SHA256 {
		return fmt.Errorf("%w: %q is not a sha256 digest", errs.ErrUsage, t.Digest)
	}
	if t.Repository != "" {
		named, err := reference.ParseNormalizedNamed(t.Repository)
		if err != nil || named.String() != t.Repository {
			return fmt.Errorf("%w: %q is not a normalized repository name", errs.ErrUsage, t.Repository)
		}
	}
	return nil
}

func (t Target) where() string {
	if t.Layout != "" {
		return LayoutPrefix + t.Layout
	}
	return t.Repository
}

// Reference is a parsed command-line image reference: a Target and,
// when it was given by tag, the tag (then Target.Digest is empty until
// [Verifier.Resolve]).
type Reference struct {
	Target
	Tag string `json:"tag,omitempty"`
}

// IsTag reports whether the reference names a tag and no digest.
func (r Reference) IsTag() bool { return r.Digest == "" }

func (r Reference) String() string {
	if !r.IsTag() {
		return r.Target.String()
	}
	if r.Layout != "" {
		return LayoutPrefix + r.Layout + ":" + r.Tag
	}
	return r.Repository + ":" + r.Tag
}

// ParseReference parses an image reference:
//
//   - REPO@sha256:… (REPO:TAG@sha256:… too: the digest wins, the tag is
//     ignored);
//   - REPO:TAG or REPO (tag latest): a tag, to be resolved;
//   - oci:DIR@sha256:…: an image in an OCI layout directory;
//   - oci:DIR:TAG or oci:DIR: the image tagged TAG (default latest) in the
//     layout's index.json (org.opencontainers.image.ref.name), to be
//     resolved.
//
// Errors match errs.ErrUsage.
func ParseReference(s string) (Reference, error) {
	if rest, ok := strings.CutPrefix(s, LayoutPrefix); ok {
		return parseLayoutRef(s, rest)
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return Reference{}, fmt.Errorf("%w: %q is not an image reference (REPO@sha256:…, or oci:DIR@sha256:… for a layout): %v", errs.ErrUsage, s, err)
	}
	r := Reference{Target: Target{Repository: reference.TrimNamed(named).String()}}
	if d, ok := named.(reference.Digested); ok {
		if d.Digest().Algorithm() != digest.SHA256 {
			return Reference{}, fmt.Errorf("%w: %q: only sha256 digests are supported", errs.ErrUsage, s)
		}
		r.Digest = d.Digest()
		return r, nil
	}
	r.Tag = "latest"
	if t, ok := named.(reference.Tagged); ok {
		r.Tag = t.Tag()
	}
	return r, nil
}

func parseLayoutRef(s, rest string) (Reference, error) {
	var r Reference
	dir := rest
	if i := strings.LastIndex(dir, "@"); i >= 0 {
		d, err := digest.Parse(dir[i+1:])
		if err != nil || d.Algorithm() != digest.SHA256 {
			return Reference{}, fmt.Errorf("%w: %q: the digest must be sha256:<64 hex>", errs.ErrUsage, s)
		}
		dir, r.Digest = dir[:i], d
	} else if i := strings.LastIndex(dir, ":"); i >= 0 && !strings.ContainsAny(dir[i:], `/\`) {
		dir, r.Tag = dir[:i], dir[i+1:]
		if r.Tag == "" {
			return Reference{}, fmt.Errorf("%w: %q: empty tag", errs.ErrUsage, s)
		}
	}
	if dir == "" {
		return Reference{}, fmt.Errorf("%w: %q: missing layout directory (oci:DIR@sha256:…)", errs.ErrUsage, s)
	}
	if r.Digest == "" && r.Tag == "" {
		r.Tag = "latest"
	}
	r.Layout = filepath.Clean(dir)
	return r, nil
}

// resolveLayoutTag finds the image tagged tag in the layout's index.json.
func resolveLayoutTag(ctx context.Context, dir, tag string, log *slog.Logger) (digest.Digest, error) {
	l, err := store.OpenLayout(ctx, dir, store.WithLayoutLimits(store.Limits{MaxManifestBytes: MaxManifestBytes}), store.WithLayoutLogger(log))
	if err != nil {
		return "", fmt.Errorf("resolving %s%s:%s: %w", LayoutPrefix, dir, tag, err)
	}
	desc, err := l.Resolve(ctx, tag)
	if err != nil {
		return "", fmt.Errorf("resolving %s%s:%s: %w", LayoutPrefix, dir, tag, err)
	}
	if desc.Digest.Algorithm() != digest.SHA256 {
		return "", fmt.Errorf("resolving %s%s:%s: index.json has digest %q: %w", LayoutPrefix, dir, tag, desc.Digest, errs.ErrLayout)
	}
	return desc.Digest, nil
}
