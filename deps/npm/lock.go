package npm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"strings"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/errs"
)

// stringList is a package.json os/cpu/libc field: a string or a list.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*l = []string{s}
		return nil
	}
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return err
	}
	*l = ss
	return nil
}

type lockEntry struct {
	Name                 string                             `json:"name"`
	Version              string                             `json:"version"`
	Resolved             string                             `json:"resolved"`
	Integrity            string                             `json:"integrity"`
	Link                 bool                               `json:"link"`
	Dev                  bool                               `json:"dev"`
	Optional             bool                               `json:"optional"`
	DevOptional          bool                               `json:"devOptional"`
	InBundle             bool                               `json:"inBundle"`
	OS                   stringList                         `json:"os"`
	CPU                  stringList                         `json:"cpu"`
	Libc                 stringList                         `json:"libc"`
	Dependencies         map[string]string                  `json:"dependencies"`
	OptionalDependencies map[string]string                  `json:"optionalDependencies"`
	PeerDependencies     map[string]string                  `json:"peerDependencies"`
	PeerDependenciesMeta map[string]struct{ Optional bool } `json:"peerDependenciesMeta"`
	DevDependencies      map[string]string                  `json:"devDependencies"`
}

type packageLock struct {
	Name            string                `json:"name"`
	LockfileVersion int                   `json:"lockfileVersion"`
	Packages        map[string]*lockEntry `json:"packages"`
}

