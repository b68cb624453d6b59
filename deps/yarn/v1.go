package yarn

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"regexp"
	"strings"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/deps/npm"
	"github.com/vmbuild/vmbuild/errs"
)

type v1Entry struct {
	patterns             []string
	line                 int
	version              string
	resolved             string
	integrity            string
	dependencies         map[string]string
	optionalDependencies map[string]string
}

type v1Lock struct {
	file      string
	entries   []*v1Entry
	byPattern map[string]*v1Entry
}

// parseV1 parses Yarn v1's own lockfile format: top-level entries keyed
// by comma-separated patterns, two-space-indented "field value" lines and
// four-space-indented dependency maps.
func parseV1(file string, raw []byte) (*v1Lock, error) {
	lk := &v1Lock{file: file, byPattern: map[string]*v1Entry{}}
	var cur *v1Entry
	var nested map[string]string
	for i, line := range strings.Split(string(raw), "\n") {
		ln := i + 1
		line = strings.TrimRight(line, "\r \t")
		trimmed := strings.TrimLeft(line, " ")
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		bad := func(why string, a ...any) error {
			return fmt.Errorf("parsing %s:%d: %w: %s", file, ln, errs.ErrDependency, fmt.Sprintf(why, a...))
		}
		switch indent := len(line) - len(trimmed); indent {
		case 0:
			if !strings.HasSuffix(trimmed, ":") {
				return nil, bad("entry %q does not end with ':'", trimmed)
			}
			toks, err := v1Tokens(strings.TrimSuffix(trimmed, ":"), true)
			if err != nil || len(toks) == 0 {
				return nil, bad("entry %q: %v", trimmed, err)
			}
			cur = &v1Entry{patterns: toks, line: ln}
			nested = nil
			lk.entries = append(lk.entries, cur)
			for _, p := range toks {
				lk.byPattern[p] = cur
			}
		case 2:
			if cur == nil {
				return nil, bad("field outside an entry")
			}
			nested = nil
			if strings.HasSuffix(trimmed, ":") {
				toks, err := v1Tokens(strings.TrimSuffix(trimmed, ":"), false)
				if err != nil || len(toks) != 1 {
					return nil, bad("field %q", trimmed)
				}
				m := map[string]string{}
				switch toks[0] {
				case "dependencies":
					cur.dependencies = m
				case "optionalDependencies":
					cur.optionalDependencies = m
				}
				nested = m
				continue
			}
			toks, err := v1Tokens(trimmed, false)
			if err != nil || len(toks) != 2 {
				return nil, bad("field %q is not KEY VALUE", trimmed)
			}
			switch toks[0] {
			case "version":
				cur.version = toks[1]
			case "resolved":
				cur.resolved = toks[1]
			case "integrity":
				cur.integrity = toks[1]
			}
		case 4:
			if nested == nil {
				if cur == nil {
					return nil, bad("unexpected indentation")
				}
				continue // a nested map vmbuild does not read
			}
			toks, err := v1Tokens(trimmed, false)
			if err != nil || len(toks) != 2 {
				return nil, bad("dependency %q is not NAME RANGE", trimmed)
			}
			nested[toks[0]] = toks[1]
		default:
			if nested == nil && cur != nil {
				continue
			}
			return nil, bad("unexpected indentation %d", indent)
		}
	}
	return lk, nil
}

