package lock

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/deps/deb"
	"github.com/vmbuild/vmbuild/deps/gem"
	"github.com/vmbuild/vmbuild/deps/npm"
	"github.com/vmbuild/vmbuild/deps/yarn"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/patch"
	"github.com/vmbuild/vmbuild/recipe"
)

// TreeFunc writes the source tree at l's commit with every patch applied
// into dir. The resolver's own applies diffs in Go; a recipe with script
// patches needs one that runs them where the build does (BuildKit).
type TreeFunc func(ctx context.Context, r *recipe.Recipe, l *Lock, dir string) error

// hasDeps reports whether r pins dependencies: a Debian base, or a layer
// with deps.
func hasDeps(r *recipe.Recipe) bool {
	if r.BaseDebian != nil {
		return true
	}
	for _, lay := range r.Build.Layers {
		if lay.Deps != nil {
			return true
		}
	}
	return false
}

// resolveDeps pins what the build downloads besides the source and
// images: the Debian base's .debs and each layer's dependency set. Pins of
// prev whose inputs did not change are kept without downloading.
func (res Resolver) resolveDeps(ctx context.Context, r *recipe.Recipe, l, prev *Lock, opts Options, plat ocispec.Platform) error {
	if !hasDeps(r) {
		return nil
	}
	var prevDL *DepsLock
	if prev != nil {
		prevDL = prev.DepsLock
	}
	dl := &DepsLock{Version: DepsVersion}
	if r.BaseDebian != nil {
		pin, pkgs, err := res.resolveDebian(ctx, r, prev, opts, plat)
		if err != nil {
			return err
		}
		l.Debian = pin
		dl.Base = &BasePackages{Packages: pkgs}
	}
	var layers []recipe.Layer
	for _, lay := range r.Build.Layers {
		if lay.Deps != nil {
			layers = append(layers, lay)
		}
	}
	if len(layers) > 0 {
		dir, err := os.MkdirTemp(res.WorkDir, "vmbuild-lock-tree-")
		if err != nil {
			return fmt.Errorf("locking %s: %w", r.Name, err)
		}
		defer os.RemoveAll(dir)
		if err := res.patchedTree(ctx, r, l, dir); err != nil {
			return fmt.Errorf("locking %s: %w", r.Name, err)
		}
		fsys := os.DirFS(dir)
		for _, lay := range layers {
			ld, err := res.resolveLayer(ctx, r, lay, fsys, prevDL, plat)
			if err != nil {
				return fmt.Errorf("locking %s: layer %s: %w", r.Name, lay.Name, err)
			}
			dl.Layers = append(dl.Layers, *ld)
		}
	}
	l.DepsLock = dl
	return nil
}

// patchedTree writes the tree the build's layers see: the commit, then
// each patch in order.
func (res Resolver) patchedTree(ctx context.Context, r *recipe.Recipe, l *Lock, dir string) error {
	for _, p := range r.Patches {
		if p.Kind == recipe.PatchScript {
			if res.Tree == nil {
				return fmt.Errorf("reading the dependency lockfiles: %w: patch %q is a script, which only the build can run; lock with a BuildKit connection", errs.ErrUsage, p.Name)
			}
			return res.Tree(ctx, r, l, dir)
		}
	}
	if err := res.Git.Export(ctx, GitURL(r), l.Upstream.Commit, dir); err != nil {
		return err
	}
	for _, p := range r.Patches {
		rep, err := patch.ApplyDiff(ctx, dir, p.Name, p.Content, patch.WithOffset(p.Offset), patch.WithFuzz(p.Fuzz), patch.WithOptional(p.Optional))
		if err != nil {
			return fmt.Errorf("applying patch %q: %w", p.Name, err)
		}
		if err := rep.Err(l.Upstream.Commit); err != nil {
			return err
		}
	}
	return nil
}

func (res Resolver) fetcher() *deps.Fetcher {
	if res.Fetcher != nil {
		return res.Fetcher
	}
	return &deps.Fetcher{Logger: res.Logger}
}

// resolveLayer pins one layer's dependency set from its lockfile in the
// patched tree.
func (res Resolver) resolveLayer(ctx context.Context, r *recipe.Recipe, lay recipe.Layer, fsys fs.FS, prev *DepsLock, plat ocispec.Platform) (*LayerDeps, error) {
	d := lay.Deps
	raw, err := fs.ReadFile(fsys, d.Lockfile)
	if err != nil {
		return nil, fmt.Errorf("reading %s at the locked commit (after patches): %w: %v", d.Lockfile, errs.ErrDependency, err)
	}
	ld := &LayerDeps{
		Layer:          lay.Name,
		Lockfile:       d.Lockfile,
		LockfileSHA256: sha256Hex(raw),
		Scope:          Scope{Platform: platforms.Format(plat), Workspaces: d.Workspaces, Production: d.Production, Without: d.Without, With: d.With},
	}
	var prevLayer *LayerDeps
	if pl, ok := prev.LayerDeps(lay.Name); ok {
		prevLayer = pl
	}
	switch d.Manager {
	case recipe.DepsNPM, recipe.DepsYarn:
		return res.resolveJS(ctx, d, fsys, ld, prevLayer, plat)
	case recipe.DepsBundler:
		return res.resolveGems(ctx, d, fsys, ld, prevLayer, plat)
	}
	return nil, fmt.Errorf("%w: unknown package manager %q", errs.ErrDependency, d.Manager)
}

