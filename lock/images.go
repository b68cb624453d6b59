package lock

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/recipe"
)

// ManifestFetcher reads a manifest or index from a registry, verifying its
// digest. registry.Client implements it.
type ManifestFetcher interface {
	FetchManifest(ctx context.Context, ref string) ([]byte, ocispec.Descriptor, error)
}

// ImageResolver pins image references.
type ImageResolver interface {
	ResolveImage(ctx context.Context, ref string, platform ocispec.Platform) (ImagePin, error)
}

// Images resolves registry references through a ManifestFetcher and
// oci-layout:// references from local OCI image layouts (relative layout
// paths resolve against BaseDir).
type Images struct {
	Registry ManifestFetcher
	BaseDir  string
}

// NormalizeImageRef returns the canonical form of a registry reference
// (docker.io/library/busybox:latest); oci-layout references are returned
// with their directory made absolute against nothing (unchanged).
func NormalizeImageRef(ref string) string {
	if strings.HasPrefix(ref, recipe.OCILayoutPrefix) {
		return ref
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ref
	}
	return reference.TagNameOnly(named).String()
}

// ResolveImage implements ImageResolver.
func (im Images) ResolveImage(ctx context.Context, ref string, platform ocispec.Platform) (ImagePin, error) {
	if strings.HasPrefix(ref, recipe.OCILayoutPrefix) {
		return im.resolveLayout(ctx, ref, platform)
	}
	if im.Registry == nil {
		return ImagePin{}, fmt.Errorf("resolving image %s: %w: no registry client", ref, errs.ErrImageResolve)
	}
	norm := NormalizeImageRef(ref)
	b, desc, err := im.Registry.FetchManifest(ctx, norm)
	if err != nil {
		return ImagePin{}, fmt.Errorf("resolving image %s: %w: %w", ref, errs.ErrImageResolve, err)
	}
	pin := ImagePin{Ref: norm, Digest: desc.Digest.String()}
	if err := fillPlatforms(&pin, desc.MediaType, b, platform); err != nil {
		return ImagePin{}, fmt.Errorf("resolving image %s: %w", ref, err)
	}
	return pin, nil
}

func fillPlatforms(pin *ImagePin, mediaType string, b []byte, want ocispec.Platform) error {
	var probe struct {
		MediaType string               `json:"mediaType"`
		Manifests []ocispec.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return fmt.Errorf("%w: manifest is not JSON: %v", errs.ErrImageResolve, err)
	}
	if mediaType == "" {
		mediaType = probe.MediaType
	}
	switch mediaType {
	case ocispec.MediaTypeImageIndex, "application/vnd.docker.distribution.manifest.list.v2+json":
	default:
		if probe.Manifests == nil {
			return nil // a single-platform manifest: Digest pins it
		}
	}
	pin.Platforms = map[string]string{}
	var have []string
	for _, m := range probe.Manifests {
		if m.Platform == nil || m.Platform.OS == "unknown" {
			continue // attestation manifests and the like
		}
		p := platforms.Format(platforms.Normalize(*m.Platform))
		if _, dup := pin.Platforms[p]; !dup {
			pin.Platforms[p] = m.Digest.String()
			have = append(have, p)
		}
	}
	matcher := platforms.Only(want)
	for _, m := range probe.Manifests {
		if m.Platform != nil && matcher.Match(*m.Platform) {
			return nil
		}
	}
	sort.Strings(have)
	return fmt.Errorf("%w: it has no manifest for %s (it has: %s)", errs.ErrImageResolve, platforms.Format(want), strings.Join(have, ", "))
}

func (im Images) resolveLayout(ctx context.Context, ref string, platform ocispec.Platform) (ImagePin, error) {
	dir, tag, dgst, err := recipe.ParseOCILayoutRef(ref, im.BaseDir)
	if err != nil {
		return ImagePin{}, fmt.Errorf("resolving image %s: %w: %v", ref, errs.ErrImageResolve, err)
	}
	idx, err := ReadLayoutIndex(dir)
	if err != nil {
		return ImagePin{}, fmt.Errorf("resolving image %s: %w: %w", ref, errs.ErrImageResolve, err)
	}
	var found *ocispec.Descriptor
	for i, m := range idx.Manifests {
		if dgst != "" && m.Digest.String() == dgst || dgst == "" && m.Annotations[ocispec.AnnotationRefName] == tag {
			found = &idx.Manifests[i]
			break
		}
	}
	if found == nil {
		what := "tag " + tag
		if dgst != "" {
			what = "digest " + dgst
		}
		return ImagePin{}, fmt.Errorf("resolving image %s: %w: the layout at %s has no %s", ref, errs.ErrImageResolve, dir, what)
	}
	pin := ImagePin{Ref: ref, Digest: found.Digest.String()}
	store, err := local.NewStore(dir)
	if err != nil {
		return ImagePin{}, fmt.Errorf("resolving image %s: %w", ref, err)
	}
	b, err := content.ReadBlob(ctx, store, *found)
	if err != nil {
		return ImagePin{}, fmt.Errorf("resolving image %s: %w: reading %s: %v", ref, errs.ErrImageResolve, found.Digest, err)
	}
	if digest.FromBytes(b) != found.Digest {
		return ImagePin{}, fmt.Errorf("resolving image %s: %w: blob %s does not match its digest", ref, errs.ErrImageResolve, found.Digest)
	}
	if err := fillPlatforms(&pin, found.MediaType, b, platform); err != nil {
		return ImagePin{}, fmt.Errorf("resolving image %s: %w", ref, err)
	}
	return pin, nil
}

// ReadLayoutIndex reads an OCI image layout's index.json.
func ReadLayoutIndex(dir string) (*ocispec.Index, error) {
	if _, err := os.Stat(filepath.Join(dir, ocispec.ImageLayoutFile)); err != nil {
		return nil, fmt.Errorf("%s is not an OCI image layout (no %s)", dir, ocispec.ImageLayoutFile)
	}
	b, err := os.ReadFile(filepath.Join(dir, ocispec.ImageIndexFile))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", ocispec.ImageIndexFile, err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("parsing %s/%s: %w", dir, ocispec.ImageIndexFile, err)
	}
	return &idx, nil
}