// v1Tokens splits a line into its tokens: JSON-quoted strings or bare
// words, separated by spaces (or ", " between the patterns of a key).
func v1Tokens(s string, key bool) ([]string, error) {
	var out []string
	for {
		s = strings.TrimLeft(s, " ")
		if key {
			s = strings.TrimLeft(s, ", ")
		}
		if s == "" {
			return out, nil
		}
		if s[0] == '"' {
			end := 1
			for end < len(s) && s[end] != '"' {
				if s[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(s) {
				return nil, fmt.Errorf("unterminated string")
			}
			var v string
			if err := json.Unmarshal([]byte(s[:end+1]), &v); err != nil {
				return nil, err
			}
			out = append(out, v)
			s = s[end+1:]
			continue
		}
		sep := " "
		if key {
			sep = ","
		}
		tok, rest, _ := strings.Cut(s, sep)
		out = append(out, strings.TrimSpace(tok))
		s = rest
	}
}

// v1MirrorRE is Yarn v1's TarballFetcher RE_URL_NAME_MATCH: the scope and
// the tarball's file name in a registry URL.
var v1MirrorRE = regexp.MustCompile(`/(?:(@[^/]+)(?:/|%2f))?[^/]+/(?:-|_attachments)/(?:@[^/]+/)?([^/]+)$`)

// V1MirrorName is the file name Yarn v1 looks for in its offline mirror
// for a resolved URL (TarballFetcher.getTarballMirrorPath): the tarball's
// name, prefixed with "@scope-" for a scoped package
// ("@esbuild-linux-x64-0.25.10.tgz"), or the URL path's base name.
func V1MirrorName(resolved string) (string, error) {
	u, err := url.Parse(resolved)
	if err != nil {
		return "", err
	}
	p := u.EscapedPath()
	if m := v1MirrorRE.FindStringSubmatch(p); m != nil {
		if m[1] != "" {
			return m[1] + "-" + m[2], nil
		}
		return m[2], nil
	}
	b := path.Base(p)
	if b == "/" || b == "." || b == "" {
		return "", fmt.Errorf("URL %s has no file name", deps.RedactURL(resolved))
	}
	return b, nil
}

// resolveV1 is Resolve for a Yarn v1 lockfile, scoped as `yarn install
// --frozen-lockfile [--production]`: the root package.json's
// dependencies, optionalDependencies and devDependencies (with
// Production too: Yarn v1 may fetch them before it decides what to link)
// and those of every workspace its "workspaces" globs name.
//
// Yarn v1 fetches a package before it knows the package's os/cpu (its
// lockfile does not record them) and so fetches optional packages for
// every platform: the set keeps them all, whatever opts.Platform says.
// opts.Workspaces is refused: Yarn v1 has no workspaces focus.
func resolveV1(ctx context.Context, fsys fs.FS, lockfile string, raw []byte, opts npm.Options) (*npm.Set, error) {
	log := opts.Log()
	if len(opts.Workspaces) > 0 {
		return nil, fmt.Errorf("resolving %s: %w: Yarn v1 cannot install some workspaces only (it has no workspaces focus); leave workspaces unset", lockfile, errs.ErrDependency)
	}
	lk, err := parseV1(lockfile, raw)
	if err != nil {
		return nil, err
	}
	set := &npm.Set{Manager: npm.ManagerYarnV1, Lockfile: lockfile, LockfileVersion: 1, Registry: DefaultRegistry}
	if opts.Registry != "" {
		if set.Registry, err = npm.NormalizeRegistry(opts.Registry); err != nil {
			return nil, fmt.Errorf("resolving %s: %w: %v", lockfile, errs.ErrDependency, err)
		}
	}
	dir := path.Dir(lockfile)
	rootFile := path.Join(dir, "package.json")
	root, err := readManifest(fsys, rootFile)
	if err != nil {
		return nil, err
	}
	manifests := map[string]*manifest{rootFile: root}
	wsNames := map[string]bool{}
	globs, err := workspaceGlobs(root.Workspaces)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w: workspaces: %v", rootFile, errs.ErrDependency, err)
	}
	for _, g := range globs {
		matches, err := fs.Glob(fsys, path.Join(dir, g, "package.json"))
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w: workspaces glob %q: %v", rootFile, errs.ErrDependency, g, err)
		}
		for _, mf := range matches {
			if _, ok := manifests[mf]; ok {
				continue
			}
			m, err := readManifest(fsys, mf)
			if err != nil {
				return nil, err
			}
			manifests[mf] = m
			wsNames[m.Name] = true
		}
	}
	// The patterns the manifests ask for.
	type want struct {
		pattern, from string
		optional      bool
	}
	var queue []want
	for _, mf := range sortedKeys(manifests) {
		m := manifests[mf]
		add := func(deps map[string]string, optional bool) {
			for _, n := range sortedKeys(deps) {
				p := n
				if _, ok := lk.byPattern[n]; !ok {
					p = n + "@" + deps[n]
				}
				if _, ok := lk.byPattern[p]; !ok && wsNames[n] {
					continue // a workspace, linked
				}
				queue = append(queue, want{p, mf, optional})
			}
		}
		add(m.Dependencies, false)
		add(m.OptionalDependencies, true)
		// Yarn v1 may fetch devDependencies even with --production (it
		// leaves them out when linking node_modules): with yarn 1.22.22,
		// `install --offline --production` asks for a top-level
		// devDependency's tarball. They are pinned either way.
		add(m.DevDependencies, false)
	}
	var c collector
	seen := map[*v1Entry]bool{}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		w := queue[0]
		queue = queue[1:]
		e, ok := lk.byPattern[w.pattern]
		if !ok {
			if w.optional {
				log.Debug("optional dependency not in the lockfile", "pattern", w.pattern, "from", w.from)
				continue
			}
			return nil, fmt.Errorf("resolving %s: %w: %s needs %s, which the lockfile has no entry for: run yarn install and commit %s", lockfile, errs.ErrDependency, w.from, w.pattern, path.Base(lockfile))
		}
		if seen[e] {
			continue
		}
		seen[e] = true
		p, err := v1Package(lockfile, e, w.pattern, set.Registry, opts.Registry != "")
		if err != nil {
			return nil, err
		}
		if err := c.add(p, fmt.Sprintf("resolving %s:%d", lockfile, e.line)); err != nil {
			return nil, err
		}
		from := fmt.Sprintf("%s:%d (%s)", lockfile, e.line, p.ID())
		for _, n := range sortedKeys(e.dependencies) {
			queue = append(queue, want{n + "@" + e.dependencies[n], from, false})
		}
		for _, n := range sortedKeys(e.optionalDependencies) {
			queue = append(queue, want{n + "@" + e.optionalDependencies[n], from, true})
		}
	}
	set.Packages = c.sorted()
	if root.PackageManager != "" {
		if set.Tool, err = npm.ParsePackageManager(root.PackageManager, set.Registry); err != nil {
			return nil, fmt.Errorf("reading %s: %w", rootFile, err)
		}
	}
	log.Debug("resolved yarn v1 lockfile", "lockfile", lockfile, "entries", len(lk.entries), "packages", len(set.Packages))
	return set, nil
}

