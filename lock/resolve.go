package lock

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/deps/deb"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/recipe"
)

// Skeleton is the lock of r before anything is resolved: the recipe and
// patch pins (read from the recipe, no network) and the upstream without
// its commit. Resolve fills in the rest; tests pin the rest by hand.
func Skeleton(r *recipe.Recipe) *Lock {
	l := &Lock{
		LockVersion: Version,
		Recipe:      RecipePin{Name: r.Name, File: filepath.Base(r.Path), SHA256: r.SHA256},
		Upstream:    Upstream{URL: r.Upstream.Git, Ref: r.Upstream.Ref},
		Patches:     []PatchPin{},
	}
	for _, p := range r.Patches {
		l.Patches = append(l.Patches, PatchPin{Name: p.Name, Kind: string(p.Kind), File: p.File, SHA256: p.SHA256})
	}
	return l
}

// Resolver pins a recipe's inputs.
type Resolver struct {
	Git    GitResolver
	Images ImageResolver
	// Fetcher hashes the dependency downloads whose lockfile has no
	// sha256 (Yarn Berry, Gemfile.lock without CHECKSUMS). Default: a
	// Fetcher with no cache.
	Fetcher *deps.Fetcher
	// Debian are options for reading Debian indexes (HTTP client, cache
	// directory).
	Debian []deb.Option
	// Tree, if set, writes the patched source tree for a recipe whose
	// patches include scripts (only BuildKit runs those). Diff patches
	// are applied here, in Go.
	Tree TreeFunc
	// WorkDir holds temporary trees. Default os.TempDir().
	WorkDir string
	Logger  *slog.Logger
}

func (res Resolver) log() *slog.Logger {
	if res.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return res.Logger
}

// Options for Resolve.
type Options struct {
	// Update moves to the ref's current head and re-resolves every image
	// tag. Without it, pins in the previous lock are kept while the recipe
	// field they came from is unchanged (Nix's `flake lock` vs `flake
	// update`).
	Update bool
	// Commit pins this exact commit (hand-pinning), regardless of the ref's
	// head.
	Commit string
}

// Platform returns the recipe's target platform, or the host's default.
func Platform(r *recipe.Recipe) (ocispec.Platform, error) {
	if r.Platform == "" {
		return platforms.Normalize(platforms.DefaultSpec()), nil
	}
	p, err := platforms.Parse(r.Platform)
	if err != nil {
		return ocispec.Platform{}, fmt.Errorf("parsing platform %q: %w", r.Platform, err)
	}
	return platforms.Normalize(p), nil
}

// GitURL is the URL the git resolver uses for the recipe's upstream (local
// paths made absolute).
func GitURL(r *recipe.Recipe) string {
	if p, ok := r.LocalUpstream(); ok {
		return p
	}
	return r.Upstream.Git
}

