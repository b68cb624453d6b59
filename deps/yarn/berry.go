package yarn

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/deps/npm"
	"github.com/vmbuild/vmbuild/errs"
)

type berryEntry struct {
	Version          string            `yaml:"version"`
	Resolution       string            `yaml:"resolution"`
	Dependencies     map[string]string `yaml:"dependencies"`
	PeerDependencies map[string]string `yaml:"peerDependencies"`
	DependenciesMeta map[string]struct {
		Optional bool `yaml:"optional"`
	} `yaml:"dependenciesMeta"`
	Conditions   string `yaml:"conditions"`
	Checksum     string `yaml:"checksum"`
	LanguageName string `yaml:"languageName"`
	LinkType     string `yaml:"linkType"`

	key  string
	line int
	// from Resolution
	name, ref string
}

type berryLock struct {
	file    string
	dir     string
	version int
	entries []*berryEntry
	byDesc  map[string]*berryEntry
	byRes   map[string]*berryEntry
	// compat maps a descriptor to the builtin-patch descriptor Yarn's
	// plugin-compat substitutes for it ("typescript@npm:^5" →
	// "typescript@patch:typescript@npm%3A^5#optional!builtin<compat/typescript>").
	compat map[string]string
}

// splitIdent splits "name@rest" ("@scope/name@rest") at the @ after the
// name.
func splitIdent(s string) (name, rest string, ok bool) {
	from := 0
	if strings.HasPrefix(s, "@") {
		from = 1
	}
	i := strings.Index(s[from:], "@")
	if i < 0 {
		return s, "", false
	}
	return s[:from+i], s[from+i+1:], true
}

func parseBerry(file string, raw []byte) (*berryLock, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("parsing %s: %w: %v", file, errs.ErrDependency, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("parsing %s: %w: not a YAML mapping", file, errs.ErrDependency)
	}
	lk := &berryLock{file: file, dir: path.Dir(file), byDesc: map[string]*berryEntry{}, byRes: map[string]*berryEntry{}, compat: map[string]string{}}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Value == "__metadata" {
			var md struct {
				Version string `yaml:"version"`
			}
			if err := v.Decode(&md); err != nil {
				return nil, fmt.Errorf("parsing %s:%d: %w: __metadata: %v", file, k.Line, errs.ErrDependency, err)
			}
			n, err := strconv.Atoi(md.Version)
			if err != nil {
				return nil, fmt.Errorf("parsing %s:%d: %w: __metadata.version %q is not a number", file, k.Line, errs.ErrDependency, md.Version)
			}
			lk.version = n
			continue
		}
		e := &berryEntry{key: k.Value, line: k.Line}
		if err := v.Decode(e); err != nil {
			return nil, fmt.Errorf("parsing %s:%d: %w: entry %q: %v", file, k.Line, errs.ErrDependency, k.Value, err)
		}
		if e.Resolution == "" {
			return nil, fmt.Errorf("parsing %s:%d: %w: entry %q has no resolution", file, k.Line, errs.ErrDependency, k.Value)
		}
		var ok bool
		if e.name, e.ref, ok = splitIdent(e.Resolution); !ok {
			return nil, fmt.Errorf("parsing %s:%d: %w: entry %q: resolution %q is not NAME@REFERENCE", file, k.Line, errs.ErrDependency, k.Value, e.Resolution)
		}
		lk.entries = append(lk.entries, e)
		lk.byRes[e.Resolution] = e
		for _, d := range strings.Split(k.Value, ",") {
			d = strings.TrimSpace(d)
			lk.byDesc[d] = e
			name, rng, _ := splitIdent(d)
			if src, ok := strings.CutPrefix(rng, "patch:"); ok {
				src, sel, _ := strings.Cut(src, "#")
				if strings.HasPrefix(sel, "optional!builtin<compat/") {
					if dec, err := url.PathUnescape(src); err == nil {
						lk.compat[dec] = name + "@" + rng
					}
				}
			}
		}
	}
	if lk.version == 0 {
		return nil, fmt.Errorf("parsing %s: %w: no __metadata.version", file, errs.ErrDependency)
	}
	if lk.version < 4 {
		return nil, fmt.Errorf("parsing %s: %w: lockfile version %d (Yarn 2) is older than vmbuild reads (4 and later, Yarn 3+): run `yarn install` with a current Yarn and commit yarn.lock", file, errs.ErrDependency, lk.version)
	}
	return lk, nil
}

