package gem

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/errs"
)

// Option configures Resolve.
type Option func(*options)

type options struct {
	gemfile    string
	without    []string
	with       []string
	only       []string
	setGroups  map[string]bool // which of without/with/only the caller set
	platform   *Platform
	ociPlat    *ocispec.Platform
	libc       Libc
	forceRuby  *bool
	rubyVer    string
	mirrors    map[string]string // caller's mirror.* settings
	env        map[string]string
	treeConfig bool
	allowPath  bool
	log        *slog.Logger
}

// WithGemfile names the Gemfile (a path in the tree), as BUNDLE_GEMFILE
// does. Default: "Gemfile" beside the lockfile ("gems.rb" beside
// "gems.locked").
func WithGemfile(name string) Option { return func(o *options) { o.gemfile = name } }

// Without leaves out gems only in these groups (BUNDLE_WITHOUT).
func Without(groups ...string) Option {
	return func(o *options) { o.without = groups; o.setGroups["without"] = true }
}

// With enables optional groups (BUNDLE_WITH).
func With(groups ...string) Option {
	return func(o *options) { o.with = groups; o.setGroups["with"] = true }
}

// Only keeps only gems in these groups (BUNDLE_ONLY).
func Only(groups ...string) Option {
	return func(o *options) { o.only = groups; o.setGroups["only"] = true }
}

// WithPlatform sets the target (an OCI platform and its libc) for which
// platform-specific gems are chosen. Default: linux/amd64 with glibc
// (x86_64-linux).
func WithPlatform(p ocispec.Platform, libc Libc) Option {
	return func(o *options) { o.ociPlat = &p; o.libc = libc }
}

// WithGemPlatform sets the target as a gem platform ("x86_64-linux-musl");
// it overrides WithPlatform.
func WithGemPlatform(p Platform) Option { return func(o *options) { o.platform = &p } }

// WithForceRubyPlatform chooses the "ruby" (compile-from-source) variant
// of every gem (BUNDLE_FORCE_RUBY_PLATFORM).
func WithForceRubyPlatform(force bool) Option { return func(o *options) { o.forceRuby = &force } }

// WithRubyVersion is the target Ruby's version ("3.3.6"), for Gemfile
// platforms such as :ruby_33. Default: the lockfile's RUBY VERSION.
func WithRubyVersion(v string) Option { return func(o *options) { o.rubyVer = v } }

// WithMirror downloads gems locked from remote ("https://rubygems.org/",
// a host, or "all") from mirror instead (Bundler's mirror.<remote>).
func WithMirror(remote, mirror string) Option {
	return func(o *options) { o.mirrors["mirror."+remote] = mirror }
}

// WithEnv passes Bundler's environment settings (BUNDLE_WITHOUT,
// BUNDLE_WITH, BUNDLE_ONLY, BUNDLE_FORCE_RUBY_PLATFORM,
// BUNDLE_MIRROR__…); other variables are ignored. They rank below the
// tree's .bundle/config, as in Bundler, and below options.
func WithEnv(env map[string]string) Option { return func(o *options) { o.env = env } }

// WithTreeConfig sets whether the tree's .bundle/config (beside the
// Gemfile) is read. Default true, as Bundler reads it.
func WithTreeConfig(read bool) Option { return func(o *options) { o.treeConfig = read } }

// WithPathGems allows PATH gems (path: and gemspec) whose directory is
// inside the tree; they are returned in Set.Path. Default: a PATH gem
// the step needs is an error.
func WithPathGems() Option { return func(o *options) { o.allowPath = true } }

// WithLogger sets the logger. Default: discard.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// Set is what a step installs from a Gemfile.lock: the gems of the kept
// groups for the target platform, pinned.
type Set struct {
	Lockfile *Lockfile `json:"-"`
	Gemfile  *Gemfile  `json:"-"`
	// Platform is the target gem platform gems were chosen for ("ruby"
	// with force_ruby_platform).
	Platform Platform `json:"platform"`
	// Groups are the Gemfile groups installed (sorted).
	Groups []string `json:"groups"`
	// Gems are the gems downloaded from a rubygems server, sorted by name.
	Gems []Gem `json:"gems"`
	// Git are gems from GIT sources, sorted by name.
	Git []GitGem `json:"git,omitempty"`
	// Path are gems from PATH sources inside the tree (WithPathGems).
	Path []PathGem `json:"path,omitempty"`
	// Settings are the Bundler settings that applied (without, with,
	// only, force_ruby_platform, mirror.*), with where each came from.
	Settings map[string]Setting `json:"settings,omitempty"`

	graph *graph
}