func (res Resolver) resolveJS(ctx context.Context, d *recipe.Deps, fsys fs.FS, ld *LayerDeps, prev *LayerDeps, plat ocispec.Platform) (*LayerDeps, error) {
	o := npm.Options{Production: d.Production, Workspaces: d.Workspaces, Platform: plat, Registry: d.Registry, Logger: res.Logger}
	var set *npm.Set
	var err error
	if d.Manager == recipe.DepsNPM {
		set, err = npm.Resolve(ctx, fsys, d.Lockfile, o)
	} else {
		set, err = yarn.Resolve(ctx, fsys, d.Lockfile, o)
	}
	if err != nil {
		return nil, err
	}
	if d.Tool != "" {
		if set.Tool, err = npm.ParsePackageManager(d.Tool, npm.DefaultRegistry); err != nil {
			return nil, fmt.Errorf("deps.tool: %w", err)
		}
	}
	if set.Tool == nil && d.Manager == recipe.DepsYarn {
		return nil, fmt.Errorf("%w: Yarn itself is not pinned: %s has no \"packageManager\" field; add one (\"packageManager\": \"yarn@4.18.0\") or set deps.tool in the recipe",
			errs.ErrDependency, path.Join(path.Dir(d.Lockfile), "package.json"))
	}
	if len(set.Credentials) > 0 {
		res.log().Warn("the tree configures registry credentials; vmbuild does not read them", "layer", ld.Layer, "where", set.Credentials)
	}
	f := res.fetcher()
	f.Known = knownSums(prev, set.Packages, set.Tool)
	before, bytesBefore := f.Downloads()
	if err := set.Pin(ctx, f); err != nil {
		return nil, err
	}
	after, bytesAfter := f.Downloads()
	res.log().Info("pinned dependencies", "layer", ld.Layer, "manager", set.Manager, "packages", len(set.Packages), "downloaded", after-before, "bytes", bytesAfter-bytesBefore)
	ld.Manager = set.Manager
	ld.Registry = set.Registry
	for _, p := range set.Packages {
		ld.Packages = append(ld.Packages, PackagePin{Package: p})
	}
	if t := set.Tool; t != nil {
		tp := t.Package
		tp.Path = ".vmbuild-tool/" + path.Base(tp.URL)
		ld.Tool = &ToolPin{Package: tp, Entry: t.Entry}
	}
	return ld, nil
}

// knownSums are the previous layer's pins that still hold: the same URL
// with the same lockfile integrity. Hashing answers them without a
// download.
func knownSums(prev *LayerDeps, next []deps.Package, tool *npm.Tool) map[string]deps.Sum {
	if prev == nil {
		return nil
	}
	old := map[string]deps.Package{}
	for _, p := range prev.Packages {
		old[p.URL] = p.Package
	}
	if prev.Tool != nil {
		old[prev.Tool.URL] = prev.Tool.Package
	}
	known := map[string]deps.Sum{}
	add := func(p deps.Package) {
		if o, ok := old[p.URL]; ok && o.Integrity == p.Integrity && deps.IsSHA256(o.SHA256) {
			known[p.URL] = deps.Sum{SHA256: o.SHA256, Size: o.Size}
		}
	}
	for _, p := range next {
		add(p)
	}
	if tool != nil {
		add(tool.Package)
	}
	return known
}

// resolveGems pins a Bundler set: the gems of the kept groups for the
// target platform (the Gemfile read for its groups, never run), each
// .gem by sha256 (CHECKSUMS when the lockfile has them, else downloaded
// once), with the names of the gems each requires for the per-gem
// install, and git gems by commit.
func (res Resolver) resolveGems(ctx context.Context, d *recipe.Deps, fsys fs.FS, ld *LayerDeps, prev *LayerDeps, plat ocispec.Platform) (*LayerDeps, error) {
	opts := []gem.Option{gem.Without(d.Without...), gem.With(d.With...), gem.WithPlatform(plat, gem.Glibc), gem.WithLogger(res.log())}
	if d.Registry != "" {
		opts = append(opts, gem.WithMirror("all", d.Registry))
	}
	set, err := gem.Resolve(ctx, fsys, d.Lockfile, opts...)
	if err != nil {
		return nil, err
	}
	f := res.fetcher()
	f.Known = knownSums(prev, set.Packages(), nil)
	before, bytesBefore := f.Downloads()
	if err := set.Pin(ctx, f, gem.PinUnhashed); err != nil {
		return nil, err
	}
	after, bytesAfter := f.Downloads()
	res.log().Info("pinned dependencies", "layer", ld.Layer, "manager", "bundler", "gems", len(set.Gems), "git", len(set.Git), "downloaded", after-before, "bytes", bytesAfter-bytesBefore)
	ld.Manager = string(recipe.DepsBundler)
	ld.Registry = d.Registry
	for _, g := range set.Gems {
		ld.Packages = append(ld.Packages, PackagePin{Package: g.Package, Requires: g.Deps})
	}
	sort.Slice(ld.Packages, func(i, j int) bool { return ld.Packages[i].Path < ld.Packages[j].Path })
	for _, g := range set.Git {
		ld.Git = append(ld.Git, GitPin{Name: g.Name, Version: g.Version, Remote: g.Remote, Revision: g.Revision, Path: g.CacheDir(), Glob: g.Glob})
	}
	return ld, nil
}