// manifest is what vmbuild reads from a workspace's package.json.
type manifest struct {
	Name                 string            `json:"name"`
	PackageManager       string            `json:"packageManager"`
	Dependencies         map[string]string `json:"dependencies"`
	DevDependencies      map[string]string `json:"devDependencies"`
	OptionalDependencies map[string]string `json:"optionalDependencies"`
	Workspaces           json.RawMessage   `json:"workspaces"`
}

func readManifest(fsys fs.FS, file string) (*manifest, error) {
	b, err := fs.ReadFile(fsys, file)
	if err != nil {
		return nil, fmt.Errorf("reading workspace manifest: %w", err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parsing %s: %w: %v", file, errs.ErrDependency, err)
	}
	return &m, nil
}

type berryResolver struct {
	lk     *berryLock
	fsys   fs.FS
	opts   npm.Options
	archs  archs
	set    *npm.Set
	ws     map[*berryEntry]*manifest // required workspaces
	wsPath map[*berryEntry]string
}

// ResolveBerry is Resolve for a Yarn Berry lockfile (__metadata.version 4
// or later), scoped as `yarn workspaces focus [--production] WS…` (all
// workspaces when opts.Workspaces is empty):
//
//   - The focused workspaces, and the workspaces they depend on, install
//     their dependencies and optionalDependencies (and devDependencies
//     unless Production), read from each package.json and resolved
//     through the workspace's lockfile entry. Other workspaces install
//     nothing.
//   - Lock entries' dependencies are followed (peer dependencies are not:
//     they resolve to what a parent already has). Yarn's builtin compat
//     patches (optional!builtin<compat/…>) replace the descriptors they
//     patch, as Yarn's plugin-compat does; a patch: entry pins the package
//     it patches (Yarn applies the patch itself).
//   - A package with `conditions` that is reached only through optional
//     dependencies and does not match the target (and .yarnrc.yml's
//     supportedArchitectures) is left out — Yarn's rule. What it depends
//     on stays: Yarn fetches that too.
//   - npm: aliases pin the real package. link: and portal: to a path in
//     the tree need no download; git, github, file, exec, http tarballs and
//     links out of the tree are refused.
//
// Berry's checksum: hashes Yarn's zip cache, not the registry tarball, so
// the sha256 comes from Set.Pin's download; Yarn still checks its own
// checksum at install time. The registry is Options.Registry, else
// .yarnrc.yml's npmRegistryServer, else registry.yarnpkg.com; tarballs are
// REGISTRY/NAME/-/BASENAME-VERSION.tgz unless the resolution carries an
// __archiveUrl.
func resolveBerry(ctx context.Context, fsys fs.FS, lockfile string, raw []byte, opts npm.Options) (*npm.Set, error) {
	log := opts.Log()
	lk, err := parseBerry(lockfile, raw)
	if err != nil {
		return nil, err
	}
	rc, err := readYarnrc(fsys, lk.dir)
	if err != nil {
		return nil, err
	}
	set := &npm.Set{Manager: npm.ManagerYarnBerry, Lockfile: lockfile, LockfileVersion: lk.version, Registry: DefaultRegistry, Scopes: rc.scopes, Credentials: rc.credentials}
	if rc.registry != "" {
		set.Registry = rc.registry
	}
	if opts.Registry != "" {
		if set.Registry, err = npm.NormalizeRegistry(opts.Registry); err != nil {
			return nil, fmt.Errorf("resolving %s: %w: %v", lockfile, errs.ErrDependency, err)
		}
	}
	if len(set.Scopes) == 0 {
		set.Scopes = nil
	}
	target, err := npm.TargetOf(opts.Platform, opts.Libc)
	if err != nil {
		return nil, err
	}
	r := &berryResolver{lk: lk, fsys: fsys, opts: opts, archs: archsFor(target, rc.supported), set: set, ws: map[*berryEntry]*manifest{}, wsPath: map[*berryEntry]string{}}
	roots, err := r.focus()
	if err != nil {
		return nil, err
	}
	required := map[*berryEntry]bool{}
	if err := r.walk(ctx, roots, false, func(e *berryEntry) error { required[e] = true; return nil }); err != nil {
		return nil, err
	}
	var c collector
	if err := r.walk(ctx, roots, true, func(e *berryEntry) error {
		proto, _, _ := strings.Cut(e.ref, ":")
		switch proto {
		case "workspace", "link", "portal":
			return nil
		case "patch":
			under, err := r.patchSource(e)
			if err != nil {
				return err
			}
			return r.pin(&c, under)
		}
		if e.Conditions != "" && !required[e] {
			ok, err := evalConditions(e.Conditions, r.archs)
			if err != nil {
				return fmt.Errorf("resolving %s:%d: %w: package %s: %v", lockfile, e.line, errs.ErrDependency, e.Resolution, err)
			}
			if !ok {
				log.Debug("skipping optional package for another platform", "package", e.Resolution, "conditions", e.Conditions)
				return nil
			}
		}
		return r.pin(&c, e)
	}); err != nil {
		return nil, err
	}
	set.Packages = c.sorted()
	root, err := readManifest(fsys, path.Join(lk.dir, "package.json"))
	if err != nil {
		return nil, err
	}
	if root.PackageManager != "" {
		if set.Tool, err = npm.ParsePackageManager(root.PackageManager, set.Registry); err != nil {
			return nil, fmt.Errorf("reading %s: %w", path.Join(lk.dir, "package.json"), err)
		}
	}
	log.Debug("resolved yarn lockfile", "lockfile", lockfile, "entries", len(lk.entries), "packages", len(set.Packages))
	return set, nil
}

// focus finds the workspaces to install (the focused ones and the
// workspaces they depend on) and returns them.
func (r *berryResolver) focus() ([]*berryEntry, error) {
	lk := r.lk
	var all []*berryEntry
	for _, e := range lk.entries {
		if p, ok := strings.CutPrefix(e.ref, "workspace:"); ok {
			all = append(all, e)
			r.wsPath[e] = path.Clean(p)
		}
	}
	sort.Slice(all, func(i, j int) bool { return r.wsPath[all[i]] < r.wsPath[all[j]] })
	if len(all) == 0 {
		return nil, fmt.Errorf("resolving %s: %w: no workspace entries (NAME@workspace:PATH)", lk.file, errs.ErrDependency)
	}
	var queue []*berryEntry
	if len(r.opts.Workspaces) == 0 {
		queue = append(queue, all...)
	}
	for _, want := range r.opts.Workspaces {
		var found *berryEntry
		for _, e := range all {
			if e.name == want || r.wsPath[e] == path.Clean(want) {
				found = e
			}
		}
		if found == nil {
			var names []string
			for _, e := range all {
				names = append(names, e.name+" ("+r.wsPath[e]+")")
			}
			return nil, fmt.Errorf("resolving %s: %w: no workspace %q (workspaces: %s)", lk.file, errs.ErrDependency, want, strings.Join(names, ", "))
		}
		queue = append(queue, found)
	}
	var roots []*berryEntry
	for len(queue) > 0 {
		e := queue[0]
		queue = queue[1:]
		if _, ok := r.ws[e]; ok {
			continue
		}
		mf := path.Join(lk.dir, r.wsPath[e], "package.json")
		m, err := readManifest(r.fsys, mf)
		if err != nil {
			return nil, err
		}
		r.ws[e] = m
		roots = append(roots, e)
		edges, err := r.edges(e)
		if err != nil {
			return nil, err
		}
		for _, ed := range edges {
			to, err := r.lookup(e, ed.name, ed.rng)
			if err != nil {
				return nil, err
			}
			if strings.HasPrefix(to.ref, "workspace:") {
				queue = append(queue, to)
			}
		}
	}
	return roots, nil
}

type berryEdge struct {
	name, rng string
	optional  bool
}

// edges are the dependencies Yarn installs for e: a required workspace's
// per its package.json (devDependencies unless Production); a package's
// from its lock entry.
func (r *berryResolver) edges(e *berryEntry) ([]berryEdge, error) {
	var out []berryEdge
	m, isWS := r.ws[e]
	if strings.HasPrefix(e.ref, "workspace:") {
		if !isWS {
			return nil, nil // not focused: Yarn clears its dependencies
		}
		names := map[string]bool{}
		for n := range m.Dependencies {
			names[n] = true
		}
		for n := range m.OptionalDependencies {
			names[n] = true
		}
		if !r.opts.Production {
			for n := range m.DevDependencies {
				names[n] = true
			}
		}
		for _, n := range sortedKeys(names) {
			rng, ok := e.Dependencies[n]
			if !ok {
				return nil, fmt.Errorf("resolving %s:%d: %w: workspace %s: %s lists %s, but the lockfile does not: run yarn install and commit %s", r.lk.file, e.line, errs.ErrDependency, e.name, path.Join(r.lk.dir, r.wsPath[e], "package.json"), n, path.Base(r.lk.file))
			}
			_, opt := m.OptionalDependencies[n]
			out = append(out, berryEdge{n, rng, opt || e.DependenciesMeta[n].Optional})
		}
		return out, nil
	}
	for _, n := range sortedKeys(e.Dependencies) {
		out = append(out, berryEdge{n, e.Dependencies[n], e.DependenciesMeta[n].Optional})
	}
	return out, nil
}

// lookup resolves a dependency of from through the lockfile.
func (r *berryResolver) lookup(from *berryEntry, name, rng string) (*berryEntry, error) {
	d := name + "@" + rng
	if p, ok := r.lk.compat[d]; ok {
		d = p
	}
	to, ok := r.lk.byDesc[d]
	if !ok {
		return nil, fmt.Errorf("resolving %s:%d: %w: package %s depends on %s@%s, which the lockfile has no entry for: run yarn install and commit %s (vmbuild does not apply package.json resolutions)", r.lk.file, from.line, errs.ErrDependency, from.Resolution, name, rng, path.Base(r.lk.file))
	}
	return to, nil
}

// walk visits entries breadth-first from the workspaces, following
// non-optional dependencies, and optional ones when withOptional.
func (r *berryResolver) walk(ctx context.Context, roots []*berryEntry, withOptional bool, visit func(*berryEntry) error) error {
	seen := map[*berryEntry]bool{}
	queue := append([]*berryEntry(nil), roots...)
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		e := queue[0]
		queue = queue[1:]
		if seen[e] {
			continue
		}
		seen[e] = true
		if err := r.check(e); err != nil {
			return err
		}
		if err := visit(e); err != nil {
			return err
		}
		edges, err := r.edges(e)
		if err != nil {
			return err
		}
		for _, ed := range edges {
			if ed.optional && !withOptional {
				continue
			}
			to, err := r.lookup(e, ed.name, ed.rng)
			if err != nil {
				return err
			}
			queue = append(queue, to)
		}
	}
	return nil
}

