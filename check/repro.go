// Reproducible checks that a recipe's build is bit-for-bit reproducible,
// as `nix build --check` does: it builds the locked recipe, rebuilds it
// with BuildKit's cache disabled, and compares the two images. On a
// mismatch it names the layers that differ and, within them, the files
// (path, size, mode, content hash).
package check

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/recipe"
	"github.com/vmbuild/vmbuild/store"
)

// FileEntry is one file of a layer, as compared.
type FileEntry struct {
	Path   string `json:"path"`
	Type   string `json:"type"`
	Size   int64  `json:"size"`
	Mode   string `json:"mode"`
	UID    int    `json:"uid"`
	GID    int    `json:"gid"`
	SHA256 string `json:"sha256,omitempty"`
	Link   string `json:"link,omitempty"`
	MTime  int64  `json:"mtime"`
}

func (f FileEntry) String() string {
	s := fmt.Sprintf("%s %s size=%d mode=%s uid=%d gid=%d mtime=%d", f.Type, f.Path, f.Size, f.Mode, f.UID, f.GID, f.MTime)
	if f.SHA256 != "" {
		s += " sha256=" + f.SHA256[:16]
	}
	if f.Link != "" {
		s += " → " + f.Link
	}
	return s
}

// FileDiff is a file that differs between the two builds (A or B nil when
// the file is only in the other).
type FileDiff struct {
	Path string     `json:"path"`
	A    *FileEntry `json:"first,omitempty"`
	B    *FileEntry `json:"second,omitempty"`
}

// LayerDiff is a layer that differs.
type LayerDiff struct {
	Index int           `json:"index"`
	Step  string        `json:"step,omitempty"`
	A     digest.Digest `json:"first"`
	B     digest.Digest `json:"second"`
	Files []FileDiff    `json:"files"`
}

// ReproResult of a check.
type ReproResult struct {
	First        digest.Digest `json:"first"`
	Second       digest.Digest `json:"second"`
	Reproducible bool          `json:"reproducible"`
	ConfigDiffer bool          `json:"configDiffers,omitempty"`
	// Manifest lists differences in the manifests themselves (annotations,
	// media types) when the layers and config agree.
	Manifest []string    `json:"manifest,omitempty"`
	Layers   []LayerDiff `json:"layers,omitempty"`
}