// Setting is one Bundler setting and its origin ("option", the config
// file's path, "env").
type Setting struct {
	Value  string `json:"value"`
	Origin string `json:"origin"`
}

// Gem is a gem from a rubygems server.
type Gem struct {
	// Package is the pin: Name, Version, Platform ("" for ruby), URL (the
	// mirror's, if one applies), SHA256 (from CHECKSUMS, or filled by
	// Pin), Path ("NAME-VERSION[-PLATFORM].gem", the vendor/cache name),
	// Integrity (the CHECKSUMS sha256 as SRI, "sha256-<base64>", if any).
	deps.Package
	// Remote is the GEM section's remote in the lockfile.
	Remote string `json:"remote"`
	// Checksum is the CHECKSUMS sha256 ("" if the lockfile has none).
	Checksum string `json:"checksum,omitempty"`
	// Deps are the names of its runtime dependencies in this set, sorted.
	Deps []string `json:"deps,omitempty"`
	// Direct reports a gem named by the Gemfile in an installed group.
	Direct bool `json:"direct,omitempty"`
	// Line is the spec's line in the lockfile.
	Line int `json:"line"`
}

// FullName is the gem's RubyGems full name ("nokogiri-1.16.0-x86_64-linux").
func (g Gem) FullName() string { return strings.TrimSuffix(g.Path, ".gem") }

// GitGem is a gem from a GIT source, pinned by commit.
type GitGem struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Remote is the repository URL, Revision the locked commit (full hex).
	Remote   string `json:"remote"`
	Revision string `json:"revision"`
	// Ref, Branch, Tag are what the Gemfile asked for (informational).
	Ref    string `json:"ref,omitempty"`
	Branch string `json:"branch,omitempty"`
	Tag    string `json:"tag,omitempty"`
	// Glob is the gemspec glob, if not Bundler's default.
	Glob       string   `json:"glob,omitempty"`
	Submodules bool     `json:"submodules,omitempty"`
	Deps       []string `json:"deps,omitempty"`
	Direct     bool     `json:"direct,omitempty"`
	Line       int      `json:"line"`
}

// CacheDir is the directory name Bundler uses for this repository in
// vendor/cache and under BUNDLE_PATH/…/bundler/gems:
// "<repository base name>-<first 12 hex of the revision>".
func (g GitGem) CacheDir() string {
	base := regexp.MustCompile(`^(\w+://)?([^/:]+:)?(//\w*/)?(\w*/)*`).ReplaceAllString(g.Remote, "")
	base = strings.TrimSuffix(path.Base(base), ".git")
	return base + "-" + g.Revision[:12]
}

// PathGem is a gem from a PATH source inside the tree.
type PathGem struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Dir is the source directory, relative to the tree's root.
	Dir    string   `json:"dir"`
	Deps   []string `json:"deps,omitempty"`
	Direct bool     `json:"direct,omitempty"`
	Line   int      `json:"line"`
}