// Resolve reads the package-lock.json (or npm-shrinkwrap.json) at lockfile
// in fsys and returns the registry tarballs `npm ci` installs, scoped by
// opts the way npm scopes them:
//
//   - Production: npm ci --omit=dev. Packages reachable only through
//     devDependencies are left out; devOptional packages stay (npm omits
//     them only when both dev and optional are omitted).
//   - Workspaces: npm ci --workspace X (by name or path): the closure of
//     those workspaces' dependencies; the root's own are left out.
//   - Platform/Libc: optional packages whose os/cpu/libc do not match are
//     left out with what only they need; a required one is an error
//     (npm's EBADPLATFORM).
//
// Workspace links (link: true) and bundled packages (inBundle) need no
// download. An entry without "resolved" (npm's
// omit-lockfile-registry-resolved) is fetched from the registry by name
// and version, as npm does. git, file and other non-registry sources are
// refused. The registry is Options.Registry, else .npmrc's (next to the
// lockfile), else registry.npmjs.org; resolved URLs on registry.npmjs.org
// move to it (replace-registry-host=npmjs). package.json's packageManager,
// if any, becomes Set.Tool.
func Resolve(ctx context.Context, fsys fs.FS, lockfile string, opts Options) (*Set, error) {
	log := opts.Log()
	raw, err := fs.ReadFile(fsys, lockfile)
	if err != nil {
		return nil, fmt.Errorf("reading npm lockfile: %w", err)
	}
	var lk packageLock
	if err := json.Unmarshal(raw, &lk); err != nil {
		return nil, fmt.Errorf("parsing %s: %w: %v", lockfile, errs.ErrDependency, jsonErr(raw, err))
	}
	switch {
	case lk.LockfileVersion == 1:
		return nil, fmt.Errorf("parsing %s: %w: lockfileVersion 1 (npm 5 and 6) lists no per-package paths vmbuild can resolve; upgrade it with npm 7 or later: `npm install --package-lock-only --lockfile-version 3`, and commit the result", lockfile, errs.ErrDependency)
	case lk.LockfileVersion < 1 || lk.LockfileVersion > 3:
		return nil, fmt.Errorf("parsing %s: %w: unknown lockfileVersion %d (vmbuild reads 2 and 3)", lockfile, errs.ErrDependency, lk.LockfileVersion)
	case lk.Packages == nil || lk.Packages[""] == nil:
		return nil, fmt.Errorf("parsing %s: %w: no \"packages\" section with a root (\"\") entry", lockfile, errs.ErrDependency)
	}
	dir := path.Dir(lockfile)
	rc, err := ReadNpmrc(fsys, dir)
	if err != nil {
		return nil, err
	}
	set := &Set{Manager: ManagerNPM, Lockfile: lockfile, LockfileVersion: lk.LockfileVersion, Registry: DefaultRegistry, Scopes: rc.Scopes, Credentials: rc.Credentials}
	if rc.Registry != "" {
		set.Registry = rc.Registry
	}
	if opts.Registry != "" {
		if set.Registry, err = NormalizeRegistry(opts.Registry); err != nil {
			return nil, fmt.Errorf("resolving %s: %w: %v", lockfile, errs.ErrDependency, err)
		}
	}
	if len(set.Scopes) == 0 {
		set.Scopes = nil
	}
	target, err := TargetOf(opts.Platform, opts.Libc)
	if err != nil {
		return nil, err
	}
	r := &npmResolver{lk: &lk, raw: raw, file: lockfile, opts: opts, target: target, set: set}
	starts, err := r.starts()
	if err != nil {
		return nil, err
	}
	// Pass 1: what is required (reached through non-optional edges). A
	// required package that cannot run on the target is an error.
	required := map[string]bool{}
	if err := r.walk(ctx, starts, false, func(loc string, e *lockEntry) (bool, error) {
		required[loc] = true
		if !r.platformOK(e) && !e.InBundle {
			return false, fmt.Errorf("resolving %s:%d: %w: package %s (%s) is required but does not run on %s (its os %v, cpu %v, libc %v)", lockfile, r.line(loc), errs.ErrDependency, r.id(loc, e), loc, target, []string(e.OS), []string(e.CPU), []string(e.Libc))
		}
		return true, nil
	}); err != nil {
		return nil, err
	}
	// Pass 2: everything, leaving out optional packages that do not match
	// the platform, and what only they need.
	var c collector
	if err := r.walk(ctx, starts, true, func(loc string, e *lockEntry) (bool, error) {
		if !required[loc] && !r.platformOK(e) {
			log.Debug("skipping optional package for another platform", "package", r.id(loc, e), "path", loc, "target", target.String())
			return false, nil
		}
		if e.InBundle || e.Link || !strings.Contains(loc, "node_modules/") {
			return true, nil
		}
		p, err := r.pkg(loc, e)
		if err != nil {
			return false, err
		}
		return true, c.add(p, fmt.Sprintf("resolving %s:%d", lockfile, r.line(loc)))
	}); err != nil {
		return nil, err
	}
	set.Packages = c.sorted()
	if set.Tool, err = ToolFromManifest(fsys, path.Join(dir, "package.json"), set.Registry); err != nil {
		return nil, err
	}
	log.Debug("resolved npm lockfile", "lockfile", lockfile, "entries", len(lk.Packages), "packages", len(set.Packages))
	return set, nil
}

type npmResolver struct {
	lk     *packageLock
	raw    []byte
	file   string
	opts   Options
	target Target
	set    *Set
}

// starts are the locations an install begins from: the root and every
// workspace, or the selected workspaces.
func (r *npmResolver) starts() ([]string, error) {
	// Workspaces are the targets of link entries that live in the tree.
	type ws struct{ name, path string }
	var all []ws
	for _, loc := range sortedKeys(r.lk.Packages) {
		e := r.lk.Packages[loc]
		if !e.Link || !strings.Contains(loc, "node_modules/") {
			continue
		}
		t := path.Clean(e.Resolved)
		if _, ok := r.lk.Packages[t]; !ok || strings.HasPrefix(t, "../") || t == ".." || strings.Contains(t, "node_modules/") {
			continue
		}
		all = append(all, ws{name: nameAt(loc, e), path: t})
	}
	if len(r.opts.Workspaces) == 0 {
		starts := []string{""}
		for _, w := range all {
			starts = append(starts, w.path)
		}
		return starts, nil
	}
	var starts []string
	for _, want := range r.opts.Workspaces {
		found := ""
		for _, w := range all {
			if w.name == want || w.path == path.Clean(want) {
				found = w.path
			}
		}
		if found == "" {
			names := []string{}
			for _, w := range all {
				names = append(names, w.name+" ("+w.path+")")
			}
			return nil, fmt.Errorf("resolving %s: %w: no workspace %q (workspaces: %s)", r.file, errs.ErrDependency, want, strings.Join(names, ", "))
		}
		starts = append(starts, found)
	}
	return starts, nil
}