// Resolve produces a lock for r. prev, if not nil, is the current lock:
// its pins are kept where still valid unless opts.Update.
func (res Resolver) Resolve(ctx context.Context, r *recipe.Recipe, prev *Lock, opts Options) (*Lock, error) {
	log := res.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	plat, err := Platform(r)
	if err != nil {
		return nil, err
	}
	l := Skeleton(r)
	url := GitURL(r)
	sameUpstream := prev != nil && prev.Upstream.URL == r.Upstream.Git && prev.Upstream.Ref == r.Upstream.Ref

	// 1. The commit and its time.
	switch {
	case opts.Commit != "":
		commit := opts.Commit
		if !IsCommit(commit) {
			c, err := res.Git.ResolveRef(ctx, url, commit)
			if err != nil {
				return nil, fmt.Errorf("locking %s: %w", r.Name, err)
			}
			commit = c
		}
		l.Upstream.Commit = commit
	case sameUpstream && !opts.Update:
		l.Upstream.Commit = prev.Upstream.Commit
		l.Upstream.CommitTime = prev.Upstream.CommitTime
	default:
		c, err := res.Git.ResolveRef(ctx, url, r.Upstream.Ref)
		if err != nil {
			return nil, fmt.Errorf("locking %s: %w", r.Name, err)
		}
		l.Upstream.Commit = c
	}
	if l.Upstream.CommitTime.IsZero() {
		t, err := res.Git.CommitTime(ctx, url, l.Upstream.Commit)
		if err != nil {
			return nil, fmt.Errorf("locking %s: reading commit %s: %w", r.Name, l.Upstream.Commit, err)
		}
		l.Upstream.CommitTime = t
	}
	log.Info("pinned upstream", "ref", r.Upstream.Ref, "commit", l.Upstream.Commit, "time", l.Upstream.CommitTime)

	// 2. Images: the base, and in dockerfile mode the Dockerfile's.
	keep := func(p *ImagePin, ref string) *ImagePin {
		if opts.Update || p == nil || p.Ref != ref {
			return nil
		}
		return p
	}
	if r.Base != "" {
		ref := NormalizeImageRef(r.Base)
		var pin *ImagePin
		if prev != nil {
			pin = keep(prev.Base, ref)
		}
		if pin == nil {
			p, err := res.Images.ResolveImage(ctx, r.Base, plat)
			if err != nil {
				return nil, fmt.Errorf("locking %s: base: %w", r.Name, err)
			}
			p.Ref = ref
			pin = &p
		}
		l.Base = pin
	}
	if df := r.Build.Dockerfile; df != nil {
		content, err := res.Git.ReadFile(ctx, url, l.Upstream.Commit, df.Path)
		if err != nil {
			return nil, fmt.Errorf("locking %s: reading %s at %s: %w", r.Name, df.Path, short(l.Upstream.Commit), err)
		}
		// The recipe's diff patches apply to the Dockerfile first, so a
		// patched FROM line is what is pinned.
		if content, err = res.patchDockerfile(ctx, r, df.Path, content); err != nil {
			return nil, fmt.Errorf("locking %s: %w", r.Name, err)
		}
		args := map[string]string{}
		for k, v := range df.Args {
			args[k] = v
		}
		args["SOURCE_COMMIT"] = l.Upstream.Commit
		scan, err := ScanDockerfile(ctx, content, df.Target, args, plat)
		if err != nil {
			return nil, fmt.Errorf("locking %s: %s at %s: %w", r.Name, df.Path, short(l.Upstream.Commit), err)
		}
		prevImages := map[string]*ImagePin{}
		if prev != nil {
			for i := range prev.Images {
				prevImages[prev.Images[i].Ref] = &prev.Images[i]
			}
		}
		// The images the Debian base replaces are neither pulled nor
		// pinned.
		images, err := ReplaceImages(scan, df.BaseFor)
		if err != nil {
			return nil, fmt.Errorf("locking %s: %s:%d: %w (%s at %s)", r.Name, r.Path, df.BaseForLine, err, df.Path, short(l.Upstream.Commit))
		}
		for _, ref := range images {
			pin := keep(prevImages[ref], ref)
			if pin == nil {
				p, err := res.Images.ResolveImage(ctx, ref, plat)
				if err != nil {
					return nil, fmt.Errorf("locking %s: image %s used by %s: %w", r.Name, ref, df.Path, err)
				}
				p.Ref = ref
				pin = &p
			}
			l.Images = append(l.Images, *pin)
		}
		if scan.Syntax != "" {
			ref := NormalizeImageRef(scan.Syntax)
			var pin *ImagePin
			if prev != nil {
				pin = keep(prev.Frontend, ref)
			}
			if pin == nil {
				p, err := res.Images.ResolveImage(ctx, scan.Syntax, plat)
				if err != nil {
					return nil, fmt.Errorf("locking %s: the Dockerfile's syntax frontend %s: %w", r.Name, scan.Syntax, err)
				}
				p.Ref = ref
				pin = &p
			}
			l.Frontend = pin
		}
	}

	// 3. The patches are pinned by Skeleton.

	// 4. Every other download: the Debian base's .debs and the layers'
	// dependencies.
	if err := res.resolveDeps(ctx, r, l, prev, opts, plat); err != nil {
		return nil, err
	}
	if err := l.validate(); err != nil {
		return nil, fmt.Errorf("locking %s: %w: %v", r.Name, errs.ErrInvalidLock, err)
	}
	return l, nil
}