func workspaceGlobs(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err == nil {
		return list, nil
	}
	var obj struct {
		Packages []string `json:"packages"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, errors.New("neither a list of globs nor {\"packages\": [...]}")
	}
	return obj.Packages, nil
}

// v1Package makes the pin (without sha256) of a v1 entry reached by
// pattern.
func v1Package(file string, e *v1Entry, pattern, registry string, moveRegistry bool) (deps.Package, error) {
	where := fmt.Sprintf("resolving %s:%d", file, e.line)
	name, rng, _ := splitIdent(pattern)
	if alias, ok := strings.CutPrefix(rng, "npm:"); ok {
		if n, _, ok := splitIdent(alias); ok {
			name = n
		} else {
			name = alias
		}
	}
	id := name + "@" + e.version
	if !npm.ValidName(name) || !npm.ValidVersion(e.version) {
		return deps.Package{}, fmt.Errorf("%s: %w: package %s: invalid name or version", where, errs.ErrDependency, id)
	}
	if e.resolved == "" {
		return deps.Package{}, fmt.Errorf("%s: %w: package %s (%s) has no resolved URL", where, errs.ErrDependency, id, pattern)
	}
	u, err := url.Parse(e.resolved)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return deps.Package{}, fmt.Errorf("%s: %w: package %s comes from %s: vmbuild needs registry tarballs (an http(s) resolved URL), not git, file or other sources", where, errs.ErrDependency, id, deps.RedactURL(e.resolved))
	}
	if u.User != nil {
		return deps.Package{}, fmt.Errorf("%s: %w: package %s: resolved URL %s carries credentials", where, errs.ErrDependency, id, deps.RedactURL(e.resolved))
	}
	integrity := e.integrity
	if integrity == "" && u.Fragment != "" {
		if b, err := hex.DecodeString(u.Fragment); err == nil && len(b) == 20 {
			integrity, _ = npm.SHA1Integrity(u.Fragment)
		}
	}
	u.Fragment, u.RawFragment = "", ""
	mirror, err := V1MirrorName(u.String())
	if err != nil {
		return deps.Package{}, fmt.Errorf("%s: %w: package %s: %v", where, errs.ErrDependency, id, err)
	}
	s := u.String()
	if moveRegistry && (u.Host == "registry.yarnpkg.com" || u.Host == "registry.npmjs.org") {
		s = registry + u.EscapedPath()
	}
	return deps.Package{Name: name, Version: e.version, URL: s, Integrity: integrity, Path: mirror}, nil
}