type edge struct {
	name     string
	optional bool
}

func (r *npmResolver) edges(loc string, e *lockEntry) []edge {
	var out []edge
	for _, n := range sortedKeys(e.Dependencies) {
		out = append(out, edge{n, false})
	}
	for _, n := range sortedKeys(e.OptionalDependencies) {
		out = append(out, edge{n, true})
	}
	for _, n := range sortedKeys(e.PeerDependencies) {
		out = append(out, edge{n, e.PeerDependenciesMeta[n].Optional})
	}
	top := !strings.Contains(loc, "node_modules/")
	if top && !r.opts.Production {
		for _, n := range sortedKeys(e.DevDependencies) {
			out = append(out, edge{n, false})
		}
	}
	return out
}

// lookup finds the location node's resolution gives name from loc.
func (r *npmResolver) lookup(loc, name string) (string, bool) {
	d := loc
	for {
		if path.Base(d) != "node_modules" {
			cand := "node_modules/" + name
			if d != "" && d != "." {
				cand = d + "/" + cand
			}
			if _, ok := r.lk.Packages[cand]; ok {
				return cand, true
			}
		}
		if d == "" || d == "." {
			return "", false
		}
		d = path.Dir(d)
		if d == "." {
			d = ""
		}
	}
}

// walk visits locations breadth-first from starts, following
// non-optional edges, and optional ones too when withOptional. visit says
// whether to go on through a location.
func (r *npmResolver) walk(ctx context.Context, starts []string, withOptional bool, visit func(string, *lockEntry) (bool, error)) error {
	seen := map[string]bool{}
	queue := append([]string(nil), starts...)
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		loc := queue[0]
		queue = queue[1:]
		if seen[loc] {
			continue
		}
		seen[loc] = true
		e := r.lk.Packages[loc]
		if e == nil {
			return fmt.Errorf("resolving %s: %w: no entry %q", r.file, errs.ErrDependency, loc)
		}
		goOn, err := visit(loc, e)
		if err != nil {
			return err
		}
		if !goOn {
			continue
		}
		if e.Link {
			t := path.Clean(e.Resolved)
			if _, ok := r.lk.Packages[t]; !ok || t == ".." || strings.HasPrefix(t, "../") || strings.HasPrefix(t, "/") {
				return fmt.Errorf("resolving %s:%d: %w: package %s (%s) links to %q, which is not a package in this tree; vmbuild needs registry tarballs", r.file, r.line(loc), errs.ErrDependency, nameAt(loc, e), loc, e.Resolved)
			}
			queue = append(queue, t)
			continue
		}
		for _, ed := range r.edges(loc, e) {
			if ed.optional && !withOptional {
				continue
			}
			to, ok := r.lookup(loc, ed.name)
			if !ok {
				if ed.optional {
					continue
				}
				if _, isPeer := e.PeerDependencies[ed.name]; isPeer {
					r.opts.Log().Debug("peer dependency not in the lockfile", "package", r.id(loc, e), "peer", ed.name)
					continue
				}
				return fmt.Errorf("resolving %s:%d: %w: package %s (%s) depends on %s, which the lockfile does not have; run npm install and commit %s", r.file, r.line(loc), errs.ErrDependency, r.id(loc, e), locOrRoot(loc), ed.name, path.Base(r.file))
			}
			queue = append(queue, to)
		}
	}
	return nil
}

func (r *npmResolver) platformOK(e *lockEntry) bool {
	return r.target.Matches(e.OS, e.CPU, e.Libc)
}

func (r *npmResolver) registryFor(name string) string {
	if reg, ok := r.set.Scopes[Scope(name)]; ok && Scope(name) != "" {
		return reg
	}
	return r.set.Registry
}

