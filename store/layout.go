package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"sync"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/registry"
)

// index.json "kind" annotations of cosign's OCI layout (pkg/oci/layout):
// cosign reads a layout's signed image, signatures and attestations by
// these, not by tag.
const (
	KindAnnotation  = "kind"
	KindImage       = "dev.cosignproject.cosign/image"
	KindImageIndex  = "dev.cosignproject.cosign/imageIndex"
	KindSignatures  = "dev.cosignproject.cosign/sigs"
	KindAttestation = "dev.cosignproject.cosign/atts"
)

// maxScannedBlobs bounds how many blob files a referrers scan looks at.
const maxScannedBlobs = 100000

// Layout is an OCI image layout directory.
//
// Tags are index.json entries annotated org.opencontainers.image.ref.name,
// except cosign's tags: "sha256-<hex>.sig" and ".att" are the entries
// annotated kind dev.cosignproject.cosign/sigs and /atts, and writing them
// marks the subject's entry kind .../image (or imageIndex), which is how
// `cosign verify --local-image` finds them. A layout so has one signed
// image. Referrers are the manifests with that subject listed in
// index.json or, as cosign v3 looks for them, anywhere in blobs/ (a
// bounded scan of small JSON files).
//
// Blobs are written directly (temporary file, then rename) rather than
// through containerd's local content store, which probes fs-verity by
// writing into the directory and warns through containerd's global logger.
// Replaced signature images and removed referrers are deleted when nothing
// in index.json reaches them any more. Concurrent writers in one process
// are serialized; concurrent processes writing one layout are not
// supported.
type Layout struct {
	dir string
	lim Limits
	log *slog.Logger
	mu  sync.Mutex
}

var _ Store = (*Layout)(nil)

// LayoutOption configures a Layout.
type LayoutOption func(*Layout)

// WithLayoutLimits sets the read limits; zero fields keep their defaults.
func WithLayoutLimits(l Limits) LayoutOption {
	return func(s *Layout) { s.lim = l.WithDefaults() }
}

// WithLayoutLogger sets the logger (silent by default).
func WithLayoutLogger(l *slog.Logger) LayoutOption {
	return func(s *Layout) {
		if l != nil {
			s.log = l
		}
	}
}

func newLayout(dir string, opts []LayoutOption) *Layout {
	l := &Layout{dir: filepath.Clean(dir), lim: DefaultLimits(), log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(l)
	}
	return l
}

// OpenLayout opens the existing OCI image layout dir: its oci-layout file
// must say so.
func OpenLayout(ctx context.Context, dir string, opts ...LayoutOption) (*Layout, error) {
	l := newLayout(dir, opts)
	root, err := l.root()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	b, err := readFile(ctx, root, ocispec.ImageLayoutFile, 1<<10, ocispec.ImageLayoutFile)
	if err != nil {
		if errors.Is(err, errs.ErrNotFound) {
			return nil, fmt.Errorf("opening OCI layout %s: no %s file: %w", dir, ocispec.ImageLayoutFile, errs.ErrLayout)
		}
		return nil, fmt.Errorf("opening OCI layout %s: %w", dir, err)
	}
	var lf ocispec.ImageLayout
	if err := json.Unmarshal(b, &lf); err != nil || lf.Version == "" {
		return nil, fmt.Errorf("opening OCI layout %s: %s is not an oci-layout file: %w", dir, ocispec.ImageLayoutFile, errs.ErrLayout)
	}
	return l, nil
}

// CreateLayout opens the OCI image layout dir, creating the directory and
// its oci-layout file where they are missing. index.json is written by the
// first change that lists something (a missing index.json reads as an
// empty one), so that a layout whose image never arrived lists nothing.
func CreateLayout(ctx context.Context, dir string, opts ...LayoutOption) (*Layout, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating OCI layout %s: %w", dir, err)
	}
	l := newLayout(dir, opts)
	root, err := l.root()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	if _, err := root.Lstat(ocispec.ImageLayoutFile); errors.Is(err, fs.ErrNotExist) {
		b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := writeFileAtomic(root, ocispec.ImageLayoutFile, b, 0o644); err != nil {
			return nil, fmt.Errorf("creating OCI layout %s: %w", dir, err)
		}
	}
	return OpenLayout(ctx, dir, opts...)
}

