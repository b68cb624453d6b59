package build

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/store"
)

func digestOf(s string) digest.Digest { return digest.Digest(s) }

// importLayout reads the OCI archive BuildKit's oci exporter streams and
// writes its blobs into the layout at dir (each blob verified against its
// digest before it is renamed into place). It does not touch the image's
// index.json entry: the image is only added, by addToLayout, after the
// whole build succeeded.
func importLayout(ctx context.Context, dir string, r io.Reader) (ocispec.Descriptor, error) {
	l, err := store.CreateLayout(ctx, dir)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	tr := tar.NewReader(r)
	var idx *ocispec.Index
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("reading exported image: %w", err)
		}
		name := filepath.ToSlash(filepath.Clean(h.Name))
		switch {
		case name == ocispec.ImageIndexFile:
			var i ocispec.Index
			if err := json.NewDecoder(io.LimitReader(tr, 4<<20)).Decode(&i); err != nil {
				return ocispec.Descriptor{}, fmt.Errorf("reading exported index: %w", err)
			}
			idx = &i
		case strings.HasPrefix(name, "blobs/sha256/") && h.Typeflag == tar.TypeReg:
			d := digest.NewDigestFromEncoded(digest.SHA256, strings.TrimPrefix(name, "blobs/sha256/"))
			if err := d.Validate(); err != nil {
				return ocispec.Descriptor{}, fmt.Errorf("exported blob %s: %w", name, err)
			}
			if err := l.WriteBlob(ctx, ocispec.Descriptor{Digest: d, Size: h.Size}, tr); err != nil {
				return ocispec.Descriptor{}, err
			}
		}
	}
	if idx == nil || len(idx.Manifests) != 1 {
		return ocispec.Descriptor{}, errors.New("the exported archive has no single image in its index")
	}
	return idx.Manifests[0], nil
}

// addToLayout records desc in the layout's index.json under tag (default
// latest), replacing the entry with that tag, with the upstream commit as
// org.opencontainers.image.revision. index.json is written to a temporary
// file and renamed: a crash leaves the old index intact.
func addToLayout(ctx context.Context, dir string, desc ocispec.Descriptor, tag string, l *lock.Lock) (ocispec.Descriptor, error) {
	if tag == "" {
		tag = "latest"
	}
	lay, err := store.CreateLayout(ctx, dir)
	if err != nil {
		return desc, err
	}
	annotations := map[string]string{}
	for k, v := range desc.Annotations {
		annotations[k] = v
	}
	annotations[ocispec.AnnotationRevision] = l.Upstream.Commit
	desc.Annotations = annotations
	return lay.SetEntry(ctx, desc, tag)
}

// ReadManifest reads the image's manifest and config from st, the
// repository it was pushed to (BuildKit's push returns neither), and
// assigns each native layer step its blob digest. An OCI layout output has
// them already.
func (r *Result) ReadManifest(ctx context.Context, st store.Store) error {
	m, cfg, err := readImage(ctx, st, r.Digest)
	if err != nil {
		return fmt.Errorf("reading back %s@%s: %w", st, r.Digest, err)
	}
	r.Manifest, r.Config = m, cfg
	assignLayerDigests(r, r.graph)
	return nil
}

// readLayoutImage reads an image's manifest and config from a layout.
func readLayoutImage(ctx context.Context, dir string, desc ocispec.Descriptor) (*ocispec.Manifest, *ocispec.Image, error) {
	l, err := store.OpenLayout(ctx, dir)
	if err != nil {
		return nil, nil, err
	}
	return readImage(ctx, l, desc.Digest)
}

// readImage reads the manifest d and its config from st.
func readImage(ctx context.Context, st store.Store, d digest.Digest) (*ocispec.Manifest, *ocispec.Image, error) {
	mb, _, err := st.Manifest(ctx, d.String())
	if err != nil {
		return nil, nil, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return nil, nil, fmt.Errorf("reading manifest %s: %w", d, err)
	}
	cb, err := st.Blob(ctx, m.Config, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("reading config %s: %w", m.Config.Digest, err)
	}
	var img ocispec.Image
	if err := json.NewDecoder(bytes.NewReader(cb)).Decode(&img); err != nil {
		return nil, nil, fmt.Errorf("reading config %s: %w", m.Config.Digest, err)
	}
	return &m, &img, nil
}
