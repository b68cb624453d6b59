package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/vmbuild/vmbuild/bench/internal/harness"
)

// Scenario 2 (issue #12): Bundler, with gems built here (rubygems.org is
// not reachable from the machines this runs on): a graph of 36 small gems
// a few levels deep, four with C extensions whose extconf.rb requires a
// gem (so they compile against its install), served by a loopback gem
// source made with `gem generate_index`.

// gemSpec is one generated gem: its dependencies, and whether it has a C
// extension (whose build requires its first dependency).
type gemSpec struct {
	name string
	deps []string
	cext bool
	dev  bool
}

// gemGraph is the generated graph: leaves, C extensions, middles, tops
// (what the Gemfile names), and a development group the lock leaves out.
var gemGraph = func() []gemSpec {
	var g []gemSpec
	for i := 1; i <= 14; i++ {
		g = append(g, gemSpec{name: fmt.Sprintf("leaf%02d", i)})
	}
	g = append(g,
		gemSpec{name: "cext1", deps: []string{"leaf01", "leaf02"}, cext: true},
		gemSpec{name: "cext2", deps: []string{"leaf03"}, cext: true},
		gemSpec{name: "cext3", deps: []string{"leaf01", "leaf04"}, cext: true},
		gemSpec{name: "cext4", deps: []string{"leaf05"}, cext: true},
		gemSpec{name: "mid01", deps: []string{"leaf06", "cext1"}},
		gemSpec{name: "mid02", deps: []string{"leaf07", "leaf08"}},
		gemSpec{name: "mid03", deps: []string{"cext2", "leaf09"}},
		gemSpec{name: "mid04", deps: []string{"mid02", "leaf10"}},
		gemSpec{name: "mid05", deps: []string{"cext3", "leaf11"}},
		gemSpec{name: "mid06", deps: []string{"leaf12"}},
		gemSpec{name: "mid07", deps: []string{"mid06", "leaf13"}},
		gemSpec{name: "mid08", deps: []string{"cext4", "leaf14"}},
		gemSpec{name: "mid09", deps: []string{"mid04", "mid07"}},
		gemSpec{name: "mid10", deps: []string{"leaf13", "leaf14"}},
		gemSpec{name: "top01", deps: []string{"mid01", "mid03"}},
		gemSpec{name: "top02", deps: []string{"mid09", "mid05"}},
		gemSpec{name: "top03", deps: []string{"mid08", "mid10"}},
		gemSpec{name: "top04", deps: []string{"mid02", "leaf12"}},
		gemSpec{name: "top05", deps: []string{"top01", "mid06"}},
		gemSpec{name: "top06", deps: []string{"top04", "leaf07"}},
		gemSpec{name: "dev01", dev: true},
		gemSpec{name: "dev02", deps: []string{"dev01"}, dev: true},
	)
	return g
}()

// The Gemfile's gems.
var gemfileGems = []string{"mid10", "top02", "top03", "top05", "top06"}

// The two bumps: a gem no C extension depends on, then one that two C
// extensions compile against.
const (
	bumpPlain = "leaf08"
	bumpCExt  = "leaf01"
)