// resolveDebian pins the Debian base: InRelease verified against the
// keyring, the closure of the requested packages, each .deb by sha256. A
// previous pin is kept, without touching the network, while the recipe's
// Debian settings are unchanged and Update is not asked for (security
// updates come with `vmbuild lock --update`).
func (res Resolver) resolveDebian(ctx context.Context, r *recipe.Recipe, prev *Lock, opts Options, plat ocispec.Platform) (*DebianPin, []deps.Package, error) {
	db := r.BaseDebian
	arch, ok := deb.ArchForGOARCH(plat.Architecture)
	if !ok {
		return nil, nil, fmt.Errorf("locking %s: base: %w: Debian has no architecture for %s", r.Name, errs.ErrDependency, platforms.Format(plat))
	}
	keyring := relPath(r, db.Keyring)
	keyBytes, err := os.ReadFile(keyring)
	if err != nil {
		return nil, nil, fmt.Errorf("locking %s: base: reading the Debian keyring: %w (install debian-archive-keyring, or set base.debian.keyring)", r.Name, err)
	}
	keySHA := sha256Hex(keyBytes)
	if p := prevDebian(prev, db, arch, keySHA); p != nil && !opts.Update {
		return p, prev.DepsLock.Base.Packages, nil
	}
	src := deb.Source{Mirror: db.Mirror, Suite: db.Suite, Components: db.Components, Arch: arch, Keyring: keyring, AllowExpired: db.AllowExpired}
	ix, err := deb.Open(ctx, src, append([]deb.Option{deb.WithLogger(res.log())}, res.Debian...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("locking %s: base: %w", r.Name, err)
	}
	reqs := make([]deb.Request, 0, len(db.Packages))
	for _, p := range db.Packages {
		rq, err := deb.ParseRequest(p)
		if err != nil {
			return nil, nil, fmt.Errorf("locking %s: base: %w", r.Name, err)
		}
		reqs = append(reqs, rq)
	}
	sol, err := deb.Resolve(ctx, ix, reqs, deb.ResolveOptions{Essential: db.Essential, Logger: res.log()})
	if err != nil {
		return nil, nil, fmt.Errorf("locking %s: base: %w", r.Name, err)
	}
	pins, err := ix.Pins(sol)
	if err != nil {
		return nil, nil, fmt.Errorf("locking %s: base: %w", r.Name, err)
	}
	rec := ix.Record()
	pin := &DebianPin{
		Mirror: db.Mirror, Suite: db.Suite, Codename: rec.Codename, Components: db.Components, Architecture: arch,
		InRelease: InReleasePin{
			URL:    ix.Release.URL,
			SHA256: rec.InRelease, Date: rec.Date, ValidUntil: rec.ValidUntil, SignedBy: rec.Signer,
		},
		Keyring: db.Keyring, KeyringSHA256: keySHA,
		AllowExpired: rec.AllowedExpired, Essential: db.Essential,
		Requested: append([]string(nil), db.Packages...), Packages: len(pins),
	}
	res.log().Info("pinned the Debian base", "suite", db.Suite, "packages", len(pins))
	return pin, pins, nil
}

// prevDebian is the previous lock's Debian pin when the recipe's Debian
// settings (and the keyring) are the ones it was made with.
func prevDebian(prev *Lock, db *recipe.DebianBase, arch, keySHA string) *DebianPin {
	if prev == nil || prev.Debian == nil || prev.DepsLock == nil || prev.DepsLock.Base == nil {
		return nil
	}
	p := prev.Debian
	same := p.Mirror == db.Mirror && p.Suite == db.Suite && p.Architecture == arch && p.KeyringSHA256 == keySHA &&
		p.Essential == db.Essential && strings.Join(p.Components, ",") == strings.Join(db.Components, ",") &&
		strings.Join(p.Requested, ",") == strings.Join(db.Packages, ",") && (!p.AllowExpired || db.AllowExpired)
	if !same {
		return nil
	}
	return p
}

// relPath is p relative to the recipe's directory when it is given as
// ./x or ../x.
func relPath(r *recipe.Recipe, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(r.Dir, p)
}
