package build

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/plugins/content/local"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/lock"
)

func digestOf(s string) digest.Digest { return digest.Digest(s) }

// importLayout reads the OCI archive BuildKit's oci exporter streams and
// writes its blobs into the layout at dir through a containerd content
// store (each blob verified against its digest). It does not touch
// index.json: the image is only added to the index, by addToLayout, after
// the whole build succeeded.
func importLayout(ctx context.Context, dir string, r io.Reader) (ocispec.Descriptor, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ocispec.Descriptor{}, err
	}
	store, err := local.NewStore(dir)
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
			desc := ocispec.Descriptor{Digest: d, Size: h.Size}
			if err := content.WriteBlob(ctx, store, d.String(), tr, desc); err != nil {
				return ocispec.Descriptor{}, fmt.Errorf("writing blob %s: %w", d, err)
			}
		}
	}
	// The content store stages uploads in DIR/ingest; an OCI layout has no
	// such directory.
	_ = os.Remove(filepath.Join(dir, "ingest"))
	if idx == nil || len(idx.Manifests) != 1 {
		return ocispec.Descriptor{}, errors.New("the exported archive has no single image in its index")
	}
	return idx.Manifests[0], nil
}

// addToLayout records desc in the layout's index.json under tag, replacing
// any entry with that tag, and writes oci-layout. The index is written to a
// temporary file and renamed: a crash leaves the old index intact.
func addToLayout(ctx context.Context, dir string, desc ocispec.Descriptor, tag string, l *lock.Lock) (ocispec.Descriptor, error) {
	if tag == "" {
		tag = "latest"
	}
	layoutFile := filepath.Join(dir, ocispec.ImageLayoutFile)
	if _, err := os.Stat(layoutFile); err != nil {
		b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := os.WriteFile(layoutFile, b, 0o644); err != nil {
			return desc, fmt.Errorf("writing %s: %w", layoutFile, err)
		}
	}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	if b, err := os.ReadFile(filepath.Join(dir, ocispec.ImageIndexFile)); err == nil {
		if err := json.Unmarshal(b, &idx); err != nil {
			return desc, fmt.Errorf("reading %s/index.json: %w", dir, err)
		}
	}
	annotations := map[string]string{}
	for k, v := range desc.Annotations {
		annotations[k] = v
	}
	annotations[ocispec.AnnotationRefName] = tag
	annotations[ocispec.AnnotationRevision] = l.Upstream.Commit
	desc.Annotations = annotations
	kept := idx.Manifests[:0]
	for _, m := range idx.Manifests {
		if m.Annotations[ocispec.AnnotationRefName] == tag {
			continue
		}
		kept = append(kept, m)
	}
	idx.Manifests = append(kept, desc)
	b, err := json.Marshal(idx)
	if err != nil {
		return desc, err
	}
	tmp := filepath.Join(dir, ".index.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return desc, fmt.Errorf("writing index.json: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, ocispec.ImageIndexFile)); err != nil {
		return desc, fmt.Errorf("writing index.json: %w", err)
	}
	return desc, nil
}

// readLayoutImage reads an image's manifest and config from a layout.
func readLayoutImage(ctx context.Context, dir string, desc ocispec.Descriptor) (*ocispec.Manifest, *ocispec.Image, error) {
	store, err := local.NewStore(dir)
	if err != nil {
		return nil, nil, err
	}
	mb, err := content.ReadBlob(ctx, store, desc)
	if err != nil {
		return nil, nil, fmt.Errorf("reading manifest %s: %w", desc.Digest, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return nil, nil, fmt.Errorf("reading manifest %s: %w", desc.Digest, err)
	}
	cb, err := content.ReadBlob(ctx, store, m.Config)
	if err != nil {
		return nil, nil, fmt.Errorf("reading config %s: %w", m.Config.Digest, err)
	}
	var img ocispec.Image
	if err := json.NewDecoder(bytes.NewReader(cb)).Decode(&img); err != nil {
		return nil, nil, fmt.Errorf("reading config %s: %w", m.Config.Digest, err)
	}
	return &m, &img, nil
}
