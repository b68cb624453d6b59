package gem

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// integration reports VMBUILD_INTEGRATION=1: a missing prerequisite
// fails instead of skipping.
func integration() bool { return os.Getenv("VMBUILD_INTEGRATION") == "1" }

func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if integration() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// mastodonBundle is the real Mastodon tree (see
// ../shared/fixtures/mastodon/README.md from the repository root).
const mastodonBundle = "../../../shared/fixtures/mastodon/mastodon-main.bundle"

// mastodonTree reads Gemfile and Gemfile.lock at the bundle's commit into
// an fs.FS, from a bare clone in a temporary directory.
func mastodonTree(t testing.TB) fstest.MapFS {
	t.Helper()
	if _, err := os.Stat(mastodonBundle); err != nil {
		skipOrFail(t, "Mastodon bundle %s not found (../shared/fixtures/mastodon from the repository root): %v", mastodonBundle, err)
	}
	if _, err := exec.LookPath("git"); err != nil {
		skipOrFail(t, "git not installed: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "mastodon.git")
	if out, err := exec.Command("git", "clone", "--bare", "--quiet", mastodonBundle, dir).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	fsys := fstest.MapFS{}
	for _, f := range []string{"Gemfile", "Gemfile.lock"} {
		out, err := exec.Command("git", "--git-dir", dir, "show", "HEAD:"+f).Output()
		if err != nil {
			t.Fatalf("git show HEAD:%s: %v", f, err)
		}
		fsys[f] = &fstest.MapFile{Data: out}
	}
	if err := exec.Command("git", "--git-dir", dir, "cat-file", "-e", "HEAD:.bundle/config").Run(); err == nil {
		t.Fatal("the tree has a .bundle/config; read it too")
	}
	return fsys
}

func TestMastodon(t *testing.T) {
	fsys := mastodonTree(t)
	ctx := context.Background()

	// the parse
	data := fsys["Gemfile.lock"].Data
	if n := strings.Count(string(data), "\n"); n != 1094 {
		t.Errorf("Gemfile.lock has %d lines, want 1094", n)
	}
	lf, err := ParseLockfile("Gemfile.lock", data)
	if err != nil {
		t.Fatal(err)
	}
	if len(lf.Sources) != 2 || len(lf.Specs) != 344 || len(lf.Sources[1].Specs) != 343 || len(lf.Dependencies) != 154 {
		t.Errorf("sources %d, specs %d, GEM specs %d, DEPENDENCIES %d; want 2, 344, 343, 154", len(lf.Sources), len(lf.Specs), len(lf.Sources[1].Specs), len(lf.Dependencies))
	}
	git := lf.Sources[0]
	if git.Kind != SourceGit || git.Remote() != "https://github.com/mastodon/webpush.git" || git.Revision != "9631ac63045cfabddacc69fc06e919b4c13eb913" ||
		git.Ref != "9631ac63045cfabddacc69fc06e919b4c13eb913" || len(git.Specs) != 1 || git.Specs[0].FullName() != "webpush-1.1.0" {
		t.Errorf("GIT source = %+v", git)
	}
	if lf.Sources[1].Remote() != "https://rubygems.org/" {
		t.Errorf("GEM remote = %s", lf.Sources[1].Remote())
	}
	if len(lf.Platforms) != 1 || !lf.Platforms[0].IsRuby() {
		t.Errorf("PLATFORMS = %v", lf.Platforms)
	}
	if lf.BundledWith != "4.0.18" || lf.RubyVersion != "ruby 4.0.6" || lf.HasChecksums || len(lf.Checksums) != 0 {
		t.Errorf("BUNDLED WITH %q, RUBY VERSION %q, CHECKSUMS %v", lf.BundledWith, lf.RubyVersion, lf.HasChecksums)
	}
	for _, s := range lf.Specs {
		if s.Name == "hiredis-client" && (s.Line != 307 || s.Version.String() != "0.30.1" || len(s.Deps) != 1 || s.Deps[0].Name != "redis-client" || s.Deps[0].Req.String() != "= 0.30.1" || s.Deps[0].Line != 308) {
			t.Errorf("hiredis-client = %+v", s)
		}
	}
	if i := slices.IndexFunc(lf.Dependencies, func(d LockDep) bool { return d.Name == "hiredis-client" }); i < 0 || lf.Dependencies[i].Line != 977 {
		t.Errorf("hiredis-client not in DEPENDENCIES at line 977")
	}
	if i := slices.IndexFunc(lf.Dependencies, func(d LockDep) bool { return d.Name == "webpush" }); i < 0 || !lf.Dependencies[i].Pinned {
		t.Errorf("webpush! not in DEPENDENCIES")
	}

	gf, err := LoadGemfile(fsys, "Gemfile")
	if err != nil {
		t.Fatal(err)
	}
	if len(gf.Deps) != 154 || !slices.Equal(gf.OptionalGroups, []string{"pam_authentication"}) || !slices.Equal(gf.Sources, []string{"https://rubygems.org/"}) {
		t.Errorf("Gemfile: %d gems, optional %v, sources %v", len(gf.Deps), gf.OptionalGroups, gf.Sources)
	}
	if i := slices.IndexFunc(gf.Deps, func(d *GemfileDep) bool { return d.Name == "hiredis-client" }); i < 0 || gf.Deps[i].Line != 53 {
		t.Errorf("hiredis-client not at Gemfile:53")
	}

	// the closure without development and test (pam_authentication is
	// optional, so off)
	start := time.Now()
	s, err := Resolve(ctx, fsys, "Gemfile.lock", Without("development", "test"), WithPlatform(ocispec.Platform{OS: "linux", Architecture: "amd64"}, Glibc))
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("parse + resolve of Mastodon's Gemfile.lock (%d lines) and Gemfile: %v", strings.Count(string(data), "\n"), took)
	// 276 rubygems gems and webpush: the same 277 names Bundler's own
	// SpecSet#for gives for these dependencies (checked with Bundler 2.3).
	if len(s.Gems) != 276 || len(s.Git) != 1 || len(s.Path) != 0 {
		t.Errorf("gems %d, git %d, path %d; want 276, 1, 0", len(s.Gems), len(s.Git), len(s.Path))
	}
	if !slices.Equal(s.Groups, []string{"default", "opentelemetry", "production"}) {
		t.Errorf("groups = %v", s.Groups)
	}
	for _, n := range []string{"rails", "hiredis-client", "redis-client", "nokogiri", "mini_portile2", "pg", "puma", "sidekiq", "lograge", "opentelemetry-sdk", "jwt", "hkdf"} {
		if _, ok := s.Gem(n); !ok {
			t.Errorf("%s is not in the set", n)
		}
	}
	for _, n := range []string{"rspec-rails", "rspec-core", "rubocop", "capybara", "debug", "faker", "devise_pam_authenticatable2", "rpam2", "webmock", "brakeman"} {
		if s.Has(n) {
			t.Errorf("%s is in the set", n)
		}
	}
	hc, _ := s.Gem("hiredis-client")
	if hc.URL != "https://rubygems.org/gems/hiredis-client-0.30.1.gem" || hc.Path != "hiredis-client-0.30.1.gem" || !hc.Direct || !slices.Equal(hc.Deps, []string{"redis-client"}) || hc.SHA256 != "" {
		t.Errorf("hiredis-client = %+v", hc)
	}
	noko, _ := s.Gem("nokogiri")
	if noko.Platform != "" || noko.Path != "nokogiri-1.19.4.gem" || !slices.Contains(s.TransitiveDeps("nokogiri"), "mini_portile2") {
		t.Errorf("nokogiri = %+v (PLATFORMS is ruby only: the source gem)", noko)
	}
	for _, g := range s.Gems {
		if !strings.HasPrefix(g.URL, "https://rubygems.org/gems/") || g.URL != "https://rubygems.org/gems/"+g.Path {
			t.Errorf("%s: URL %s", g.Name, g.URL)
		}
	}
	if wp := s.Git[0]; wp.Name != "webpush" || wp.Revision != "9631ac63045cfabddacc69fc06e919b4c13eb913" || !wp.Direct || !slices.Equal(wp.Deps, []string{"hkdf", "jwt"}) || wp.CacheDir() != "webpush-9631ac63045c" {
		t.Errorf("webpush = %+v", wp)
	}
	if len(s.Unhashed()) != 276 {
		t.Errorf("unhashed = %d (no CHECKSUMS: every gem needs hashing)", len(s.Unhashed()))
	}
	order := s.Order()
	if len(order) != 277 || len(s.Cycles()) != 0 {
		t.Errorf("order has %d steps, cycles %v", len(order), s.Cycles())
	}
	pos := map[string]int{}
	for i, st := range order {
		for _, g := range st.Gems {
			pos[g] = i
		}
	}
	for _, st := range order {
		for _, d := range st.Deps {
			if pos[d] >= pos[st.Gems[0]] {
				t.Errorf("%s is installed before its dependency %s", st.Gems[0], d)
			}
		}
	}
	t.Logf("per-gem install: %d steps in %d layers; rails needs %d gems", len(order), len(s.Layers()), len(s.TransitiveDeps("rails")))

	// the optional group on, and another platform: PLATFORMS is ruby, so
	// the same source gems
	s2, err := Resolve(ctx, fsys, "Gemfile.lock", Without("development", "test"), With("pam_authentication"), WithPlatform(ocispec.Platform{OS: "linux", Architecture: "arm64"}, Musl))
	if err != nil {
		t.Fatal(err)
	}
	if len(s2.Gems) != 278 || !s2.Has("devise_pam_authenticatable2") || !s2.Has("rpam2") {
		t.Errorf("with pam_authentication: %d gems", len(s2.Gems))
	}
	// recipes/mastodon/patches/main-drop-hiredis-client.patch removes the
	// gem from both files consistently: the result resolves, without it;
	// removing it from the Gemfile alone is a lockfile that does not match
	gemfileOnly := fstest.MapFS{
		"Gemfile":      {Data: []byte(strings.Replace(string(fsys["Gemfile"].Data), "gem 'hiredis-client'\n", "", 1))},
		"Gemfile.lock": fsys["Gemfile.lock"],
	}
	_, err = Resolve(ctx, gemfileOnly, "Gemfile.lock", Without("development", "test"))
	var me *MismatchError
	if !errors.As(err, &me) || len(me.Mismatches) != 1 || me.Mismatches[0].Gem != "hiredis-client" || me.Mismatches[0].Kind != "deleted" || me.Mismatches[0].LockfileLine != 977 {
		t.Errorf("hiredis-client removed from the Gemfile only: %v", err)
	}
	both := fstest.MapFS{
		"Gemfile": gemfileOnly["Gemfile"],
		"Gemfile.lock": {Data: []byte(strings.Replace(strings.Replace(string(data),
			"    hiredis-client (0.30.1)\n      redis-client (= 0.30.1)\n", "", 1), "  hiredis-client\n", "", 1))},
	}
	noHiredis, err := Resolve(ctx, both, "Gemfile.lock", Without("development", "test"))
	if err != nil {
		t.Fatalf("hiredis-client removed from both: %v", err)
	}
	if len(noHiredis.Gems) != 275 || noHiredis.Has("hiredis-client") || !noHiredis.Has("redis-client") {
		t.Errorf("without hiredis-client: %d gems, hiredis-client %v, redis-client %v", len(noHiredis.Gems), noHiredis.Has("hiredis-client"), noHiredis.Has("redis-client"))
	}

	// everything: 342 of the 344 specs (the optional group's two are left)
	all, err := Resolve(ctx, fsys, "Gemfile.lock")
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Gems)+len(all.Git) != 342 || !all.Has("rspec-rails") {
		t.Errorf("all groups: %d gems", len(all.Gems)+len(all.Git))
	}
}

func BenchmarkMastodonResolve(b *testing.B) {
	fsys := mastodonTree(b)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Resolve(ctx, fsys, "Gemfile.lock", Without("development", "test")); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMastodonParseLockfile(b *testing.B) {
	data := mastodonTree(b)["Gemfile.lock"].Data
	b.ResetTimer()
	for b.Loop() {
		if _, err := ParseLockfile("Gemfile.lock", data); err != nil {
			b.Fatal(err)
		}
	}
}