// Diff describes how next differs from prev, one line per changed pin, for
// `vmbuild lock` to print (like `nix flake update`).
func Diff(prev, next *Lock) []string {
	var out []string
	if prev == nil {
		out = append(out, fmt.Sprintf("upstream: %s (%s)", next.Upstream.Commit, next.Upstream.CommitTime.Format("2006-01-02T15:04:05Z")))
		if next.Base != nil {
			out = append(out, fmt.Sprintf("base: %s", next.Base.Pinned()))
		}
		for _, im := range next.Images {
			out = append(out, fmt.Sprintf("image: %s", im.Pinned()))
		}
		if next.Frontend != nil {
			out = append(out, fmt.Sprintf("frontend: %s", next.Frontend.Pinned()))
		}
		if d := next.Debian; d != nil {
			out = append(out, fmt.Sprintf("debian base: %s %s index of %s, %d packages", d.Mirror, d.Suite, d.InRelease.Date.Format("2006-01-02"), d.Packages))
		}
		if dl := next.DepsLock; dl != nil {
			for _, ld := range dl.Layers {
				out = append(out, fmt.Sprintf("layer %s: %d %s packages from %s", ld.Layer, len(ld.Packages), ld.Manager, ld.Lockfile))
			}
		}
		return out
	}
	if prev.Upstream.Commit != next.Upstream.Commit {
		out = append(out, fmt.Sprintf("upstream: %s → %s", short(prev.Upstream.Commit), short(next.Upstream.Commit)))
	}
	pinDiff := func(what string, a, b *ImagePin) {
		switch {
		case a == nil && b != nil:
			out = append(out, fmt.Sprintf("%s: added %s", what, b.Pinned()))
		case a != nil && b == nil:
			out = append(out, fmt.Sprintf("%s: removed %s", what, a.Ref))
		case a != nil && b != nil && (a.Ref != b.Ref || a.Digest != b.Digest):
			out = append(out, fmt.Sprintf("%s: %s → %s", what, a.Pinned(), b.Pinned()))
		}
	}
	pinDiff("base", prev.Base, next.Base)
	pinDiff("frontend", prev.Frontend, next.Frontend)
	pm := map[string]*ImagePin{}
	for i := range prev.Images {
		pm[prev.Images[i].Ref] = &prev.Images[i]
	}
	for i := range next.Images {
		pinDiff("image "+next.Images[i].Ref, pm[next.Images[i].Ref], &next.Images[i])
		delete(pm, next.Images[i].Ref)
	}
	for ref, p := range pm {
		pinDiff("image "+ref, p, nil)
	}
	ppm := map[string]string{}
	for _, p := range prev.Patches {
		ppm[p.Name] = p.SHA256
	}
	for _, p := range next.Patches {
		if old, ok := ppm[p.Name]; !ok {
			out = append(out, fmt.Sprintf("patch %s: added (%s)", p.Name, short(p.SHA256)))
		} else if old != p.SHA256 {
			out = append(out, fmt.Sprintf("patch %s: %s → %s", p.Name, short(old), short(p.SHA256)))
		}
		delete(ppm, p.Name)
	}
	for name := range ppm {
		out = append(out, fmt.Sprintf("patch %s: removed", name))
	}
	if a, b := prev.Debian, next.Debian; b != nil && (a == nil || a.InRelease.SHA256 != b.InRelease.SHA256) {
		out = append(out, fmt.Sprintf("debian base: %s %s index of %s (%d packages)", b.Mirror, b.Suite, b.InRelease.Date.Format("2006-01-02"), b.Packages))
	}
	out = append(out, DiffDeps(prev.DepsLock, next.DepsLock)...)
	if prev.Recipe.SHA256 != next.Recipe.SHA256 && len(out) == 0 {
		out = append(out, "recipe: "+short(prev.Recipe.SHA256)+" → "+short(next.Recipe.SHA256))
	}
	return out
}

// HasPlatform reports whether a pinned image has the platform (or is a
// single-platform manifest).
func (p ImagePin) HasPlatform(plat ocispec.Platform) bool {
	if len(p.Platforms) == 0 {
		return true
	}
	_, ok := p.Platforms[platforms.Format(plat)]
	return ok
}

// ManifestFor returns the platform-specific manifest digest for plat, or
// Digest for a single-platform image.
func (p ImagePin) ManifestFor(plat ocispec.Platform) string {
	if d, ok := p.Platforms[platforms.Format(plat)]; ok {
		return d
	}
	return p.Digest
}

// IsLayout reports whether the pin names an OCI layout.
func (p ImagePin) IsLayout() bool { return strings.HasPrefix(p.Ref, recipe.OCILayoutPrefix) }