// pkg makes the pin (without sha256) of the package at loc.
func (r *npmResolver) pkg(loc string, e *lockEntry) (deps.Package, error) {
	name := nameAt(loc, e)
	where := fmt.Sprintf("resolving %s:%d", r.file, r.line(loc))
	if !ValidName(name) {
		return deps.Package{}, fmt.Errorf("%s: %w: %s has an invalid package name %q", where, errs.ErrDependency, loc, name)
	}
	res := e.Resolved
	if res == "" {
		if e.Version == "" || strings.Contains(e.Version, ":") || !ValidVersion(e.Version) {
			return deps.Package{}, fmt.Errorf("%s: %w: package %s (%s) has no resolved URL and no registry version to find it by", where, errs.ErrDependency, name, loc)
		}
		u := TarballURL(r.registryFor(name), name, e.Version)
		r.opts.Log().Debug("no resolved URL; using the registry", "package", name+"@"+e.Version, "url", u)
		return deps.Package{Name: name, Version: e.Version, URL: u, Integrity: e.Integrity, Path: TarballPath(name, e.Version)}, nil
	}
	if !ValidVersion(e.Version) {
		return deps.Package{}, fmt.Errorf("%s: %w: package %s (%s) has version %q, not a registry version", where, errs.ErrDependency, name, loc, e.Version)
	}
	u, err := url.Parse(res)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return deps.Package{}, fmt.Errorf("%s: %w: package %s@%s (%s) comes from %s: vmbuild needs registry tarballs (an http(s) resolved URL), not git, file or other sources", where, errs.ErrDependency, name, e.Version, loc, deps.RedactURL(res))
	}
	if u.User != nil {
		return deps.Package{}, fmt.Errorf("%s: %w: package %s@%s (%s): resolved URL %s carries credentials; remove them from the lockfile", where, errs.ErrDependency, name, e.Version, loc, deps.RedactURL(res))
	}
	u.Fragment, u.RawFragment = "", ""
	s := u.String()
	if u.Host == "registry.npmjs.org" {
		if reg := r.registryFor(name); reg != DefaultRegistry {
			s = reg + u.EscapedPath()
		}
	}
	return deps.Package{Name: name, Version: e.Version, URL: s, Integrity: e.Integrity, Path: TarballPath(name, e.Version)}, nil
}

func (r *npmResolver) id(loc string, e *lockEntry) string {
	if e.Version != "" {
		return nameAt(loc, e) + "@" + e.Version
	}
	return nameAt(loc, e)
}

// line is the line of loc's key in the lockfile (0 if not found).
func (r *npmResolver) line(loc string) int {
	key, _ := json.Marshal(loc)
	i := bytes.Index(r.raw, append(key, ':'))
	if i < 0 {
		i = bytes.Index(r.raw, append(key, ' ', ':'))
	}
	if i < 0 {
		return 0
	}
	return bytes.Count(r.raw[:i], []byte("\n")) + 1
}

// nameAt is a lock entry's package name: "name" (aliases and workspaces)
// or the path after the last node_modules/.
func nameAt(loc string, e *lockEntry) string {
	if e != nil && e.Name != "" && strings.Contains(loc, "node_modules/") {
		return e.Name
	}
	if i := strings.LastIndex(loc, "node_modules/"); i >= 0 {
		return loc[i+len("node_modules/"):]
	}
	if e != nil && e.Name != "" {
		return e.Name
	}
	return loc
}

func locOrRoot(loc string) string {
	if loc == "" {
		return "the root package"
	}
	return loc
}

// jsonErr adds a line number to a JSON syntax error.
func jsonErr(raw []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) && se.Offset <= int64(len(raw)) {
		return fmt.Errorf("line %d: %v", bytes.Count(raw[:se.Offset], []byte("\n"))+1, err)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Offset <= int64(len(raw)) {
		return fmt.Errorf("line %d: %v", bytes.Count(raw[:te.Offset], []byte("\n"))+1, err)
	}
	return err
}
