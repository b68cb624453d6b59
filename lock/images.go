package lock

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/recipe"
	"github.com/vmbuild/vmbuild/store"
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
// oci-layout:// references from local OCI image layouts, read through
// store.Layout with its limits (relative layout paths resolve against
// BaseDir).
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
	l, err := store.OpenLayout(ctx, dir)
	if err != nil {
		return ImagePin{}, fmt.Errorf("resolving image %s: %w: %w", ref, errs.ErrImageResolve, err)
	}
	want := tag
	if dgst != "" {
		want = dgst
	}
	found, err := l.Resolve(ctx, want)
	if err != nil {
		return ImagePin{}, fmt.Errorf("resolving image %s: %w: %w", ref, errs.ErrImageResolve, err)
	}
	b, desc, err := l.Manifest(ctx, found.Digest.String())
	if err != nil {
		return ImagePin{}, fmt.Errorf("resolving image %s: %w: %w", ref, errs.ErrImageResolve, err)
	}
	pin := ImagePin{Ref: ref, Digest: found.Digest.String()}
	if err := fillPlatforms(&pin, desc.MediaType, b, platform); err != nil {
		return ImagePin{}, fmt.Errorf("resolving image %s: %w", ref, err)
	}
	return pin, nil
}