func capitalize(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

// gemFiles is a gem's source tree at version v; depVersions are the
// versions its C extension bakes in (the first dependency's VERSION).
func gemFiles(g gemSpec, v string) map[string]string {
	mod := capitalize(g.name)
	var req strings.Builder
	for _, d := range g.deps {
		fmt.Fprintf(&req, "require %q\n", d)
	}
	var parts []string
	for _, d := range g.deps {
		parts = append(parts, capitalize(d)+".run")
	}
	files := map[string]string{}
	if g.cext {
		dep := g.deps[0]
		files["ext/"+g.name+"/extconf.rb"] = fmt.Sprintf(`require "mkmf"
# The extension compiles against its dependency's install: the mark it
# bakes in is that gem's version.
require %q
$defs << %%(-D%s_MARK=\\"%s-#{%s::VERSION}\\")
create_makefile(%q)
`, dep, strings.ToUpper(g.name), dep, capitalize(dep), g.name+"/"+g.name)
		files["ext/"+g.name+"/"+g.name+".c"] = fmt.Sprintf(`#include <ruby.h>
#include <stdint.h>

%s
static VALUE hello(VALUE self) { return rb_str_new_cstr(%s_MARK); }
static VALUE checksum(VALUE self, VALUE n) { return ULONG2NUM((unsigned long)mix_all(NUM2ULONG(n))); }

void Init_%s(void) {
  VALUE m = rb_define_module(%q);
  rb_define_singleton_method(m, "hello", hello, 0);
  rb_define_singleton_method(m, "checksum", checksum, 1);
}
`, cextBody(g.name), strings.ToUpper(g.name), g.name, mod+"Ext")
		req.WriteString(fmt.Sprintf("require %q\n", g.name+"/"+g.name))
		parts = append(parts, mod+"Ext.hello")
	}
	body := fmt.Sprintf("%smodule %s\n  VERSION = %q\n  def self.run = [%q, %s].join(\" \")\nend\n", req.String(), mod, v, g.name+"-"+v, strings.Join(parts, ", "))
	if len(parts) == 0 {
		body = fmt.Sprintf("%smodule %s\n  VERSION = %q\n  def self.run = %q\nend\n", req.String(), mod, v, g.name+"-"+v)
	}
	files["lib/"+g.name+".rb"] = body
	return files
}

// cextFunctions is how many generated functions each C extension has:
// gcc -O2 compiles them in about 1.5 s on the reference machine, a small
// real extension's cost (bcrypt's, nio4r's), so that whether an extension
// compiles again shows in the times.
const cextFunctions = 300

// cextBody is the generated C code of a C extension: cextFunctions
// functions of integer mixing, and mix_all calling each.
func cextBody(name string) string {
	var b strings.Builder
	seed := 0
	for _, c := range name {
		seed = seed*31 + int(c)
	}
	for i := 0; i < cextFunctions; i++ {
		fmt.Fprintf(&b, `static uint64_t f%d(uint64_t x) {
  for (int i = 0; i < %d; i++) { x ^= x << %d; x ^= x >> 7; x ^= x << 17; x += %du; }
  switch (x %% 8) { case 0: x *= 3; break; case 1: x += 11; break; case 2: x ^= 0x5bd1e995; break; case 3: x -= 7; break; default: x = ~x; }
  return x;
}
`, i, 64+i%7, 13+i%5, (i*2654435761+seed)%1000003)
	}
	b.WriteString("static uint64_t mix_all(uint64_t x) {\n")
	for i := 0; i < cextFunctions; i++ {
		fmt.Fprintf(&b, "  x = f%d(x);\n", i)
	}
	b.WriteString("  return x;\n}\n")
	return b.String()
}

// buildGem writes g's source at version v and runs `gem build` into
// src/gems.
func buildGem(ctx context.Context, dir string, g gemSpec, v string) error {
	out := filepath.Join(dir, "source", "gems")
	file := g.name + "-" + v + ".gem"
	if fileExists(filepath.Join(out, file)) {
		return nil
	}
	src := filepath.Join(dir, "src", g.name+"-"+v)
	files := gemFiles(g, v)
	var names []string
	for n := range files {
		names = append(names, fmt.Sprintf("%q", n))
	}
	sort.Strings(names)
	var spec strings.Builder
	fmt.Fprintf(&spec, "Gem::Specification.new do |s|\n  s.name = %q\n  s.version = %q\n  s.summary = \"vmbuild benchmark gem\"\n  s.authors = [\"vmbuild\"]\n  s.license = \"MIT\"\n  s.files = [%s]\n", g.name, v, strings.Join(names, ", "))
	for _, d := range g.deps {
		fmt.Fprintf(&spec, "  s.add_dependency %q, \">= 1.0\"\n", d)
	}
	if g.cext {
		fmt.Fprintf(&spec, "  s.extensions = [%q]\n", "ext/"+g.name+"/extconf.rb")
	}
	spec.WriteString("end\n")
	files[g.name+".gemspec"] = spec.String()
	if err := writeFiles(src, files); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "gem", "build", "--silent", g.name+".gemspec")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "HOME="+dir, "SOURCE_DATE_EPOCH=1700000000")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building gem %s: %w\n%s", g.name, err, b)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	return os.Rename(filepath.Join(src, file), filepath.Join(out, file))
}