// Err is nil for a reproducible build, else an error wrapping
// errs.ErrNotReproducible that names layers and files.
func (r *ReproResult) Err() error {
	if r.Reproducible {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s and %s", r.First, r.Second)
	if r.ConfigDiffer {
		b.WriteString("\n  the image configs differ")
	}
	for _, m := range r.Manifest {
		b.WriteString("\n  manifest: " + m)
	}
	for _, l := range r.Layers {
		name := fmt.Sprintf("layer %d", l.Index)
		if l.Step != "" {
			name += " (" + l.Step + ")"
		}
		fmt.Fprintf(&b, "\n  %s: %s ≠ %s", name, l.A, l.B)
		for i, f := range l.Files {
			if i == 20 {
				fmt.Fprintf(&b, "\n    … and %d more files", len(l.Files)-20)
				break
			}
			switch {
			case f.A == nil:
				fmt.Fprintf(&b, "\n    %s: only in the second build (%s)", f.Path, f.B)
			case f.B == nil:
				fmt.Fprintf(&b, "\n    %s: only in the first build (%s)", f.Path, f.A)
			default:
				fmt.Fprintf(&b, "\n    %s:\n      first:  %s\n      second: %s", f.Path, f.A, f.B)
			}
		}
	}
	return fmt.Errorf("%w: %s", errs.ErrNotReproducible, b.String())
}

// ReproOptions configure [Reproducible].
type ReproOptions struct {
	// Build configures both builds (client, helper, cache imports) when
	// Builder is nil; its Output is ignored.
	Build build.Options
	// Builder builds both images; default build.New(Build), over
	// BuildKit. Each build is asked for an OCI layout output, the second
	// with NoCache.
	Builder build.Builder
}

// Reproducible builds r at l (the cache may serve it) into dir/first, rebuilds it
// with the cache disabled into dir/second, and compares. It returns the
// comparison and the last build's result; a failing build is returned as
// its error (the second's wrapped as "rebuilding without cache").
func Reproducible(ctx context.Context, r *recipe.Recipe, l *lock.Lock, dir string, opts ReproOptions) (*ReproResult, *build.Result, error) {
	b := opts.Builder
	if b == nil {
		b = build.New(opts.Build)
	}
	dirA, dirB := filepath.Join(dir, "first"), filepath.Join(dir, "second")
	first, err := b.Build(ctx, r, l, build.Request{Output: build.Output{OCIDir: dirA}})
	if err != nil {
		return nil, first, err
	}
	second, err := b.Build(ctx, r, l, build.Request{Output: build.Output{OCIDir: dirB}, NoCache: true})
	if err != nil {
		return nil, second, fmt.Errorf("rebuilding without cache: %w", err)
	}
	res, err := Compare(ctx, dirA, first, dirB, second)
	return res, second, err
}

// Compare compares two builds' images, read from their OCI layouts.
func Compare(ctx context.Context, dirA string, a *build.Result, dirB string, b *build.Result) (*ReproResult, error) {
	res := &ReproResult{First: a.Digest, Second: b.Digest, Reproducible: a.Digest == b.Digest}
	if res.Reproducible {
		return res, nil
	}
	if a.Manifest == nil || b.Manifest == nil {
		return res, errors.New("comparing builds: manifests unavailable")
	}
	res.ConfigDiffer = a.Manifest.Config.Digest != b.Manifest.Config.Digest
	res.Manifest = manifestDiffs(a.Manifest, b.Manifest)
	steps := map[digest.Digest]string{}
	for _, s := range a.Steps {
		if s.LayerDigest != "" {
			steps[s.LayerDigest] = s.ID
		}
	}
	sa, err := store.OpenLayout(ctx, dirA)
	if err != nil {
		return res, err
	}
	sb, err := store.OpenLayout(ctx, dirB)
	if err != nil {
		return res, err
	}
	n := max(len(a.Manifest.Layers), len(b.Manifest.Layers))
	for i := 0; i < n; i++ {
		var la, lb ocispec.Descriptor
		if i < len(a.Manifest.Layers) {
			la = a.Manifest.Layers[i]
		}
		if i < len(b.Manifest.Layers) {
			lb = b.Manifest.Layers[i]
		}
		if la.Digest == lb.Digest {
			continue
		}
		ld := LayerDiff{Index: i, Step: steps[la.Digest], A: la.Digest, B: lb.Digest}
		fa, err := layerFiles(ctx, sa, la)
		if err != nil {
			return res, fmt.Errorf("reading layer %d of the first build: %w", i, err)
		}
		fb, err := layerFiles(ctx, sb, lb)
		if err != nil {
			return res, fmt.Errorf("reading layer %d of the second build: %w", i, err)
		}
		ld.Files = diffFiles(fa, fb)
		res.Layers = append(res.Layers, ld)
	}
	return res, nil
}

func layerFiles(ctx context.Context, l *store.Layout, desc ocispec.Descriptor) (map[string]FileEntry, error) {
	out := map[string]FileEntry{}
	if desc.Digest == "" {
		return out, nil
	}
	rc, err := l.Open(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var r io.Reader = rc
	if strings.Contains(desc.MediaType, "gzip") {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		e := FileEntry{Path: h.Name, Size: h.Size, Mode: fmt.Sprintf("%04o", h.Mode&0o7777), UID: h.Uid, GID: h.Gid, Link: h.Linkname, MTime: h.ModTime.Unix()}
		switch h.Typeflag {
		case tar.TypeDir:
			e.Type = "dir"
		case tar.TypeSymlink:
			e.Type = "symlink"
		case tar.TypeLink:
			e.Type = "hardlink"
		case tar.TypeReg:
			e.Type = "file"
			hs := sha256.New()
			if _, err := io.Copy(hs, tr); err != nil {
				return nil, err
			}
			e.SHA256 = hex.EncodeToString(hs.Sum(nil))
		default:
			e.Type = fmt.Sprintf("type-%c", h.Typeflag)
		}
		out[h.Name] = e
	}
	// Read to the end, so that the layer's digest is checked.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, err
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return nil, err
	}
	return out, nil
}

func diffFiles(a, b map[string]FileEntry) []FileDiff {
	var out []FileDiff
	for p, fa := range a {
		fb, ok := b[p]
		switch {
		case !ok:
			fa := fa
			out = append(out, FileDiff{Path: p, A: &fa})
		case fa != fb:
			fa, fb := fa, fb
			out = append(out, FileDiff{Path: p, A: &fa, B: &fb})
		}
	}
	for p, fb := range b {
		if _, ok := a[p]; !ok {
			fb := fb
			out = append(out, FileDiff{Path: p, B: &fb})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// TempDir makes a directory for Check's two layouts.
func TempDir(base string) (string, error) {
	if base != "" {
		if err := os.MkdirAll(base, 0o755); err != nil {
			return "", err
		}
	}
	return os.MkdirTemp(base, "vmbuild-check-")
}

func manifestDiffs(a, b *ocispec.Manifest) []string {
	var out []string
	annot := func(where string, x, y map[string]string) {
		keys := map[string]bool{}
		for k := range x {
			keys[k] = true
		}
		for k := range y {
			keys[k] = true
		}
		var ks []string
		for k := range keys {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		for _, k := range ks {
			if x[k] != y[k] {
				out = append(out, fmt.Sprintf("%s annotation %s: %q ≠ %q", where, k, x[k], y[k]))
			}
		}
	}
	if a.MediaType != b.MediaType {
		out = append(out, fmt.Sprintf("mediaType %q ≠ %q", a.MediaType, b.MediaType))
	}
	annot("manifest", a.Annotations, b.Annotations)
	for i := 0; i < len(a.Layers) && i < len(b.Layers); i++ {
		if a.Layers[i].MediaType != b.Layers[i].MediaType {
			out = append(out, fmt.Sprintf("layer %d mediaType %q ≠ %q", i, a.Layers[i].MediaType, b.Layers[i].MediaType))
		}
		annot(fmt.Sprintf("layer %d", i), a.Layers[i].Annotations, b.Layers[i].Annotations)
	}
	return out
}