// Dir returns the layout's directory.
func (l *Layout) Dir() string { return l.dir }

func (l *Layout) String() string     { return "oci:" + l.dir }
func (l *Layout) Repository() string { return "" }

func (l *Layout) root() (*os.Root, error) {
	r, err := os.OpenRoot(l.dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("opening OCI layout %s: %w", l.dir, errs.ErrNotFound)
		}
		return nil, fmt.Errorf("opening OCI layout %s: %w", l.dir, err)
	}
	return r, nil
}

// BlobPath returns the path of the blob d in the layout.
func (l *Layout) BlobPath(d digest.Digest) string {
	return filepath.Join(l.dir, filepath.FromSlash(blobName(d)))
}

func blobName(d digest.Digest) string {
	return path.Join(ocispec.ImageBlobsDir, string(d.Algorithm()), d.Encoded())
}

// Index reads index.json (within the manifest size limit).
func (l *Layout) Index(ctx context.Context) (*ocispec.Index, error) {
	root, err := l.root()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return l.readIndex(ctx, root)
}

func (l *Layout) readIndex(ctx context.Context, root *os.Root) (*ocispec.Index, error) {
	b, err := readFile(ctx, root, ocispec.ImageIndexFile, l.lim.MaxManifestBytes, ocispec.ImageIndexFile)
	if errors.Is(err, errs.ErrNotFound) {
		return emptyIndex(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(l.dir, ocispec.ImageIndexFile), err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("reading %s: %w: %v", filepath.Join(l.dir, ocispec.ImageIndexFile), errs.ErrLayout, err)
	}
	for i, m := range idx.Manifests {
		if err := m.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("reading %s: manifests[%d]: %w: %v", filepath.Join(l.dir, ocispec.ImageIndexFile), i, errs.ErrLayout, err)
		}
	}
	return &idx, nil
}

func (l *Layout) writeIndex(root *os.Root, idx *ocispec.Index) error {
	idx.SchemaVersion = 2
	idx.MediaType = ocispec.MediaTypeImageIndex
	if idx.Manifests == nil {
		idx.Manifests = []ocispec.Descriptor{}
	}
	b, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(root, ocispec.ImageIndexFile, b, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Join(l.dir, ocispec.ImageIndexFile), err)
	}
	return nil
}

var versioned = specs.Versioned{SchemaVersion: 2}

// find returns the index of the entry with digest d, or -1.
func find(idx *ocispec.Index, d digest.Digest) int {
	for i, m := range idx.Manifests {
		if m.Digest == d {
			return i
		}
	}
	return -1
}

func findKind(idx *ocispec.Index, kind string) int {
	for i, m := range idx.Manifests {
		if m.Annotations[KindAnnotation] == kind {
			return i
		}
	}
	return -1
}

func kindOf(suffix string) string {
	if suffix == "sig" {
		return KindSignatures
	}
	return KindAttestation
}

// resolve finds ref in idx.
func (l *Layout) resolve(idx *ocispec.Index, ref string) (ocispec.Descriptor, error) {
	tag, d, err := parseRef(ref)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("resolving %s in %s: %w: %w", ref, l, errs.ErrUsage, err)
	}
	if d != "" {
		if i := find(idx, d); i >= 0 {
			return idx.Manifests[i], nil
		}
		return ocispec.Descriptor{}, fmt.Errorf("resolving %s in %s: not in index.json: %w", d, l, errs.ErrNotFound)
	}
	if subject, suffix, ok := parseCosignTag(tag); ok {
		if find(idx, subject) >= 0 {
			if i := findKind(idx, kindOf(suffix)); i >= 0 {
				return idx.Manifests[i], nil
			}
		}
		return ocispec.Descriptor{}, fmt.Errorf("resolving %s in %s: %w", tag, l, errs.ErrNotFound)
	}
	var found []int
	for i, m := range idx.Manifests {
		if m.Annotations[ocispec.AnnotationRefName] == tag {
			found = append(found, i)
		}
	}
	switch len(found) {
	case 0:
		return ocispec.Descriptor{}, fmt.Errorf("resolving %s:%s: no image tagged %q in index.json: %w", l, tag, tag, errs.ErrNotFound)
	case 1:
		return idx.Manifests[found[0]], nil
	}
	return ocispec.Descriptor{}, fmt.Errorf("resolving %s:%s: %d images are tagged %q: give the digest: %w", l, tag, len(found), tag, errs.ErrUsage)
}