// generateIndex makes the gem source's index (specs.4.8.gz, quick/…), as
// a static gem server has it.
func generateIndex(ctx context.Context, dir string) error {
	cmd := exec.CommandContext(ctx, "gem", "generate_index", "--silent", "--directory", filepath.Join(dir, "source"))
	cmd.Env = append(os.Environ(), "HOME="+dir, "SOURCE_DATE_EPOCH=1700000000")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("generating the gem index: %w\n%s", err, b)
	}
	return nil
}

// gemfileLock writes the Gemfile.lock of the graph with the given
// versions (default 1.0.0), in Bundler's format.
func gemfileLock(source, bundled string, versions map[string]string) string {
	ver := func(n string) string {
		if v := versions[n]; v != "" {
			return v
		}
		return "1.0.0"
	}
	specs := append([]gemSpec(nil), gemGraph...)
	sort.Slice(specs, func(i, j int) bool { return specs[i].name < specs[j].name })
	var b strings.Builder
	fmt.Fprintf(&b, "GEM\n  remote: %s/\n  specs:\n", source)
	for _, g := range specs {
		fmt.Fprintf(&b, "    %s (%s)\n", g.name, ver(g.name))
		deps := append([]string(nil), g.deps...)
		sort.Strings(deps)
		for _, d := range deps {
			fmt.Fprintf(&b, "      %s (>= 1.0)\n", d)
		}
	}
	b.WriteString("\nPLATFORMS\n  ruby\n\nDEPENDENCIES\n")
	deps := append([]string{"dev01", "dev02"}, gemfileGems...)
	sort.Strings(deps)
	for _, d := range deps {
		fmt.Fprintf(&b, "  %s\n", d)
	}
	fmt.Fprintf(&b, "\nBUNDLED WITH\n   %s\n", bundled)
	return b.String()
}

func gemfile(source string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "source %q\n\n", source+"/")
	for _, g := range gemfileGems {
		fmt.Fprintf(&b, "gem %q\n", g)
	}
	b.WriteString("\ngroup :development do\n  gem \"dev01\"\n  gem \"dev02\"\nend\n")
	return b.String()
}

