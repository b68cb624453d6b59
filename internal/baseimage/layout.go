package baseimage

import (
	"context"
	"fmt"

	"github.com/distribution/reference"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/registry"
	"github.com/vmbuild/vmbuild/store"
)

// WriteLayout writes img into dir as an OCI image layout (oci-layout,
// index.json, blobs/sha256/…), creating dir if needed. The manifest is
// listed in index.json with the annotation org.opencontainers.image.ref.name
// = tag (tag may be empty: no annotation). Other index entries are kept,
// except one with the same tag, which is replaced; writing the same image
// twice leaves the layout byte-for-byte unchanged.
func WriteLayout(ctx context.Context, img *Image, dir, tag string) error {
	l, err := store.CreateLayout(ctx, dir)
	if err != nil {
		return err
	}
	for _, desc := range img.Descriptors() {
		b, _ := img.Blob(desc.Digest)
		if err := l.PushBlob(ctx, desc, b); err != nil {
			return err
		}
	}
	if _, err := l.SetEntry(ctx, img.ManifestDesc, tag); err != nil {
		return fmt.Errorf("writing OCI layout %s: %w", dir, err)
	}
	return nil
}

// Push uploads img to a registry under ref ("host[:port]/repo:tag")
// through a store.Registry. plainHTTP selects http instead of https for
// the host (loopback hosts always use http). Credentials come from the
// Docker config, as for every registry client of vmbuild.
func Push(ctx context.Context, img *Image, ref string, plainHTTP bool) error {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return fmt.Errorf("pushing base image to %s: %w: %v", ref, errs.ErrUsage, err)
	}
	tag := "latest"
	if t, ok := named.(reference.Tagged); ok {
		tag = t.Tag()
	}
	var opts []registry.Option
	if plainHTTP {
		opts = append(opts, registry.WithInsecure(reference.Domain(named)))
	}
	st, err := store.NewRegistry(registry.New(opts...), reference.TrimNamed(named).String())
	if err != nil {
		return fmt.Errorf("pushing base image to %s: %w", ref, err)
	}
	for _, desc := range img.Descriptors() {
		if desc.Digest == img.ManifestDesc.Digest {
			continue
		}
		b, _ := img.Blob(desc.Digest)
		if err := st.PushBlob(ctx, desc, b); err != nil {
			return fmt.Errorf("pushing base image to %s: %w", ref, err)
		}
	}
	if _, err := st.PushManifest(ctx, img.ManifestDesc.MediaType, img.ManifestJSON, tag); err != nil {
		return fmt.Errorf("pushing base image to %s: %w", ref, err)
	}
	return nil
}