// Resolve implements Store: ref is a digest listed in index.json, a tag
// (org.opencontainers.image.ref.name; more than one entry with it is an
// error), or a cosign tag of an image in index.json.
func (l *Layout) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	idx, err := l.Index(ctx)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return l.resolve(idx, ref)
}

// Manifest implements Store. A digest is read from blobs/ whether or not
// index.json lists it.
func (l *Layout) Manifest(ctx context.Context, ref string) ([]byte, ocispec.Descriptor, error) {
	root, err := l.root()
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	defer root.Close()
	desc := ocispec.Descriptor{}
	if isDigest(ref) {
		d, err := digest.Parse(ref)
		if err != nil {
			return nil, desc, fmt.Errorf("reading manifest %q in %s: %w: %v", ref, l, errs.ErrUsage, err)
		}
		desc.Digest = d
		if idx, err := l.readIndex(ctx, root); err == nil {
			if i := find(idx, d); i >= 0 {
				desc = idx.Manifests[i]
			}
		}
	} else {
		idx, err := l.readIndex(ctx, root)
		if err != nil {
			return nil, desc, err
		}
		if desc, err = l.resolve(idx, ref); err != nil {
			return nil, desc, err
		}
	}
	b, err := l.readBlob(ctx, root, desc.Digest, l.lim.MaxManifestBytes, "manifest")
	if err != nil {
		return nil, desc, fmt.Errorf("reading manifest %s in %s: %w", desc.Digest, l, err)
	}
	if desc.MediaType == "" {
		var probe struct {
			MediaType string `json:"mediaType"`
		}
		_ = json.Unmarshal(b, &probe)
		desc.MediaType = probe.MediaType
	}
	desc.Size = int64(len(b))
	return b, desc, nil
}

// readBlob reads the blob d within limit and checks its digest.
func (l *Layout) readBlob(ctx context.Context, root *os.Root, d digest.Digest, limit int64, what string) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", errs.ErrUsage, err)
	}
	b, err := readFile(ctx, root, blobName(d), limit, what)
	if err != nil {
		return nil, err
	}
	if got := d.Algorithm().FromBytes(b); got != d {
		return nil, fmt.Errorf("blob %s has digest %s: %w", d, got, errs.ErrLayout)
	}
	return b, nil
}

// Blob implements Store.
func (l *Layout) Blob(ctx context.Context, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	if limit <= 0 {
		limit = l.lim.MaxBlobBytes
	}
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("reading blob %q in %s: %w: %v", desc.Digest, l, errs.ErrUsage, err)
	}
	if desc.Size < 0 {
		return nil, fmt.Errorf("reading blob %s in %s: negative size %d: %w", desc.Digest, l, desc.Size, errs.ErrLayout)
	}
	if desc.Size > limit {
		return nil, fmt.Errorf("reading blob %s in %s: %w", desc.Digest, l, &errs.LimitError{Limit: fmt.Sprintf("blob size (%s)", registry.FormatBytes(limit)), Got: fmt.Sprintf("%d bytes", desc.Size)})
	}
	root, err := l.root()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	b, err := l.readBlob(ctx, root, desc.Digest, limit, "blob")
	if err != nil {
		return nil, fmt.Errorf("reading blob %s in %s: %w", desc.Digest, l, err)
	}
	if int64(len(b)) != desc.Size {
		return nil, fmt.Errorf("reading blob %s in %s: %d bytes, the descriptor says %d: %w", desc.Digest, l, len(b), desc.Size, errs.ErrLayout)
	}
	return b, nil
}

// Open streams the blob desc, whatever its size (a layer): a regular file
// of exactly desc.Size bytes whose digest is checked when it has been read
// to the end (the last Read returns the error). The context is looked at
// between reads.
func (l *Layout) Open(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("opening blob %q in %s: %w: %v", desc.Digest, l, errs.ErrUsage, err)
	}
	if !desc.Digest.Algorithm().Available() {
		return nil, fmt.Errorf("opening blob %s in %s: unsupported digest algorithm: %w", desc.Digest, l, errs.ErrLayout)
	}
	root, err := l.root()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, st, err := openRegular(root, blobName(desc.Digest))
	if err != nil {
		return nil, fmt.Errorf("opening blob %s in %s: %w", desc.Digest, l, err)
	}
	if st.Size() != desc.Size {
		f.Close()
		return nil, fmt.Errorf("opening blob %s in %s: %d bytes, the descriptor says %d: %w", desc.Digest, l, st.Size(), desc.Size, errs.ErrLayout)
	}
	return &verifyingReader{ctx: ctx, f: f, want: desc.Digest, size: desc.Size, h: desc.Digest.Algorithm().Hash()}, nil
}