// check refuses the protocols vmbuild cannot pin.
func (r *berryResolver) check(e *berryEntry) error {
	proto, rest, _ := strings.Cut(e.ref, ":")
	where := fmt.Sprintf("resolving %s:%d", r.lk.file, e.line)
	switch proto {
	case "npm", "workspace", "patch":
		return nil
	case "link", "portal":
		p, params, _ := strings.Cut(rest, "::")
		base := "."
		if q, err := url.ParseQuery(params); err == nil && q.Get("locator") != "" {
			if _, ref, ok := splitIdent(q.Get("locator")); ok {
				if wp, ok := strings.CutPrefix(ref, "workspace:"); ok {
					base = wp
				}
			}
		}
		target := path.Join(base, p)
		if path.IsAbs(p) || target == ".." || strings.HasPrefix(target, "../") {
			return fmt.Errorf("%s: %w: package %s links to %s, outside the tree; vmbuild needs registry tarballs or paths in the tree", where, errs.ErrDependency, e.Resolution, p)
		}
		return nil
	}
	return fmt.Errorf("%s: %w: package %s comes from %s (%s: protocol): vmbuild needs registry tarballs (npm:), not git, github, file, exec or URL sources", where, errs.ErrDependency, e.name, deps.RedactURL(e.ref), proto)
}

