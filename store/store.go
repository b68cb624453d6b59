// Package store is vmbuild's one abstraction for where images, and the
// signatures and attestations attached to them, live, in the manner of
// go-containerregistry's remote and layout packages. It has two
// implementations:
//
//   - [Registry]: one repository of an OCI registry, through
//     [registry.Client] and its hostile-registry limits (manifest size,
//     blob size, referrers and tag counts, digest checks, bounded retries);
//   - [Layout]: an OCI image layout directory, read within the same limits,
//     from regular files only (a FIFO, a device or a socket in place of a
//     blob is an error, never a blocked read), confined to the directory
//     (os.Root), with the context honoured between reads.
//
// Everything that reads or writes images uses it: build's OCI export,
// lock's oci-layout:// images, sign's one code path for attaching and
// reading signatures and attestations, publish, verify and check.
//
// References inside a store are a tag ("latest", "sha256-<hex>.sig") or a
// digest ("sha256:<hex>"); a tag never contains a colon.
//
// Errors are classified with the errs catalogue: errs.ErrNotFound for
// what is not there, errs.ErrRegistry for a store that answers wrongly
// (a digest mismatch, a malformed document), *errs.LimitError for a limit.
package store

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/registry"
)

// Store holds images and what is attached to them. Implementations are
// safe for concurrent use within one process.
type Store interface {
	// String names the store for messages: "REPO" or "oci:DIR".
	String() string
	// Repository is the normalized registry repository, or "" for a
	// layout.
	Repository() string
	// Resolve returns the descriptor of the manifest (or index) a tag or
	// digest names; errs.ErrNotFound when there is none. A layout's
	// descriptor carries its index.json annotations.
	Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error)
	// Manifest reads the manifest a tag or digest names, within the
	// manifest size limit, and checks its digest.
	Manifest(ctx context.Context, ref string) ([]byte, ocispec.Descriptor, error)
	// Blob reads the blob desc, at most limit bytes (limit <= 0: the
	// store's blob limit), checking its size and digest.
	Blob(ctx context.Context, desc ocispec.Descriptor, limit int64) ([]byte, error)
	// PushBlob stores data as desc unless the store has it already.
	PushBlob(ctx context.Context, desc ocispec.Descriptor, data []byte) error
	// PushManifest stores a manifest by digest and, when tag is not empty,
	// under tag. A manifest with a subject is listed among its subject's
	// referrers.
	PushManifest(ctx context.Context, mediaType string, data []byte, tag string) (ocispec.Descriptor, error)
	// Tag points tag at the manifest d, which the store holds.
	Tag(ctx context.Context, d digest.Digest, tag string) error
	// Referrers lists the manifests whose subject is subject, only those
	// of artifactType when it is not empty, within the referrers limit.
	Referrers(ctx context.Context, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error)
	// RemoveReferrer detaches the referrer d from subject and deletes it
	// where the store can. Removing one that is not there is no error.
	RemoveReferrer(ctx context.Context, subject, d digest.Digest) error
}

// Limits bound what a store reads: the registry client's limits, applied
// to layouts too. Zero fields take the defaults of [DefaultLimits].
type Limits = registry.Limits

// DefaultLimits returns the limits used when none are given.
func DefaultLimits() Limits { return registry.DefaultLimits() }

// isDigest reports whether ref is a digest rather than a tag.
func isDigest(ref string) bool { return strings.Contains(ref, ":") }

func parseRef(ref string) (tag string, d digest.Digest, err error) {
	if isDigest(ref) {
		d, err := digest.Parse(ref)
		if err != nil {
			return "", "", fmt.Errorf("parsing %q: %w", ref, err)
		}
		return "", d, nil
	}
	if !tagRE.MatchString(ref) {
		return "", "", fmt.Errorf("parsing %q: not a tag", ref)
	}
	return ref, "", nil
}

var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// cosignTag is cosign's tag scheme for what is attached to an image:
// "sha256-<hex>.sig" (signatures) and "sha256-<hex>.att" (attestations).
var cosignTag = regexp.MustCompile(`^(sha256)-([0-9a-f]{64})\.(sig|att)$`)

// CosignTag returns the tag under which cosign's tag scheme keeps the
// signatures (suffix "sig") or attestations ("att") of subject.
func CosignTag(subject digest.Digest, suffix string) string {
	return string(subject.Algorithm()) + "-" + subject.Encoded() + "." + suffix
}

// parseCosignTag returns the subject and suffix of a cosign tag.
func parseCosignTag(tag string) (digest.Digest, string, bool) {
	m := cosignTag.FindStringSubmatch(tag)
	if m == nil {
		return "", "", false
	}
	return digest.NewDigestFromEncoded(digest.Algorithm(m[1]), m[2]), m[3], true
}