// PushBlob implements Store.
func (l *Layout) PushBlob(ctx context.Context, desc ocispec.Descriptor, data []byte) error {
	if err := desc.Digest.Validate(); err != nil {
		return fmt.Errorf("writing blob %q in %s: %w: %v", desc.Digest, l, errs.ErrUsage, err)
	}
	if desc.Digest.Algorithm().FromBytes(data) != desc.Digest || int64(len(data)) != desc.Size {
		return fmt.Errorf("writing blob %s in %s: content does not match the descriptor: %w", desc.Digest, l, errs.ErrUsage)
	}
	root, err := l.root()
	if err != nil {
		return err
	}
	defer root.Close()
	return l.writeBlob(ctx, root, desc, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteBlob streams the blob desc from r into the layout (unless it is
// there already), checking its size and digest before it is renamed into
// place.
func (l *Layout) WriteBlob(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	if err := desc.Digest.Validate(); err != nil {
		return fmt.Errorf("writing blob %q in %s: %w: %v", desc.Digest, l, errs.ErrUsage, err)
	}
	root, err := l.root()
	if err != nil {
		return err
	}
	defer root.Close()
	return l.writeBlob(ctx, root, desc, func(w io.Writer) error {
		v := desc.Digest.Verifier()
		n, err := io.Copy(io.MultiWriter(w, v), io.LimitReader(ctxReader{ctx, r}, desc.Size+1))
		if err != nil {
			return err
		}
		if n != desc.Size {
			return fmt.Errorf("read %d bytes, the descriptor says %d: %w", n, desc.Size, errs.ErrLayout)
		}
		if !v.Verified() {
			return fmt.Errorf("content does not match digest %s: %w", desc.Digest, errs.ErrLayout)
		}
		return nil
	})
}

func (l *Layout) writeBlob(ctx context.Context, root *os.Root, desc ocispec.Descriptor, fill func(io.Writer) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	name := blobName(desc.Digest)
	if st, err := root.Lstat(name); err == nil && st.Mode().IsRegular() && st.Size() == desc.Size {
		return nil
	}
	if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
		return fmt.Errorf("writing blob %s in %s: %w", desc.Digest, l, err)
	}
	if err := writeAtomic(root, name, 0o444, fill); err != nil {
		return fmt.Errorf("writing blob %s in %s: %w", desc.Digest, l, err)
	}
	return nil
}

// manifestDoc is what the layout needs to know of a manifest.
type manifestDoc struct {
	MediaType    string               `json:"mediaType"`
	ArtifactType string               `json:"artifactType"`
	Config       *ocispec.Descriptor  `json:"config"`
	Layers       []ocispec.Descriptor `json:"layers"`
	Manifests    []ocispec.Descriptor `json:"manifests"`
	Subject      *ocispec.Descriptor  `json:"subject"`
	Annotations  map[string]string    `json:"annotations"`
}

// PushManifest implements Store. With a cosign tag the manifest becomes
// the layout's signatures (or attestations) entry and its subject is
// marked as the signed image; with another tag it is the entry of that
// tag; a manifest with a subject is listed in index.json with its
// artifact type.
func (l *Layout) PushManifest(ctx context.Context, mediaType string, data []byte, tag string) (ocispec.Descriptor, error) {
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	if mediaType == "" {
		return desc, fmt.Errorf("writing manifest %s in %s: media type is empty: %w", desc.Digest, l, errs.ErrUsage)
	}
	var doc manifestDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return desc, fmt.Errorf("writing manifest %s in %s: not JSON: %w: %v", desc.Digest, l, errs.ErrUsage, err)
	}
	if tag != "" {
		if _, _, err := parseRef(tag); err != nil || isDigest(tag) {
			return desc, fmt.Errorf("writing manifest %s in %s as %q: %w: not a tag", desc.Digest, l, tag, errs.ErrUsage)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	root, err := l.root()
	if err != nil {
		return desc, err
	}
	defer root.Close()
	if err := l.writeBlob(ctx, root, desc, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
		return desc, err
	}
	idx, err := l.readIndex(ctx, root)
	if err != nil {
		return desc, err
	}
	garbage := map[digest.Digest]bool{}
	switch {
	case tag != "":
		if err := l.setTag(ctx, root, idx, desc, tag, garbage); err != nil {
			return desc, fmt.Errorf("writing manifest %s in %s: %w", desc.Digest, l, err)
		}
	case doc.Subject != nil:
		if find(idx, desc.Digest) < 0 {
			entry := desc
			entry.ArtifactType = doc.ArtifactType
			if entry.ArtifactType == "" && doc.Config != nil {
				entry.ArtifactType = doc.Config.MediaType
			}
			idx.Manifests = append(idx.Manifests, entry)
		}
	default:
		return desc, nil
	}
	if err := l.writeIndex(root, idx); err != nil {
		return desc, err
	}
	l.collect(ctx, root, idx, garbage)
	return desc, nil
}

// setTag points tag at desc in idx; what it replaces goes to garbage.
func (l *Layout) setTag(ctx context.Context, root *os.Root, idx *ocispec.Index, desc ocispec.Descriptor, tag string, garbage map[digest.Digest]bool) error {
	if subject, suffix, ok := parseCosignTag(tag); ok {
		si := find(idx, subject)
		if si < 0 {
			return fmt.Errorf("image %s is not in index.json: %w", subject, errs.ErrNotFound)
		}
		for j, m := range idx.Manifests {
			if j != si && m.Digest != subject && (m.Annotations[KindAnnotation] == KindImage || m.Annotations[KindAnnotation] == KindImageIndex) {
				return fmt.Errorf("index.json already marks %s as the signed image: %w", m.Digest, errs.ErrUsage)
			}
		}
		s := idx.Manifests[si]
		kind := KindImage
		if images.IsIndexType(s.MediaType) {
			kind = KindImageIndex
		}
		s.Annotations = withAnnotation(s.Annotations, KindAnnotation, kind)
		idx.Manifests[si] = s
		entry := ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size, Annotations: map[string]string{KindAnnotation: kindOf(suffix)}}
		if i := findKind(idx, kindOf(suffix)); i >= 0 {
			if old := idx.Manifests[i].Digest; old != desc.Digest {
				l.markOld(ctx, root, old, garbage)
			}
			idx.Manifests[i] = entry
		} else {
			idx.Manifests = append(idx.Manifests, entry)
		}
		return nil
	}
	entry := desc
	entry.Annotations = withAnnotation(desc.Annotations, ocispec.AnnotationRefName, tag)
	putEntry(idx, entry, tag)
	return nil
}

// putEntry records entry in idx: it replaces, in place, the first entry
// with the same tag (for an untagged entry: the same digest, untagged);
// further such entries are dropped.
func putEntry(idx *ocispec.Index, entry ocispec.Descriptor, tag string) {
	replaced := false
	kept := make([]ocispec.Descriptor, 0, len(idx.Manifests)+1)
	for _, m := range idx.Manifests {
		name := m.Annotations[ocispec.AnnotationRefName]
		if name == tag && (tag != "" || m.Digest == entry.Digest) {
			if !replaced {
				kept = append(kept, entry)
				replaced = true
			}
			continue
		}
		kept = append(kept, m)
	}
	if !replaced {
		kept = append(kept, entry)
	}
	idx.Manifests = kept
}

func withAnnotation(a map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(a)+1)
	for ak, av := range a {
		out[ak] = av
	}
	out[k] = v
	return out
}

// Tag implements Store: tag then names the manifest d (with the media
// type and annotations of its index.json entry, if it has one).
func (l *Layout) Tag(ctx context.Context, d digest.Digest, tag string) error {
	if _, _, err := parseRef(tag); err != nil || isDigest(tag) {
		return fmt.Errorf("tagging %s as %q in %s: %w: not a tag", d, tag, l, errs.ErrUsage)
	}
	_, desc, err := l.Manifest(ctx, d.String())
	if err != nil {
		return fmt.Errorf("tagging %s as %s in %s: %w", d, tag, l, err)
	}
	desc.Annotations = withoutAnnotation(desc.Annotations, ocispec.AnnotationRefName)
	if _, err := l.SetEntry(ctx, desc, tag); err != nil {
		return fmt.Errorf("tagging %s as %s: %w", d, tag, err)
	}
	return nil
}

func withoutAnnotation(a map[string]string, k string) map[string]string {
	if _, ok := a[k]; !ok {
		return a
	}
	out := make(map[string]string, len(a))
	for ak, av := range a {
		if ak != k {
			out[ak] = av
		}
	}
	return out
}

// SetEntry records desc, with its annotations, in index.json under tag
// (org.opencontainers.image.ref.name; "" for an untagged entry), replacing
// the entry that had that tag in place. It returns the entry as written.
// The manifest must be in the layout already. Writing the same entry
// twice leaves index.json byte-for-byte unchanged.
func (l *Layout) SetEntry(ctx context.Context, desc ocispec.Descriptor, tag string) (ocispec.Descriptor, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	root, err := l.root()
	if err != nil {
		return desc, err
	}
	defer root.Close()
	if st, err := root.Lstat(blobName(desc.Digest)); err != nil || !st.Mode().IsRegular() {
		return desc, fmt.Errorf("recording %s in %s: the manifest is not in blobs/: %w", desc.Digest, l, errs.ErrNotFound)
	}
	idx, err := l.readIndex(ctx, root)
	if err != nil {
		return desc, err
	}
	if tag != "" {
		if _, _, err := parseRef(tag); err != nil || isDigest(tag) {
			return desc, fmt.Errorf("recording %s in %s as %q: %w: not a tag", desc.Digest, l, tag, errs.ErrUsage)
		}
		if _, _, ok := parseCosignTag(tag); ok {
			garbage := map[digest.Digest]bool{}
			if err := l.setTag(ctx, root, idx, desc, tag, garbage); err != nil {
				return desc, fmt.Errorf("recording %s in %s: %w", desc.Digest, l, err)
			}
			if err := l.writeIndex(root, idx); err != nil {
				return desc, err
			}
			l.collect(ctx, root, idx, garbage)
			return desc, nil
		}
		desc.Annotations = withAnnotation(desc.Annotations, ocispec.AnnotationRefName, tag)
	}
	putEntry(idx, desc, tag)
	if err := l.writeIndex(root, idx); err != nil {
		return desc, err
	}
	return desc, nil
}

// Referrers implements Store.
func (l *Layout) Referrers(ctx context.Context, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	if err := subject.Validate(); err != nil {
		return nil, fmt.Errorf("listing referrers of %q in %s: %w: %v", subject, l, errs.ErrUsage, err)
	}
	root, err := l.root()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	idx, err := l.readIndex(ctx, root)
	if err != nil {
		return nil, err
	}
	out, err := l.referrers(ctx, root, idx, subject, artifactType)
	if err != nil {
		return nil, fmt.Errorf("listing referrers of %s in %s: %w", subject, l, err)
	}
	return out, nil
}

func (l *Layout) referrers(ctx context.Context, root *os.Root, idx *ocispec.Index, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	cands := map[digest.Digest]bool{}
	for _, m := range idx.Manifests {
		if m.Digest != subject && (m.MediaType == "" || images.IsManifestType(m.MediaType)) {
			cands[m.Digest] = true
		}
	}
	dir := path.Join(ocispec.ImageBlobsDir, string(digest.SHA256))
	f, err := root.Open(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if f != nil {
		ents, err := f.ReadDir(maxScannedBlobs)
		f.Close()
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if !e.Type().IsRegular() {
				continue
			}
			d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
			if d.Validate() != nil || cands[d] || d == subject {
				continue
			}
			info, err := e.Info()
			if err != nil || info.Size() > l.lim.MaxManifestBytes || info.Size() < 2 {
				continue
			}
			if jsonObject(root, path.Join(dir, e.Name())) {
				cands[d] = true
			}
		}
	}
	keys := make([]digest.Digest, 0, len(cands))
	for d := range cands {
		keys = append(keys, d)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	var out []ocispec.Descriptor
	for _, d := range keys {
		b, err := l.readBlob(ctx, root, d, l.lim.MaxManifestBytes, "manifest")
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		var doc manifestDoc
		if json.Unmarshal(b, &doc) != nil || doc.Subject == nil || doc.Subject.Digest != subject {
			continue
		}
		at := doc.ArtifactType
		if at == "" && doc.Config != nil {
			at = doc.Config.MediaType
		}
		if artifactType != "" && at != artifactType {
			continue
		}
		if len(out) >= l.lim.MaxReferrers {
			return nil, &errs.LimitError{Limit: fmt.Sprintf("referrers count (%d)", l.lim.MaxReferrers), Got: fmt.Sprintf("more than %d", l.lim.MaxReferrers)}
		}
		mt := doc.MediaType
		if mt == "" {
			mt = ocispec.MediaTypeImageManifest
		}
		out = append(out, ocispec.Descriptor{MediaType: mt, ArtifactType: at, Digest: d, Size: int64(len(b)), Annotations: doc.Annotations})
	}
	return out, nil
}

// jsonObject reports whether the regular file name starts with '{'.
func jsonObject(root *os.Root, name string) bool {
	f, _, err := openRegular(root, name)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 1)
	_, err = f.Read(head)
	return err == nil && head[0] == '{'
}

// RemoveReferrer implements Store: the referrer's index.json entry goes,
// and its blobs when nothing else reaches them.
func (l *Layout) RemoveReferrer(ctx context.Context, subject, d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("removing referrer %q in %s: %w: %v", d, l, errs.ErrUsage, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	root, err := l.root()
	if err != nil {
		return err
	}
	defer root.Close()
	idx, err := l.readIndex(ctx, root)
	if err != nil {
		return err
	}
	garbage := map[digest.Digest]bool{}
	l.markOld(ctx, root, d, garbage)
	if i := find(idx, d); i >= 0 {
		idx.Manifests = append(idx.Manifests[:i], idx.Manifests[i+1:]...)
		if err := l.writeIndex(root, idx); err != nil {
			return err
		}
	}
	l.collect(ctx, root, idx, garbage)
	return nil
}

// markOld adds a manifest, its config and layers to garbage.
func (l *Layout) markOld(ctx context.Context, root *os.Root, d digest.Digest, garbage map[digest.Digest]bool) {
	garbage[d] = true
	b, err := l.readBlob(ctx, root, d, l.lim.MaxManifestBytes, "manifest")
	if err != nil {
		return
	}
	var m manifestDoc
	if json.Unmarshal(b, &m) != nil {
		return
	}
	if m.Config != nil {
		garbage[m.Config.Digest] = true
	}
	for _, ly := range m.Layers {
		garbage[ly.Digest] = true
	}
}

// collect deletes the garbage blobs that nothing in idx reaches.
func (l *Layout) collect(ctx context.Context, root *os.Root, idx *ocispec.Index, garbage map[digest.Digest]bool) {
	if len(garbage) == 0 {
		return
	}
	reach := map[digest.Digest]bool{}
	var walk func(d ocispec.Descriptor, depth int)
	walk = func(d ocispec.Descriptor, depth int) {
		if reach[d.Digest] || depth > 8 {
			return
		}
		reach[d.Digest] = true
		if d.MediaType != "" && !images.IsManifestType(d.MediaType) && !images.IsIndexType(d.MediaType) {
			return
		}
		b, err := l.readBlob(ctx, root, d.Digest, l.lim.MaxManifestBytes, "manifest")
		if err != nil {
			return
		}
		var m manifestDoc
		if json.Unmarshal(b, &m) != nil {
			return
		}
		if m.Config != nil {
			reach[m.Config.Digest] = true
		}
		for _, ly := range m.Layers {
			reach[ly.Digest] = true
		}
		for _, c := range m.Manifests {
			walk(c, depth+1)
		}
	}
	for _, m := range idx.Manifests {
		walk(m, 0)
	}
	for d := range garbage {
		if reach[d] || d.Validate() != nil {
			continue
		}
		if err := root.Remove(blobName(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			l.log.Debug("cannot delete replaced blob", "digest", d, "err", err)
		}
	}
}

// emptyIndex is an index with no manifests.
func emptyIndex() *ocispec.Index {
	return &ocispec.Index{Versioned: versioned, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}
}