// patchSource is the lock entry a patch: entry patches.
func (r *berryResolver) patchSource(e *berryEntry) (*berryEntry, error) {
	src, _, _ := strings.Cut(strings.TrimPrefix(e.ref, "patch:"), "#")
	loc, err := url.PathUnescape(src)
	if err == nil {
		if under, ok := r.lk.byRes[loc]; ok {
			if err := r.check(under); err != nil {
				return nil, err
			}
			return under, nil
		}
	}
	return nil, fmt.Errorf("resolving %s:%d: %w: package %s patches %s, which the lockfile has no entry for", r.lk.file, e.line, errs.ErrDependency, e.Resolution, src)
}

// pin adds an npm: entry's tarball.
func (r *berryResolver) pin(c *collector, e *berryEntry) error {
	where := fmt.Sprintf("resolving %s:%d", r.lk.file, e.line)
	ver, params, _ := strings.Cut(strings.TrimPrefix(e.ref, "npm:"), "::")
	if !strings.HasPrefix(e.ref, "npm:") {
		return fmt.Errorf("%s: %w: package %s is not an npm: package", where, errs.ErrDependency, e.Resolution)
	}
	if !npm.ValidName(e.name) || !npm.ValidVersion(ver) {
		return fmt.Errorf("%s: %w: package %s: invalid name or version", where, errs.ErrDependency, e.Resolution)
	}
	reg := r.set.Registry
	if s, ok := r.set.Scopes[npm.Scope(e.name)]; ok && npm.Scope(e.name) != "" {
		reg = s
	}
	u := npm.TarballURL(reg, e.name, ver)
	if params != "" {
		q, err := url.ParseQuery(params)
		if err != nil {
			return fmt.Errorf("%s: %w: package %s: resolution parameters: %v", where, errs.ErrDependency, e.Resolution, err)
		}
		if a := q.Get("__archiveUrl"); a != "" {
			pu, err := url.Parse(a)
			if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
				return fmt.Errorf("%s: %w: package %s: __archiveUrl %s is not an http(s) URL", where, errs.ErrDependency, e.name, deps.RedactURL(a))
			}
			if pu.User != nil {
				return fmt.Errorf("%s: %w: package %s: __archiveUrl %s carries credentials", where, errs.ErrDependency, e.name, deps.RedactURL(a))
			}
			u = a
		}
	}
	return c.add(deps.Package{Name: e.name, Version: ver, URL: u, Path: npm.TarballPath(e.name, ver)}, where)
}

// collector keeps one package per Path.
type collector struct {
	byPath map[string]int
	pkgs   []deps.Package
}

func (c *collector) add(p deps.Package, where string) error {
	if c.byPath == nil {
		c.byPath = map[string]int{}
	}
	if i, ok := c.byPath[p.Path]; ok {
		if q := c.pkgs[i]; q.URL != p.URL || q.Integrity != p.Integrity {
			return fmt.Errorf("%s: %w: package %s is resolved twice, from %s and %s", where, errs.ErrDependency, p.ID(), deps.RedactURL(q.URL), deps.RedactURL(p.URL))
		}
		return nil
	}
	c.byPath[p.Path] = len(c.pkgs)
	c.pkgs = append(c.pkgs, p)
	return nil
}

func (c *collector) sorted() []deps.Package {
	return deps.Sort(append([]deps.Package(nil), c.pkgs...))
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