// Resolve reads the Gemfile.lock at lockfile in fsys and its Gemfile, and
// returns the gems a step installs: DEPENDENCIES of the kept groups and
// their runtime dependencies, each at the lockfile's version and the
// best platform variant for the target. It does not touch the network:
// gems without a CHECKSUMS entry have an empty SHA256 until Pin.
func Resolve(ctx context.Context, fsys fs.FS, lockfile string, opts ...Option) (*Set, error) {
	o := options{treeConfig: true, mirrors: map[string]string{}, setGroups: map[string]bool{}}
	for _, f := range opts {
		f(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &resolver{o: o, fsys: fsys}
	set, err := r.resolve(ctx, path.Clean(lockfile))
	if err != nil {
		return nil, fmt.Errorf("resolving gems of %s: %w", lockfile, err)
	}
	return set, nil
}

type resolver struct {
	o        options
	fsys     fs.FS
	lf       *Lockfile
	gf       *Gemfile
	target   Platform
	force    bool
	rubyVer  string
	settings map[string]Setting
	byName   map[string][]*Spec
}

func (r *resolver) resolve(ctx context.Context, lockfile string) (*Set, error) {
	data, err := fs.ReadFile(r.fsys, lockfile)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w: %w", lockfile, errs.ErrDependency, err)
	}
	if r.lf, err = ParseLockfile(lockfile, data); err != nil {
		return nil, err
	}
	for _, u := range r.lf.Unknown {
		r.o.log.Warn("skipping unknown Gemfile.lock section", "file", lockfile, "section", u)
	}
	gemfile := r.o.gemfile
	if gemfile == "" {
		dir, base := path.Split(lockfile)
		switch {
		case base == "gems.locked":
			gemfile = dir + "gems.rb"
		case strings.HasSuffix(base, ".lock"):
			gemfile = dir + strings.TrimSuffix(base, ".lock")
		default:
			gemfile = dir + "Gemfile"
		}
	}
	gemfile = path.Clean(gemfile)
	if r.gf, err = LoadGemfile(r.fsys, gemfile); err != nil {
		return nil, err
	}
	if err := r.loadSettings(path.Dir(gemfile)); err != nil {
		return nil, err
	}
	if err := r.chooseTarget(); err != nil {
		return nil, err
	}
	r.byName = map[string][]*Spec{}
	for _, s := range r.lf.Specs {
		r.byName[s.Name] = append(r.byName[s.Name], s)
	}
	decls, err := r.declarations()
	if err != nil {
		return nil, err
	}
	if err := r.match(decls); err != nil {
		return nil, err
	}
	if err := r.checkPlatforms(); err != nil {
		return nil, err
	}
	groups := r.requestedGroups(decls)
	chosen, direct, err := r.closure(decls, groups)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	set, err := r.pin(chosen, direct, path.Dir(gemfile))
	if err != nil {
		return nil, err
	}
	set.Groups = groups
	r.o.log.Debug("resolved gems", "lockfile", lockfile, "platform", r.target.String(), "gems", len(set.Gems), "git", len(set.Git), "path", len(set.Path))
	return set, nil
}

// loadSettings merges options, the tree's .bundle/config and the env.
func (r *resolver) loadSettings(gemfileDir string) error {
	r.settings = map[string]Setting{}
	for k, v := range settingsFromEnv(r.o.env) {
		r.settings[k] = Setting{v, "env"}
	}
	if r.o.treeConfig {
		cfg := path.Join(gemfileDir, ".bundle", "config")
		data, err := fs.ReadFile(r.fsys, cfg)
		switch {
		case err == nil:
			local, err := parseBundleConfig(cfg, data)
			if err != nil {
				return err
			}
			for k, v := range local {
				r.settings[k] = Setting{v, cfg}
			}
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("reading %s: %w: %w", cfg, errs.ErrDependency, err)
		}
	}
	for k, v := range r.o.mirrors {
		r.settings[k] = Setting{v, "option"}
	}
	for k, set := range r.o.setGroups {
		if !set {
			continue
		}
		var v []string
		switch k {
		case "without":
			v = r.o.without
		case "with":
			v = r.o.with
		case "only":
			v = r.o.only
		}
		r.settings[k] = Setting{strings.Join(v, ":"), "option"}
	}
	if r.o.forceRuby != nil {
		r.settings["force_ruby_platform"] = Setting{fmt.Sprint(*r.o.forceRuby), "option"}
	}
	for k, s := range r.settings {
		if !strings.HasPrefix(k, "mirror.") {
			r.o.log.Debug("Bundler setting", "key", k, "value", s.Value, "from", s.Origin)
		}
	}
	return nil
}

func (r *resolver) chooseTarget() error {
	switch {
	case r.o.platform != nil:
		r.target = *r.o.platform
	case r.o.ociPlat != nil:
		p, err := PlatformFor(*r.o.ociPlat, r.o.libc)
		if err != nil {
			return err
		}
		r.target = p
	default:
		r.target = Platform{CPU: "x86_64", OS: "linux"}
	}
	if s, ok := r.settings["force_ruby_platform"]; ok && (s.Value == "true" || s.Value == "1") {
		// Bundler.local_platform is then "ruby", for every gem
		r.force = true
		r.target = Ruby
	}
	r.rubyVer = r.o.rubyVer
	if r.rubyVer == "" && r.lf.RubyVersion != "" {
		// "ruby 3.3.0p0" or "ruby 3.1.0 (jruby 9.3.0.0)"
		f := strings.Fields(r.lf.RubyVersion)
		if len(f) >= 2 && f[0] == "ruby" {
			r.rubyVer, _, _ = strings.Cut(f[1], "p")
		}
	}
	return nil
}

// decl is one way a Gemfile names a gem (a gem line, a gemspec's gem, or
// a gemspec's development dependency).
type decl struct {
	*GemfileDep
	gemspecDev bool
}

// declarations are the Gemfile's gems, with gemspec directives expanded
// from the lockfile's PATH sources.
func (r *resolver) declarations() (map[string][]decl, error) {
	out := map[string][]decl{}
	for _, d := range r.gf.Deps {
		if prev := out[d.Name]; len(prev) > 0 {
			p := prev[0]
			if !p.Req.Equal(d.Req) {
				return nil, inputErr(d.File, d.Line, d.Name, "named twice with different requirements (%s here, %s at %s:%d), which Bundler refuses", d.Req, p.Req, p.File, p.Line)
			}
			if p.Source.String() != d.Source.String() {
				return nil, inputErr(d.File, d.Line, d.Name, "named twice with different sources (%s here, %s at %s:%d), which Bundler refuses", d.Source, p.Source, p.File, p.Line)
			}
		}
		out[d.Name] = append(out[d.Name], decl{GemfileDep: d})
	}
	if len(r.gf.Gemspecs) == 0 {
		return out, nil
	}
	for _, g := range r.gf.Gemspecs {
		found := false
		for _, src := range r.lf.Sources {
			if src.Kind != SourcePath || cleanRel(src.Remote()) != g.Path {
				continue
			}
			for _, s := range src.Specs {
				if g.Name != "" && s.Name != g.Name {
					continue
				}
				found = true
				if _, dup := out[s.Name]; dup {
					continue
				}
				out[s.Name] = append(out[s.Name], decl{GemfileDep: &GemfileDep{
					Name: s.Name, Groups: []string{"default"}, File: r.gf.Path, Line: g.Line,
					Source: &GemfileSource{Kind: SourcePath, URL: g.Path, Line: g.Line},
				}})
			}
		}
		if !found {
			return nil, &MismatchError{Gemfile: r.gf.Path, Lockfile: r.lf.Path, Mismatches: []Mismatch{{
				Gem: "(gemspec at " + g.Path + ")", Kind: "added", GemfileLine: g.Line,
				Detail: "the Gemfile's gemspec has no PATH source " + g.Path + " in the lockfile",
			}}}
		}
	}
	// The gemspec's development dependencies are in DEPENDENCIES but not
	// in the Gemfile, and cannot be read without running the gemspec:
	// DEPENDENCIES the Gemfile does not name are taken as those, in the
	// gemspec's development group.
	dev := r.gf.Gemspecs[0].DevelopmentGroup
	for _, ld := range r.lf.Dependencies {
		if _, ok := out[ld.Name]; ok || ld.Pinned {
			continue
		}
		r.o.log.Debug("taking DEPENDENCIES entry as a gemspec development dependency", "gem", ld.Name, "group", dev)
		out[ld.Name] = []decl{{GemfileDep: &GemfileDep{Name: ld.Name, Req: ld.Req, Groups: []string{dev}, File: r.gf.Path, Line: r.gf.Gemspecs[0].Line}, gemspecDev: true}}
	}
	return out, nil
}

var reRubyPlatform = regexp.MustCompile(`^(?:ruby|mri)(?:_(\d)(\d))?$`)

// relevant is Bundler's should_include? for a CRuby target on Linux: the
// gem has no platforms, or one of ruby, mri, or ruby_XY/mri_XY where X.Y
// is the target Ruby's version. (jruby, truffleruby, rbx, windows, mswin,
// mingw… are other Rubies or OSes.)
func (r *resolver) relevant(d *GemfileDep) (bool, error) {
	if len(d.Platforms) == 0 {
		return true, nil
	}
	for _, p := range d.Platforms {
		m := reRubyPlatform.FindStringSubmatch(p)
		switch {
		case m == nil:
			continue
		case m[1] == "":
			return true, nil
		case r.rubyVer == "":
			return false, inputErr(d.File, d.Line, d.Name, "platform :%s needs the target Ruby version: the lockfile has no RUBY VERSION and none was given", p)
		case strings.HasPrefix(r.rubyVer+".", m[1]+"."+m[2]+"."):
			return true, nil
		}
	}
	return false, nil
}

// match compares the Gemfile with DEPENDENCIES as Bundler's frozen mode
// does, and reports every difference.
func (r *resolver) match(decls map[string][]decl) error {
	var ms []Mismatch
	locked := map[string]LockDep{}
	for _, ld := range r.lf.Dependencies {
		locked[ld.Name] = ld
	}
	names := make([]string, 0, len(decls))
	for n := range decls {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d := decls[n][0]
		ld, ok := locked[n]
		if !ok {
			ms = append(ms, Mismatch{Gem: n, Kind: "added", GemfileLine: d.Line,
				Detail: fmt.Sprintf("the Gemfile has %s (%s), Gemfile.lock's DEPENDENCIES do not", n, d.Req)})
			continue
		}
		if !d.Req.Equal(ld.Req) {
			ms = append(ms, Mismatch{Gem: n, Kind: "changed", GemfileLine: d.Line, LockfileLine: ld.Line,
				Detail: fmt.Sprintf("the Gemfile requires %s, Gemfile.lock's DEPENDENCIES have %s", d.Req, ld.Req)})
			continue
		}
		if !d.gemspecDev && ld.Pinned != (d.Source != nil) {
			what := "without"
			if ld.Pinned {
				what = "with"
			}
			ms = append(ms, Mismatch{Gem: n, Kind: "changed", GemfileLine: d.Line, LockfileLine: ld.Line,
				Detail: fmt.Sprintf("the Gemfile takes it from %s, Gemfile.lock's DEPENDENCIES list it %s a source of its own (\"!\")", d.Source, what)})
			continue
		}
		if n == "bundler" {
			continue // Bundler itself is never a locked spec
		}
		specs := r.byName[n]
		if len(specs) == 0 {
			rel, err := r.relevant(d.GemfileDep)
			if err != nil {
				return err
			}
			if rel {
				ms = append(ms, Mismatch{Gem: n, Kind: "changed", GemfileLine: d.Line, LockfileLine: ld.Line,
					Detail: "in DEPENDENCIES but no spec of it is locked"})
			}
			continue
		}
		if !d.gemspecDev {
			if !r.sourceMatches(d.Source, specs[0].Source) {
				ms = append(ms, Mismatch{Gem: n, Kind: "changed", GemfileLine: d.Line, LockfileLine: specs[0].Line,
					Detail: fmt.Sprintf("the Gemfile takes it from %s, Gemfile.lock from %s", d.Source, describeSource(specs[0].Source))})
				continue
			}
		}
		if !d.Req.Satisfied(specs[0].Version) {
			ms = append(ms, Mismatch{Gem: n, Kind: "unsatisfied", GemfileLine: d.Line, LockfileLine: specs[0].Line,
				Detail: fmt.Sprintf("locked version %s does not satisfy the Gemfile's %s", specs[0].Version, d.Req)})
		}
	}
	for _, ld := range r.lf.Dependencies {
		if _, ok := decls[ld.Name]; !ok && ld.Name != "bundler" {
			ms = append(ms, Mismatch{Gem: ld.Name, Kind: "deleted", LockfileLine: ld.Line,
				Detail: fmt.Sprintf("Gemfile.lock's DEPENDENCIES have %s (%s), the Gemfile does not", ld.Name, ld.Req)})
		}
	}
	if len(ms) > 0 {
		return &MismatchError{Gemfile: r.gf.Path, Lockfile: r.lf.Path, Mismatches: ms}
	}
	return nil
}

func describeSource(s *Source) string {
	switch s.Kind {
	case SourceGem:
		return "rubygems repository " + strings.Join(s.Remotes, ", ")
	case SourceGit:
		return "git " + s.Remote()
	case SourcePath:
		return "path " + s.Remote()
	}
	return string(s.Kind) + " " + s.Remote()
}

func (r *resolver) sourceMatches(g *GemfileSource, s *Source) bool {
	switch {
	case g == nil:
		if s.Kind != SourceGem {
			return false
		}
		if len(r.gf.Sources) == 0 {
			return true
		}
		have := make([]string, len(s.Remotes))
		for i, rm := range s.Remotes {
			have[i] = normalizeRemote(rm)
		}
		want := slices.Clone(r.gf.Sources)
		slices.Sort(have)
		slices.Sort(want)
		return slices.Equal(have, want)
	case g.Kind == SourceGem:
		return s.Kind == SourceGem && len(s.Remotes) == 1 && normalizeRemote(s.Remotes[0]) == g.URL
	case g.Kind == SourcePath:
		return s.Kind == SourcePath && cleanRel(s.Remote()) == g.URL
	case g.Kind == SourceGit:
		return s.Kind == SourceGit && (g.URL == "" || g.URL == s.Remote()) &&
			g.Ref == s.Ref && g.Branch == s.Branch && g.Tag == s.Tag
	}
	return false
}

// checkPlatforms refuses a lockfile none of whose PLATFORMS covers the
// target, as Bundler's frozen mode does.
func (r *resolver) checkPlatforms() error {
	target := r.target
	var names []string
	for _, p := range r.lf.Platforms {
		if p.IsRuby() || p == target || p.Matches(target) {
			return nil
		}
		names = append(names, p.String())
	}
	return inputErr(r.lf.Path, r.lf.PlatformsLine, "", "PLATFORMS (%s) do not include the target platform %s; run `bundle lock --add-platform %s`", strings.Join(names, ", "), target, target)
}

// requestedGroups is Bundler's requested_groups: every group the Gemfile
// names, less without and the optional groups, plus with; intersected
// with only if set.
func (r *resolver) requestedGroups(decls map[string][]decl) []string {
	all := map[string]bool{}
	for _, ds := range decls {
		for _, d := range ds {
			for _, g := range d.Groups {
				all[g] = true
			}
		}
	}
	for _, g := range groupList(r.settings["without"].Value) {
		delete(all, g)
	}
	for _, g := range r.gf.OptionalGroups {
		delete(all, g)
	}
	for _, g := range groupList(r.settings["with"].Value) {
		all[g] = true
	}
	if only := groupList(r.settings["only"].Value); len(only) > 0 {
		for g := range all {
			if !slices.Contains(only, g) {
				delete(all, g)
			}
		}
	}
	out := make([]string, 0, len(all))
	for g := range all {
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}

// choose is Bundler's select_best_platform_match over a gem's locked
// specs: those installable on the target (only "ruby" ones when
// forced), the exact platform if present, else the most specific.
func choose(specs []*Spec, target Platform, forceRuby bool) []*Spec {
	var match []*Spec
	for _, s := range specs {
		if forceRuby && s.Platform.IsRuby() || !forceRuby && s.Platform.Matches(target) {
			match = append(match, s)
		}
	}
	if len(match) <= 1 {
		return match
	}
	if !forceRuby {
		for _, s := range match {
			if s.Platform == target {
				return []*Spec{s}
			}
		}
	}
	t := target
	if forceRuby {
		t = Ruby
	}
	slices.SortStableFunc(match, func(a, b *Spec) int { return a.Platform.specificity(t) - b.Platform.specificity(t) })
	best := match[0].Platform.specificity(t)
	n := 1
	for n < len(match) && match[n].Platform.specificity(t) == best {
		n++
	}
	return match[:n]
}

// closure walks from the Gemfile's gems in the requested groups through
// the specs' dependency lines, choosing one spec per gem name.
func (r *resolver) closure(decls map[string][]decl, groups []string) (map[string]*Spec, map[string]bool, error) {
	type item struct {
		name  string
		force bool
		from  string // requiring gem, "" for the Gemfile
		req   Requirement
		line  int // Gemfile line or lockfile dependency line
	}
	var queue []item
	direct := map[string]bool{}
	// top-level first, in Gemfile order (Bundler's order), then gemspec
	// gems and gemspec development dependencies by name
	var order []string
	seen := map[string]bool{}
	for _, d := range r.gf.Deps {
		if !seen[d.Name] {
			seen[d.Name] = true
			order = append(order, d.Name)
		}
	}
	var rest []string
	for n := range decls {
		if !seen[n] {
			rest = append(rest, n)
		}
	}
	sort.Strings(rest)
	order = append(order, rest...)
	for _, n := range order {
		for _, d := range decls[n] {
			rel, err := r.relevant(d.GemfileDep)
			if err != nil {
				return nil, nil, err
			}
			if !rel || !intersects(d.Groups, groups) {
				continue
			}
			direct[n] = true
			queue = append(queue, item{name: n, force: d.ForceRubyPlatform, req: d.Req, line: d.Line})
			break
		}
	}
	chosen := map[string]*Spec{}
	type edge struct {
		from, to string
		req      Requirement
		line     int
	}
	var edges []edge
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		if it.name == "bundler" {
			continue
		}
		if it.from != "" {
			edges = append(edges, edge{it.from, it.name, it.req, it.line})
		}
		if _, done := chosen[it.name]; done {
			continue
		}
		specs := r.byName[it.name]
		if len(specs) == 0 {
			if it.from == "" {
				return nil, nil, inputErr(r.lf.Path, 0, it.name, "the Gemfile needs it (%s:%d) but no spec of it is locked", r.gf.Path, it.line)
			}
			return nil, nil, inputErr(r.lf.Path, it.line, it.name, "%s depends on it but no spec of it is locked; the lockfile is incomplete", it.from)
		}
		if srcs := sourcesOf(specs); len(srcs) > 1 {
			if ds := decls[it.name]; len(ds) > 0 {
				var keep []*Spec
				for _, s := range specs {
					if r.sourceMatches(ds[0].Source, s.Source) {
						keep = append(keep, s)
					}
				}
				specs = keep
			}
			if len(sourcesOf(specs)) != 1 {
				return nil, nil, inputErr(r.lf.Path, specs[0].Line, it.name, "locked from %d sources; cannot tell which one Bundler would use", len(srcs))
			}
		}
		best := choose(specs, r.target, it.force)
		if len(best) == 0 {
			var have []string
			for _, s := range specs {
				have = append(have, s.Platform.String())
			}
			want := r.target.String()
			if it.force {
				want = "ruby"
			}
			return nil, nil, inputErr(r.lf.Path, specs[0].Line, it.name, "no locked variant for platform %s (locked: %s); run `bundle lock --add-platform %s`", want, strings.Join(have, ", "), want)
		}
		s := best[0]
		for _, o := range best[1:] {
			if o.Version.Compare(s.Version) != 0 {
				return nil, nil, inputErr(r.lf.Path, o.Line, it.name, "locked at two versions (%s, line %d, and %s)", s.Version, s.Line, o.Version)
			}
		}
		chosen[it.name] = s
		for _, d := range s.Deps {
			queue = append(queue, item{name: d.Name, from: it.name, req: d.Req, line: d.Line})
		}
	}
	for _, e := range edges {
		s := chosen[e.to]
		if !e.req.Satisfied(s.Version) {
			return nil, nil, inputErr(r.lf.Path, e.line, e.to, "%s requires %s (%s) but %s is locked", e.from, e.to, e.req, s.Version)
		}
	}
	return chosen, direct, nil
}

func sourcesOf(specs []*Spec) []*Source {
	var out []*Source
	for _, s := range specs {
		if !slices.Contains(out, s.Source) {
			out = append(out, s.Source)
		}
	}
	return out
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

var reCommit = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

// pin turns chosen specs into the Set.
func (r *resolver) pin(chosen map[string]*Spec, direct map[string]bool, gemfileDir string) (*Set, error) {
	mir, err := newMirrors(settingValues(r.settings), func(k string) string { return r.settings[k].Origin })
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errs.ErrDependency, err)
	}
	set := &Set{Lockfile: r.lf, Gemfile: r.gf, Platform: r.target, Settings: r.settings}
	names := make([]string, 0, len(chosen))
	for n := range chosen {
		names = append(names, n)
	}
	sort.Strings(names)
	g := newGraph()
	var problems []error
	for _, n := range names {
		s := chosen[n]
		var depNames []string
		for _, d := range s.Deps {
			if d.Name != "bundler" && !slices.Contains(depNames, d.Name) {
				depNames = append(depNames, d.Name)
			}
		}
		sort.Strings(depNames)
		g.add(n, depNames)
		switch s.Source.Kind {
		case SourceGem:
			gm, err := r.pinGem(s, mir)
			if err != nil {
				problems = append(problems, err)
				continue
			}
			gm.Deps, gm.Direct = depNames, direct[n]
			set.Gems = append(set.Gems, gm)
		case SourceGit:
			src := s.Source
			if !reCommit.MatchString(src.Revision) {
				problems = append(problems, inputErr(r.lf.Path, src.Line, n, "GIT source %s: revision %q is not a full commit hash", deps.RedactURL(src.Remote()), src.Revision))
				continue
			}
			if len(src.Remotes) != 1 {
				problems = append(problems, inputErr(r.lf.Path, src.Line, n, "GIT source has %d remotes, want one", len(src.Remotes)))
				continue
			}
			set.Git = append(set.Git, GitGem{Name: n, Version: s.Version.String(), Remote: src.Remote(), Revision: src.Revision,
				Ref: src.Ref, Branch: src.Branch, Tag: src.Tag, Glob: src.Glob, Submodules: src.Submodules,
				Deps: depNames, Direct: direct[n], Line: s.Line})
		case SourcePath:
			dir := path.Join(gemfileDir, s.Source.Remote())
			if !r.o.allowPath {
				problems = append(problems, inputErr(r.lf.Path, s.Line, n, "a PATH gem (%s) cannot be pinned as a download; vendor it as a gem, or allow path gems inside the tree", s.Source.Remote()))
				continue
			}
			if path.IsAbs(s.Source.Remote()) || !fs.ValidPath(dir) {
				problems = append(problems, inputErr(r.lf.Path, s.Line, n, "PATH gem directory %s is outside the tree", s.Source.Remote()))
				continue
			}
			if st, err := fs.Stat(r.fsys, dir); err != nil || !st.IsDir() {
				problems = append(problems, inputErr(r.lf.Path, s.Line, n, "PATH gem directory %s is not in the tree", dir))
				continue
			}
			set.Path = append(set.Path, PathGem{Name: n, Version: s.Version.String(), Dir: dir, Deps: depNames, Direct: direct[n], Line: s.Line})
		default:
			problems = append(problems, inputErr(r.lf.Path, s.Line, n, "gems from %s sections are not supported", s.Source.Kind))
		}
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	g.finish()
	set.graph = g
	return set, nil
}

func settingValues(m map[string]Setting) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v.Value
	}
	return out
}