// dependents is name and every gem that requires it, transitively (the
// per-gem steps a bump of name re-runs, by vmbuild's design: each gem
// installs on its dependencies' installs).
func dependents(name string) []string {
	set := map[string]bool{name: true}
	for changed := true; changed; {
		changed = false
		for _, g := range gemGraph {
			if set[g.name] || g.dev {
				continue
			}
			for _, d := range g.deps {
				if set[d] {
					set[g.name] = true
					changed = true
					break
				}
			}
		}
	}
	var out []string
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// cextsOver are the C-extension gems among names.
func cextsOver(names []string) []string {
	var out []string
	for _, n := range names {
		for _, g := range gemGraph {
			if g.name == n && g.cext {
				out = append(out, n)
			}
		}
	}
	return out
}

type gemScenario struct {
	dir     string
	source  *harness.Counter
	commits []string          // import, bump plain, bump cext
	recipes map[string]string // contender → recipe path
}

var gemContenders = []string{"hermetic-pergem", "hermetic-all", "baseline"}

func (b *bench) bundler(ctx context.Context) *Scenario {
	s := &Scenario{ID: "bundler", Title: "Bundler: 36 gems built here, four with C extensions (issue #12)", Facts: map[string]any{}}
	b.res.Scenarios = append(b.res.Scenarios, s)
	g, err := b.gemSetup(ctx, s)
	if err != nil {
		b.errorf("bundler: setup: %v", err)
		return s
	}
	defer g.source.Close()
	b.pkgs, b.isPkg = g.source, func(p string) bool { return strings.HasSuffix(p, ".gem") }
	defer func() { b.pkgs = nil }()
	for rep := 1; rep <= b.repsOf(s); rep++ {
		order := append([]string(nil), gemContenders...)
		for i := 0; i < (rep-1)%len(order); i++ {
			order = append(order[1:], order[0])
		}
		for _, c := range order {
			if ctx.Err() != nil {
				return s
			}
			if err := b.gemSequence(ctx, s, g, c, rep); err != nil && !s.recorded(err) {
				b.errorf("bundler: %s, rep %d: %v", c, rep, err)
			}
		}
	}
	return s
}

func (b *bench) gemSetup(ctx context.Context, s *Scenario) (*gemScenario, error) {
	g := &gemScenario{dir: filepath.Join(b.work, "gems"), recipes: map[string]string{}}
	start := time.Now()
	for _, spec := range gemGraph {
		if err := buildGem(ctx, g.dir, spec, "1.0.0"); err != nil {
			return nil, err
		}
	}
	for _, n := range []string{bumpPlain, bumpCExt} {
		for _, spec := range gemGraph {
			if spec.name == n {
				if err := buildGem(ctx, g.dir, spec, "1.0.1"); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := generateIndex(ctx, g.dir); err != nil {
		return nil, err
	}
	s.Facts["gemBuildSeconds"] = time.Since(start).Seconds()
	var err error
	if g.source, err = harness.StartCounter(http.FileServer(http.Dir(filepath.Join(g.dir, "source")))); err != nil {
		return nil, fmt.Errorf("starting the gem source: %w", err)
	}

	// Which Bundler the base has: the lockfile says it was bundled with
	// it (a newer BUNDLED WITH makes Bundler want to install that one).
	bundled, err := b.trixieBundler(ctx, g.dir)
	if err != nil {
		return nil, err
	}
	s.Facts["bundledWith"] = bundled

	repo, gitURL, err := b.newRepo(ctx, "gems", filepath.Join(g.dir, "up"))
	if err != nil {
		return nil, err
	}
	versions := map[string]string{}
	for i, msg := range []string{"import", "bump " + bumpPlain, "bump " + bumpCExt} {
		switch i {
		case 1:
			versions[bumpPlain] = "1.0.1"
		case 2:
			versions[bumpCExt] = "1.0.1"
		}
		c, err := commitFiles(ctx, repo, i, msg, map[string]string{"Gemfile": gemfile(g.source.URL), "Gemfile.lock": gemfileLock(g.source.URL, bundled, versions)})
		if err != nil {
			return nil, err
		}
		g.commits = append(g.commits, c)
	}

	const app = `bundle exec ruby -e '%w[mid10 top02 top03 top05 top06].each { |g| require g }; puts Top02.run, Top03.run, Top05.run, Top06.run, Mid10.run' > /app/run.txt`
	header := "apiVersion: vmbuild/v1\nname: gems-%s\nupstream: {git: " + gitURL + ", ref: main}\nplatform: linux/amd64\n" +
		"base:\n  debian:\n    suite: trixie\n    mirror: " + b.archive.URL + "/debian\n    packages: [ruby, ruby-dev, bundler, gcc, make, libc6-dev, dash, coreutils]\n"
	layers := map[string]string{
		"hermetic-pergem": `build:
  layers:
    - name: gems
      inputs: [Gemfile, Gemfile.lock]
      deps: {manager: bundler, without: [development]}
      run: |
        bundle install --local
        ` + app + `
      outputs: [/usr/local/bundle, /app/run.txt]
`,
		"hermetic-all": `build:
  layers:
    - name: gems
      inputs: [Gemfile, Gemfile.lock]
      deps: {manager: bundler, without: [development], perGem: false}
      run: |
        bundle install --local
        ` + app + `
      outputs: [/usr/local/bundle, /app/run.txt]
`,
		"baseline": `build:
  layers:
    - name: gems
      inputs: [Gemfile, Gemfile.lock]
      network: host
      env: {BUNDLE_PATH: /usr/local/bundle, BUNDLE_WITHOUT: development, BUNDLE_FROZEN: "true"}
      run: |
        bundle install
        ` + app + `
      outputs: [/usr/local/bundle, /app/run.txt]
`,
	}
	for _, c := range gemContenders {
		p := filepath.Join(g.dir, c, "gems.yaml")
		if err := writeFiles(filepath.Dir(p), map[string]string{"gems.yaml": fmt.Sprintf(header, c) + layers[c]}); err != nil {
			return nil, err
		}
		g.recipes[c] = p
	}
	plain, cext := dependents(bumpPlain), dependents(bumpCExt)
	s.Facts["bumpPlainDependents"] = plain
	s.Facts["bumpCExtDependents"] = cext
	s.Setup = append(s.Setup,
		fmt.Sprintf("Gems: %d generated and built with the host's `gem build` (%s), 34 in the lock (the development group's 2 left out): 14 leaves, 4 C extensions (cext1–cext4: extconf.rb requires a leaf gem and bakes its VERSION into the .so; %d generated functions each, about 1.5 s of `gcc -O2` on the reference machine, a small real extension's cost), 10 middles, 6 tops; the Gemfile names %s. Served by a loopback file server (`gem generate_index`: specs.4.8.gz, quick/…) that counts requests and bytes.", len(gemGraph), gemVersion(), cextFunctions, codeList(gemfileGems)),
		"Gemfile.lock written by the harness in Bundler's format (GEM remote = the loopback source, PLATFORMS ruby, BUNDLED WITH "+bundled+", trixie's Bundler). Commits: import; `"+bumpPlain+"` 1.0.0 → 1.0.1 (no C extension depends on it); then `"+bumpCExt+"` 1.0.0 → 1.0.1 (cext1 and cext3 compile against it).",
		"Base: Debian trixie [ruby, ruby-dev, bundler, gcc, make, libc6-dev, dash, coreutils] from pinned .debs (through the counting archive proxy), as in build/hermetic_integration_test.go.",
		"Contenders: **hermetic-pergem** = `deps: {manager: bundler}` (each gem installed in a step of its own on its dependencies' installs, then `bundle install --local`); **hermetic-all** = the same with `perGem: false` (one `bundle install --local` from the pinned gem cache); **baseline** = `network: host`, no deps, `bundle install` from the loopback source (BUNDLE_PATH=/usr/local/bundle, BUNDLE_WITHOUT=development, BUNDLE_FROZEN=true). Each layer then runs the app (`bundle exec ruby …`), which prints each C extension's baked-in mark: the harness reads it from the image and checks that after the second bump cext1 and cext3 say leaf01-1.0.1 (they were compiled again, against the bumped gem).")
	// An untimed lock, to check the recipe and warm the Debian index cache.
	if _, _, _, err := b.lock(ctx, g.recipes["hermetic-pergem"], lockOpts{Fresh: true, Commit: g.commits[0]}); err != nil {
		return nil, err
	}
	return g, nil
}

// trixieBundler is the version of Bundler that trixie's bundler package
// has: a throwaway lock of a base with it, read from the pinned .deb.
func (b *bench) trixieBundler(ctx context.Context, dir string) (string, error) {
	d := filepath.Join(dir, "probe")
	repo, gitURL, err := b.newRepo(ctx, "probe", filepath.Join(d, "up"))
	if err != nil {
		return "", err
	}
	if _, err := commitFiles(ctx, repo, 0, "probe", map[string]string{"README": "probe\n"}); err != nil {
		return "", err
	}
	body := "apiVersion: vmbuild/v1\nname: probe\nupstream: {git: " + gitURL + ", ref: main}\nplatform: linux/amd64\nbase:\n  debian:\n    suite: trixie\n    mirror: " + b.archive.URL + "/debian\n    packages: [bundler, dash]\nbuild:\n  layers:\n    - name: x\n      run: \"true\"\n      outputs: [/tmp]\n"
	if err := writeFiles(d, map[string]string{"probe.yaml": body}); err != nil {
		return "", err
	}
	_, l, _, err := b.lock(ctx, filepath.Join(d, "probe.yaml"), lockOpts{Fresh: true})
	if err != nil {
		return "", err
	}
	for _, p := range l.DepsLock.Base.Packages {
		if p.Name == "bundler" || p.Name == "ruby-bundler" {
			v := p.Version
			if i := strings.IndexAny(v, "-+~"); i > 0 {
				v = v[:i]
			}
			if i := strings.Index(v, ":"); i >= 0 {
				v = v[i+1:]
			}
			return v, nil
		}
	}
	return "", fmt.Errorf("trixie's base has no bundler package")
}

// gemSequence: on a fresh daemon, lock, cold build, no-op, then each bump
// (re-lock, build).
func (b *bench) gemSequence(ctx context.Context, s *Scenario, g *gemScenario, contender string, rep int) error {
	d, out, record, done, err := b.sequence(ctx, s, "gems", "bundler", contender, rep)
	if err != nil {
		return err
	}
	defer done()
	path := g.recipes[contender]
	r, l, run, err := b.lock(ctx, path, lockOpts{Fresh: true, Commit: g.commits[0]})
	record("lock", run, err)
	if err != nil {
		return err
	}
	phases := []struct {
		name, commit, bumped string
	}{
		{"cold", "", ""}, {"noop", "", ""},
		{"relock-plain", g.commits[1], ""}, {"bump-plain", "", bumpPlain},
		{"relock-cext", g.commits[2], ""}, {"bump-cext", "", bumpCExt},
	}
	var cold Run
	for _, ph := range phases {
		if ph.commit != "" {
			r, l, run, err = b.lock(ctx, path, lockOpts{Commit: ph.commit})
			if err == nil && !strings.HasPrefix(contender, "baseline") && run.Packages != 1 {
				err = fmt.Errorf("%w: the re-lock downloaded %d gems, want 1", errCheck, run.Packages)
			}
			record(ph.name, run, err)
			if err != nil {
				return err
			}
			continue
		}
		res, run, err := b.build(ctx, d, r, l, out, fmt.Sprintf("gems-%s-%s-%d", contender, ph.name, rep))
		if err == nil {
			err = gemCheck(contender, ph.name, ph.bumped, run, cold)
		}
		if err == nil {
			// The app's output: each C extension's mark is the version of
			// the gem it compiled against.
			want := "leaf01-1.0.0"
			if ph.name == "bump-cext" {
				want = "leaf01-1.0.1"
			}
			got, ok, ferr := imageFile(out, res, "/app/run.txt")
			switch {
			case ferr != nil:
				err = ferr
			case !ok || !strings.Contains(got, want) || (want == "leaf01-1.0.1" && strings.Contains(got, "leaf01-1.0.0")):
				err = fmt.Errorf("%w: the app in the image printed %q, want the C extensions' marks %s", errCheck, got, want)
			}
		}
		record(ph.name, run, err)
		if err != nil {
			return err
		}
		if ph.name == "cold" {
			cold = run
		}
	}
	return nil
}

// gemCheck asserts what must hold: a cold build is cold, a no-op fetches
// and runs nothing, a hermetic bump fetches one gem and, per gem, re-runs
// exactly the bumped gem's step and its dependents'.
func gemCheck(contender, phase, bumped string, run, cold Run) error {
	switch phase {
	case "cold":
		if run.ReusedDaemon {
			break
		}
		if run.Debs == 0 || len(run.LayerSteps) != 1 {
			return fmt.Errorf("%w: the cold build fetched %d .debs and ran layers %v: not cold", errCheck, run.Debs, run.LayerSteps)
		}
		if contender == "hermetic-pergem" && len(run.GemStepsRan) != 34 {
			return fmt.Errorf("%w: the cold build ran %d gem installs, want 34", errCheck, len(run.GemStepsRan))
		}
	case "noop":
		if run.Proxy.Requests != 0 || run.Archive.Requests != 0 || len(run.LayerSteps) != 0 || len(run.GemStepsRan) != 0 {
			return fmt.Errorf("%w: the no-op rebuild fetched (gem source: %s; archive: %s) or ran %v %v", errCheck, run.Proxy, run.Archive, run.LayerSteps, run.GemStepsRan)
		}
		if run.Digest != cold.Digest {
			return fmt.Errorf("%w: the no-op rebuild gave %s, the cold build %s", errCheck, run.Digest, cold.Digest)
		}
	default:
		if run.Archive.Requests != 0 || len(run.LayerSteps) != 1 {
			return fmt.Errorf("%w: the bump fetched from the archive (%s) or ran layers %v", errCheck, run.Archive, run.LayerSteps)
		}
		// (--quick: a daemon another contender used has the gem already.)
		if strings.HasPrefix(contender, "hermetic") && run.Packages != 1 && !run.ReusedDaemon {
			return fmt.Errorf("%w: the bump of %s fetched %d gems, want 1", errCheck, bumped, run.Packages)
		}
		if contender == "hermetic-pergem" {
			want := dependents(bumped)
			if strings.Join(run.GemStepsRan, ",") != strings.Join(want, ",") {
				return fmt.Errorf("%w: the bump of %s re-ran the gem installs %v, want %v (it and its dependents)", errCheck, bumped, run.GemStepsRan, want)
			}
		}
	}
	return nil
}

func gemVersion() string {
	out, err := exec.Command("gem", "--version").Output()
	if err != nil {
		return "RubyGems ?"
	}
	return "RubyGems " + strings.TrimSpace(string(out))
}
