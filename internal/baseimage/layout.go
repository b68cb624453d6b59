package baseimage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
)

// WriteLayout writes img into dir as an OCI image layout (oci-layout,
// index.json, blobs/sha256/…), creating dir if needed. The manifest is
// listed in index.json with the annotation org.opencontainers.image.ref.name
// = tag (tag may be empty: no annotation). Other index entries are kept,
// except one with the same tag, which is replaced; writing the same image
// twice leaves the layout byte-for-byte unchanged.
//
// containerd's local content store may warn through containerd's global
// logger (github.com/containerd/log.L) that the filesystem lacks
// fs-verity; commands that mind call log.SetLevel("error").
func WriteLayout(ctx context.Context, img *Image, dir, tag string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating OCI layout %s: %w", dir, err)
	}
	// The local store keeps blobs in dir/blobs/sha256 (the layout's own
	// place) and in-flight writes in dir/ingest, removed below.
	store, err := local.NewStore(dir)
	if err != nil {
		return fmt.Errorf("opening content store in %s: %w", dir, err)
	}
	defer os.RemoveAll(filepath.Join(dir, "ingest"))
	for _, desc := range img.Descriptors() {
		b, _ := img.Blob(desc.Digest)
		if err := content.WriteBlob(ctx, store, remotes.MakeRefKey(ctx, desc), bytes.NewReader(b), desc); err != nil && !errdefs.IsAlreadyExists(err) {
			return fmt.Errorf("writing blob %s to %s: %w", desc.Digest, dir, err)
		}
	}

	layoutJSON, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, ocispec.ImageLayoutFile), layoutJSON); err != nil {
		return fmt.Errorf("writing OCI layout %s: %w", dir, err)
	}

	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
	}
	indexPath := filepath.Join(dir, ocispec.ImageIndexFile)
	if b, err := os.ReadFile(indexPath); err == nil {
		if err := json.Unmarshal(b, &idx); err != nil {
			return fmt.Errorf("reading %s: %w", indexPath, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", indexPath, err)
	}
	desc := img.ManifestDesc
	if tag != "" {
		desc.Annotations = map[string]string{ocispec.AnnotationRefName: tag}
	}
	// Replace the entry with the same tag (or, untagged, the same untagged
	// digest) in place; otherwise append.
	replaced := false
	kept := make([]ocispec.Descriptor, 0, len(idx.Manifests)+1)
	for _, m := range idx.Manifests {
		name := m.Annotations[ocispec.AnnotationRefName]
		if name == tag && (tag != "" || m.Digest == desc.Digest) {
			if !replaced {
				kept = append(kept, desc)
				replaced = true
			}
			continue
		}
		kept = append(kept, m)
	}
	if !replaced {
		kept = append(kept, desc)
	}
	idx.Manifests = kept
	idxJSON, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(indexPath, idxJSON); err != nil {
		return fmt.Errorf("writing OCI layout %s: %w", dir, err)
	}
	return nil
}

func writeFileAtomic(name string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tmp-"+filepath.Base(name)+"-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

// Push uploads img to a registry under ref ("host[:port]/repo:tag"), using
// containerd's docker resolver and push handlers. plainHTTP selects http
// instead of https (for loopback test registries). Anonymous token auth is
// handled; credentials are not.
func Push(ctx context.Context, img *Image, ref string, plainHTTP bool) error {
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(
			docker.WithPlainHTTP(func(string) (bool, error) { return plainHTTP, nil }),
			docker.WithAuthorizer(docker.NewDockerAuthorizer()),
		),
	})
	pusher, err := resolver.Pusher(ctx, ref)
	if err != nil {
		return fmt.Errorf("pushing base image to %s: %w: %w", ref, errs.ErrRegistry, err)
	}
	if err := remotes.PushContent(ctx, pusher, img.ManifestDesc, memProvider{img}, nil, platforms.All, nil); err != nil {
		return fmt.Errorf("pushing base image to %s: %w: %w", ref, errs.ErrRegistry, err)
	}
	return nil
}

// memProvider serves the image's blobs to containerd's handlers.
type memProvider struct{ img *Image }

func (p memProvider) ReaderAt(_ context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	b, ok := p.img.Blob(desc.Digest)
	if !ok {
		return nil, fmt.Errorf("%w: %s: %w", errNoBlob, desc.Digest, errdefs.ErrNotFound)
	}
	return readerAt{bytes.NewReader(b)}, nil
}

type readerAt struct{ *bytes.Reader }

func (readerAt) Close() error { return nil }

var _ io.ReaderAt = readerAt{}