func (r *resolver) pinGem(s *Spec, mir *mirrors) (Gem, error) {
	src := s.Source
	switch len(src.Remotes) {
	case 0:
		return Gem{}, inputErr(r.lf.Path, src.Line, s.Name, "its GEM section has no remote")
	case 1:
	default:
		return Gem{}, inputErr(r.lf.Path, src.Line, s.Name, "its GEM section lists %d remotes (%s); Bundler picks one by asking each, which a lock cannot do; give each source its own block (source \"…\" do … end)", len(src.Remotes), strings.Join(src.Remotes, ", "))
	}
	remote := src.Remotes[0]
	base, mirrored := mir.For(remote)
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Gem{}, inputErr(r.lf.Path, src.Line, s.Name, "remote %q is not an http(s) URL", deps.RedactURL(base))
	}
	if u.User != nil {
		r.o.log.Info("dropping credentials from a gem remote; give them to the fetcher", "remote", deps.RedactURL(base))
		u.User = nil
	}
	full := s.FullName()
	plat := ""
	if !s.Platform.IsRuby() {
		plat = s.Platform.String()
	}
	gm := Gem{
		Package: deps.Package{
			Name: s.Name, Version: s.Version.String(), Platform: plat,
			URL:  u.String() + "gems/" + url.PathEscape(full) + ".gem",
			Path: full + ".gem",
		},
		Remote: remote,
		Line:   s.Line,
	}
	if mirrored {
		r.o.log.Debug("using mirror", "gem", full, "remote", remote, "mirror", u.String())
	}
	if c, ok := r.lf.Checksums[full]; ok && c.SHA256 != "" {
		gm.Checksum = c.SHA256
		gm.SHA256 = c.SHA256
		raw, _ := hex.DecodeString(c.SHA256)
		gm.Integrity = "sha256-" + base64.StdEncoding.EncodeToString(raw) // the shared pin's SRI spelling
	}
	return gm, nil
}

// Packages returns the rubygems gems' pins, sorted by Path.
func (s *Set) Packages() []deps.Package {
	out := make([]deps.Package, len(s.Gems))
	for i, g := range s.Gems {
		out[i] = g.Package
	}
	return deps.Sort(out)
}

// Unhashed lists the gems whose SHA256 is not known yet (no CHECKSUMS
// entry and not hashed).
func (s *Set) Unhashed() []string {
	var out []string
	for _, g := range s.Gems {
		if g.SHA256 == "" {
			out = append(out, g.FullName())
		}
	}
	return out
}

// Gem returns the gem named name, if the set has it from a rubygems
// server.
func (s *Set) Gem(name string) (Gem, bool) {
	i, ok := slices.BinarySearchFunc(s.Gems, name, func(g Gem, n string) int { return strings.Compare(g.Name, n) })
	if !ok {
		return Gem{}, false
	}
	return s.Gems[i], true
}

// Has reports whether the set installs a gem of that name (from any
// source).
func (s *Set) Has(name string) bool { return s.graph.has(name) }
