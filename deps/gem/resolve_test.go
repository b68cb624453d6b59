package gem

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
)

func tree(files ...string) fstest.MapFS {
	m := fstest.MapFS{}
	for i := 0; i+1 < len(files); i += 2 {
		m[files[i]] = &fstest.MapFile{Data: []byte(files[i+1])}
	}
	return m
}

const scopeGemfile = `source "https://rubygems.org"
ruby ">= 3.3"

gem "rails", "~> 8.1.0"
gem "nokogiri", "~> 1.18"
gem "ffi", force_ruby_platform: true
gem "tzinfo-data", platforms: %i[windows jruby]
gem "byebug", platforms: :mri_33
gem "oldruby", platforms: [:ruby_31]

group :pam, optional: true do
  gem "pam"
end

group :development, :test do
  gem "rspec"
end

group :test do
  gem "capybara"
end

group :production do
  gem "lograge"
end
`

const scopeLock = `GEM
  remote: https://rubygems.org/
  specs:
    byebug (12.0.0)
    capybara (3.40.0)
      nokogiri (~> 1.11)
      rack (>= 1.6.0)
    ffi (1.17.1)
    ffi (1.17.1-x86_64-linux-gnu)
    lograge (0.14.0)
      rack
    mini_portile2 (2.8.8)
    nokogiri (1.18.0)
      mini_portile2 (~> 2.8.2)
      racc (~> 1.4)
    nokogiri (1.18.0-aarch64-linux-gnu)
      racc (~> 1.4)
    nokogiri (1.18.0-aarch64-linux-musl)
      racc (~> 1.4)
    nokogiri (1.18.0-x86_64-linux-gnu)
      racc (~> 1.4)
    oldruby (1.0.0)
    pam (2.0.0)
    racc (1.8.1)
    rack (3.1.8)
    rails (8.1.3)
      rack (>= 2.2.4)
      bundler (>= 1.15.0)
    rspec (3.13.0)

PLATFORMS
  aarch64-linux-gnu
  aarch64-linux-musl
  ruby
  x86_64-linux-gnu

DEPENDENCIES
  byebug
  capybara
  ffi
  lograge
  nokogiri (~> 1.18)
  oldruby
  pam
  rails (~> 8.1.0)
  rspec
  tzinfo-data

CHECKSUMS
  nokogiri (1.18.0-x86_64-linux-gnu) sha256=1111111111111111111111111111111111111111111111111111111111111111
  rack (3.1.8) sha256=2222222222222222222222222222222222222222222222222222222222222222

RUBY VERSION
   ruby 3.3.6p108

BUNDLED WITH
   2.6.2
`

func gemIDs(s *Set) string {
	var out []string
	for _, g := range s.Gems {
		out = append(out, g.FullName())
	}
	return strings.Join(out, " ")
}

func TestResolveScope(t *testing.T) {
	ctx := context.Background()
	fsys := tree("Gemfile", scopeGemfile, "Gemfile.lock", scopeLock)
	amd64 := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm64 := ocispec.Platform{OS: "linux", Architecture: "arm64"}
	for _, c := range []struct {
		name   string
		opts   []Option
		want   string
		groups string
	}{
		{"production on amd64", []Option{Without("development", "test"), WithPlatform(amd64, Glibc)},
			"byebug-12.0.0 ffi-1.17.1 lograge-0.14.0 nokogiri-1.18.0-x86_64-linux-gnu racc-1.8.1 rack-3.1.8 rails-8.1.3",
			"default production"},
		{"production on arm64 musl", []Option{Without("development", "test"), WithPlatform(arm64, Musl)},
			"byebug-12.0.0 ffi-1.17.1 lograge-0.14.0 nokogiri-1.18.0-aarch64-linux-musl racc-1.8.1 rack-3.1.8 rails-8.1.3",
			"default production"},
		{"forced ruby platform", []Option{Without("development", "test"), WithForceRubyPlatform(true)},
			"byebug-12.0.0 ffi-1.17.1 lograge-0.14.0 mini_portile2-2.8.8 nokogiri-1.18.0 racc-1.8.1 rack-3.1.8 rails-8.1.3",
			"default production"},
		{"Ruby 3.4 drops byebug", []Option{Without("development", "test"), WithRubyVersion("3.4.1")},
			"ffi-1.17.1 lograge-0.14.0 nokogiri-1.18.0-x86_64-linux-gnu racc-1.8.1 rack-3.1.8 rails-8.1.3",
			"default production"},
		{"Ruby 3.1 has oldruby", []Option{Only("default"), WithRubyVersion("3.1.0")},
			"ffi-1.17.1 nokogiri-1.18.0-x86_64-linux-gnu oldruby-1.0.0 racc-1.8.1 rack-3.1.8 rails-8.1.3",
			"default"},
		{"optional group enabled", []Option{Without("development", "test", "production"), With("pam")},
			"byebug-12.0.0 ffi-1.17.1 nokogiri-1.18.0-x86_64-linux-gnu pam-2.0.0 racc-1.8.1 rack-3.1.8 rails-8.1.3",
			"default pam"},
		{"everything but optional", nil,
			"byebug-12.0.0 capybara-3.40.0 ffi-1.17.1 lograge-0.14.0 nokogiri-1.18.0-x86_64-linux-gnu racc-1.8.1 rack-3.1.8 rails-8.1.3 rspec-3.13.0",
			"default development production test"},
		{"only test, forced ruby platform (also for dependencies)", []Option{Only("test"), WithForceRubyPlatform(true)},
			"capybara-3.40.0 mini_portile2-2.8.8 nokogiri-1.18.0 racc-1.8.1 rack-3.1.8 rspec-3.13.0",
			"test"},
		{"only test", []Option{Only("test")},
			"capybara-3.40.0 nokogiri-1.18.0-x86_64-linux-gnu racc-1.8.1 rack-3.1.8 rspec-3.13.0",
			"test"},
		{"without test keeps rspec (also development)", []Option{Without("test", "production")},
			"byebug-12.0.0 ffi-1.17.1 nokogiri-1.18.0-x86_64-linux-gnu racc-1.8.1 rack-3.1.8 rails-8.1.3 rspec-3.13.0",
			"default development"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := Resolve(ctx, fsys, "Gemfile.lock", c.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if got := gemIDs(s); got != c.want {
				t.Errorf("gems = %s\nwant   %s", got, c.want)
			}
			if got := strings.Join(s.Groups, " "); got != c.groups {
				t.Errorf("groups = %s, want %s", got, c.groups)
			}
		})
	}
	s, err := Resolve(ctx, fsys, "Gemfile.lock", Without("development", "test"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Platform.String() != "x86_64-linux" {
		t.Errorf("default platform = %s", s.Platform)
	}
	noko, _ := s.Gem("nokogiri")
	if noko.URL != "https://rubygems.org/gems/nokogiri-1.18.0-x86_64-linux-gnu.gem" || noko.Path != "nokogiri-1.18.0-x86_64-linux-gnu.gem" ||
		noko.Platform != "x86_64-linux-gnu" || noko.SHA256 != strings.Repeat("1", 64) || noko.Checksum != noko.SHA256 ||
		!noko.Direct || strings.Join(noko.Deps, ",") != "racc" || noko.Line != 20 || noko.Remote != "https://rubygems.org/" {
		t.Errorf("nokogiri = %+v", noko)
	}
	if noko.ID() != "nokogiri@1.18.0-x86_64-linux-gnu" || noko.Purl("gem") != "pkg:gem/nokogiri@1.18.0?platform=x86_64-linux-gnu" {
		t.Errorf("nokogiri id %s purl %s", noko.ID(), noko.Purl("gem"))
	}
	// force_ruby_platform on the gem line picks ffi's ruby variant
	ffi, _ := s.Gem("ffi")
	if ffi.Platform != "" || ffi.Path != "ffi-1.17.1.gem" {
		t.Errorf("ffi = %+v", ffi)
	}
	rails, _ := s.Gem("rails")
	if strings.Join(rails.Deps, ",") != "rack" { // bundler is never a gem to fetch
		t.Errorf("rails deps = %v", rails.Deps)
	}
	rack, _ := s.Gem("rack")
	if rack.Direct || rack.SHA256 == "" {
		t.Errorf("rack = %+v", rack)
	}
	if got := strings.Join(s.Unhashed(), " "); got != "byebug-12.0.0 ffi-1.17.1 lograge-0.14.0 racc-1.8.1 rails-8.1.3" {
		t.Errorf("unhashed = %s", got)
	}
	if ps := s.Packages(); len(ps) != 7 || ps[0].Path != "byebug-12.0.0.gem" || ps[6].Path != "rails-8.1.3.gem" {
		t.Errorf("packages = %+v", ps)
	}
	if s.Has("tzinfo-data") || s.Has("capybara") || !s.Has("racc") {
		t.Error("Has is wrong")
	}
	js, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"platform":"x86_64-linux"`, `"groups":["default","production"]`, `{"name":"nokogiri","version":"1.18.0","platform":"x86_64-linux-gnu","url":"https://rubygems.org/gems/nokogiri-1.18.0-x86_64-linux-gnu.gem","sha256":"1111111111111111111111111111111111111111111111111111111111111111","integrity":"sha256-ERERERERERERERERERERERERERERERERERERERERERE=","path":"nokogiri-1.18.0-x86_64-linux-gnu.gem","remote":"https://rubygems.org/","checksum":"1111111111111111111111111111111111111111111111111111111111111111","deps":["racc"],"direct":true,"line":20}`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("JSON lacks %s:\n%s", want, js)
		}
	}
	var back Set
	if err := json.Unmarshal(js, &back); err != nil || back.Platform != s.Platform || len(back.Gems) != len(s.Gems) || back.Gems[3].Package != s.Gems[3].Package {
		t.Errorf("JSON round trip: %v %+v", err, back.Platform)
	}
}

func TestResolveMismatch(t *testing.T) {
	ctx := context.Background()
	lock := `GIT
  remote: https://github.com/mastodon/webpush.git
  revision: 9631ac63045cfabddacc69fc06e919b4c13eb913
  ref: 9631ac63045cfabddacc69fc06e919b4c13eb913
  specs:
    webpush (1.1.0)

GEM
  remote: https://rubygems.org/
  specs:
    puma (6.4.0)
    rails (8.0.1)

PLATFORMS
  ruby

DEPENDENCIES
  puma (~> 6.0)
  rails (~> 8.0)
  webpush!
`
	good := `source "https://rubygems.org"
gem "puma", "~> 6.0"
gem "rails", "~> 8.0"
gem "webpush", github: "mastodon/webpush", ref: "9631ac63045cfabddacc69fc06e919b4c13eb913"
`
	if _, err := Resolve(ctx, tree("Gemfile", good, "Gemfile.lock", lock), "Gemfile.lock"); err != nil {
		t.Fatalf("matching Gemfile: %v", err)
	}
	for _, c := range []struct {
		name, gemfile string
		want          []Mismatch
	}{
		{"added", good + "gem \"sidekiq\"\n", []Mismatch{{Gem: "sidekiq", Kind: "added", GemfileLine: 5}}},
		{"deleted", strings.Replace(good, "gem \"puma\", \"~> 6.0\"\n", "", 1), []Mismatch{{Gem: "puma", Kind: "deleted", LockfileLine: 18}}},
		{"requirement changed", strings.Replace(good, "\"~> 8.0\"", "\"~> 8.1.0\"", 1), []Mismatch{{Gem: "rails", Kind: "changed", GemfileLine: 3, LockfileLine: 19}}},
		{"locked version unsatisfied", strings.Replace(lock, "rails (8.0.1)", "rails (7.2.0)", 1), []Mismatch{{Gem: "rails", Kind: "unsatisfied", GemfileLine: 3, LockfileLine: 12}}},
		{"git ref changed", strings.Replace(good, "ref: \"9631", "ref: \"0000", 1), []Mismatch{{Gem: "webpush", Kind: "changed", GemfileLine: 4, LockfileLine: 6}}},
		{"source changed to git", strings.Replace(good, "gem \"puma\", \"~> 6.0\"", "gem \"puma\", \"~> 6.0\", git: \"https://github.com/puma/puma.git\"", 1), []Mismatch{{Gem: "puma", Kind: "changed", GemfileLine: 2, LockfileLine: 18}}},
		{"global source changed", strings.Replace(good, "https://rubygems.org", "https://gems.example.com", 1), []Mismatch{{Gem: "puma", Kind: "changed", GemfileLine: 2, LockfileLine: 11}, {Gem: "rails", Kind: "changed", GemfileLine: 3, LockfileLine: 12}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			gf, lf := c.gemfile, lock
			if gf == "" {
				gf = good
			}
			if c.name == "locked version unsatisfied" {
				gf, lf = good, c.gemfile
			}
			_, err := Resolve(ctx, tree("app/Gemfile", gf, "app/Gemfile.lock", lf), "app/Gemfile.lock")
			var me *MismatchError
			if !errors.As(err, &me) {
				t.Fatalf("err = %v, want *MismatchError", err)
			}
			if !errors.Is(err, errs.ErrDependency) || !strings.Contains(err.Error(), "app/Gemfile.lock does not match its Gemfile app/Gemfile") {
				t.Errorf("err = %v", err)
			}
			if len(me.Mismatches) != len(c.want) {
				t.Fatalf("mismatches = %+v", me.Mismatches)
			}
			for i, w := range c.want {
				m := me.Mismatches[i]
				if m.Gem != w.Gem || m.Kind != w.Kind || m.GemfileLine != w.GemfileLine || m.LockfileLine != w.LockfileLine {
					t.Errorf("mismatch %d = %+v, want %+v", i, m, w)
				}
				if !strings.Contains(err.Error(), "gem "+w.Gem+": ") {
					t.Errorf("error does not name gem %s: %v", w.Gem, err)
				}
			}
		})
	}
	// the same gem twice with different requirements is refused, as Bundler does
	_, err := Resolve(ctx, tree("Gemfile", good+"group :test do\n  gem \"puma\", \"~> 6.1\"\nend\n", "Gemfile.lock", lock), "Gemfile.lock")
	if err == nil || !strings.Contains(err.Error(), "Gemfile:6: gem puma: named twice with different requirements") {
		t.Errorf("duplicate gem: %v", err)
	}
}

func TestResolvePathAndGitGems(t *testing.T) {
	ctx := context.Background()
	lock := `GIT
  remote: https://github.com/mastodon/webpush.git
  revision: 9631ac63045cfabddacc69fc06e919b4c13eb913
  ref: 9631ac63045cfabddacc69fc06e919b4c13eb913
  specs:
    webpush (1.1.0)
      jwt (~> 2.0)

PATH
  remote: engines/local
  specs:
    local_engine (0.0.1)
      jwt

GEM
  remote: https://rubygems.org/
  specs:
    jwt (2.10.1)

PLATFORMS
  ruby

DEPENDENCIES
  local_engine!
  webpush!
`
	gemfile := `source "https://rubygems.org"
gem "webpush", github: "mastodon/webpush", ref: "9631ac63045cfabddacc69fc06e919b4c13eb913"
gem "local_engine", path: "engines/local"
`
	fsys := tree("app/Gemfile", gemfile, "app/Gemfile.lock", lock, "app/engines/local/local_engine.gemspec", "")
	_, err := Resolve(ctx, fsys, "app/Gemfile.lock")
	var ie *InputError
	if !errors.As(err, &ie) || ie.Gem != "local_engine" || ie.Line != 12 || ie.File != "app/Gemfile.lock" || !strings.Contains(ie.Msg, "PATH gem") {
		t.Fatalf("path gem: %v", err)
	}
	s, err := Resolve(ctx, fsys, "app/Gemfile.lock", WithPathGems())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Path) != 1 || !reflect.DeepEqual(s.Path[0], PathGem{Name: "local_engine", Version: "0.0.1", Dir: "app/engines/local", Deps: []string{"jwt"}, Direct: true, Line: 12}) {
		t.Errorf("path gems = %+v", s.Path)
	}
	if len(s.Git) != 1 {
		t.Fatalf("git gems = %+v", s.Git)
	}
	g := s.Git[0]
	if g.Name != "webpush" || g.Version != "1.1.0" || g.Remote != "https://github.com/mastodon/webpush.git" || g.Revision != "9631ac63045cfabddacc69fc06e919b4c13eb913" ||
		g.Ref != g.Revision || !g.Direct || strings.Join(g.Deps, ",") != "jwt" || g.CacheDir() != "webpush-9631ac63045c" {
		t.Errorf("git gem = %+v (cache dir %s)", g, g.CacheDir())
	}
	if gemIDs(s) != "jwt-2.10.1" {
		t.Errorf("gems = %s", gemIDs(s))
	}
	if got := s.Order(); len(got) != 3 || got[0].Gems[0] != "jwt" || got[1].Layer != 1 || got[2].Layer != 1 {
		t.Errorf("order = %+v", got)
	}

	// a path outside the tree
	outside := strings.Replace(lock, "remote: engines/local", "remote: ../elsewhere", 1)
	_, err = Resolve(ctx, tree("app/Gemfile", strings.Replace(gemfile, "engines/local", "../elsewhere", 1), "app/Gemfile.lock", outside), "app/Gemfile.lock", WithPathGems())
	if err == nil || !strings.Contains(err.Error(), "gem local_engine: PATH gem directory") {
		t.Errorf("outside path: %v", err)
	}
	// a GIT revision that is not a commit
	branchy := strings.Replace(lock, "revision: 9631ac63045cfabddacc69fc06e919b4c13eb913", "revision: main", 1)
	_, err = Resolve(ctx, tree("app/Gemfile", gemfile, "app/Gemfile.lock", branchy, "app/engines/local/x", ""), "app/Gemfile.lock", WithPathGems())
	if !errors.As(err, &ie) || ie.Gem != "webpush" || ie.Line != 1 || !strings.Contains(ie.Msg, "not a full commit hash") {
		t.Errorf("bad revision: %v", err)
	}
}

func TestResolveMirrorsAndConfig(t *testing.T) {
	ctx := context.Background()
	gemfile := "source 'https://rubygems.org'\ngem 'rack'\ngroup :test do\n  gem 'rspec'\nend\nsource 'https://gems.example.com' do\n  gem 'private'\nend\n"
	lock := `GEM
  remote: https://gems.example.com/
  specs:
    private (1.0.0)

GEM
  remote: https://rubygems.org/
  specs:
    rack (3.1.8)
    rspec (3.13.0)

PLATFORMS
  x86_64-linux

DEPENDENCIES
  private!
  rack
  rspec
`
	urls := func(s *Set) string {
		var out []string
		for _, g := range s.Gems {
			out = append(out, g.URL)
		}
		return strings.Join(out, " ")
	}
	fsys := tree("Gemfile", gemfile, "Gemfile.lock", lock)
	s, err := Resolve(ctx, fsys, "Gemfile.lock")
	if err != nil {
		t.Fatal(err)
	}
	if got := urls(s); got != "https://gems.example.com/gems/private-1.0.0.gem https://rubygems.org/gems/rack-3.1.8.gem https://rubygems.org/gems/rspec-3.13.0.gem" {
		t.Errorf("urls = %s", got)
	}
	// env: a mirror for rubygems.org and BUNDLE_WITHOUT
	env := map[string]string{"BUNDLE_MIRROR__HTTPS://RUBYGEMS__ORG/": "http://127.0.0.1:9292", "BUNDLE_WITHOUT": "test", "HOME": "/root", "BUNDLE_GEMS__EXAMPLE__COM": "user:secret"}
	var logs bytes.Buffer
	s, err = Resolve(ctx, fsys, "Gemfile.lock", WithEnv(env), WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	if got := urls(s); got != "https://gems.example.com/gems/private-1.0.0.gem http://127.0.0.1:9292/gems/rack-3.1.8.gem" {
		t.Errorf("urls with env = %s", got)
	}
	if r, _ := s.Gem("rack"); r.Remote != "https://rubygems.org/" {
		t.Errorf("rack remote = %s", r.Remote)
	}
	if strings.Contains(logs.String(), "secret") {
		t.Error("credentials logged")
	}
	if s.Settings["without"] != (Setting{"test", "env"}) || len(s.Settings) != 2 {
		t.Errorf("settings = %+v", s.Settings)
	}
	// the tree's .bundle/config beats the env; options beat both
	// (a hand-written "mirror.https://…" key is not one Bundler reads back)
	cfg := "---\nBUNDLE_WITHOUT: \"production\"\nBUNDLE_MIRROR__GEMS__EXAMPLE__COM: \"https://mirror.example.org/private\"\nBUNDLE_MIRROR__HTTPS://RUBYGEMS__ORG: \"https://mirror.example.org/rubygems/\"\nmirror.https://rubygems.org: \"https://ignored.example.org/\"\nBUNDLE_GEMS__EXAMPLE__COM: \"user:secret\"\n"
	fsys[".bundle/config"] = &fstest.MapFile{Data: []byte(cfg)}
	s, err = Resolve(ctx, fsys, "Gemfile.lock", WithEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	if got := urls(s); got != "https://mirror.example.org/private/gems/private-1.0.0.gem https://mirror.example.org/rubygems/gems/rack-3.1.8.gem https://mirror.example.org/rubygems/gems/rspec-3.13.0.gem" {
		t.Errorf("urls with config = %s", got)
	}
	if s.Settings["without"] != (Setting{"production", ".bundle/config"}) {
		t.Errorf("settings = %+v", s.Settings)
	}
	s, err = Resolve(ctx, fsys, "Gemfile.lock", WithEnv(env), WithMirror("all", "https://all.example.net"), Without("test"))
	if err != nil {
		t.Fatal(err)
	}
	if got := urls(s); got != "https://all.example.net/gems/private-1.0.0.gem https://all.example.net/gems/rack-3.1.8.gem" {
		t.Errorf("urls with mirror.all = %s", got)
	}
	if _, err := Resolve(ctx, fsys, "Gemfile.lock", WithTreeConfig(false), WithMirror("https://rubygems.org/", "https://u:p@mirror.example.org/")); err == nil || !strings.Contains(err.Error(), "credentials") || strings.Contains(err.Error(), "u:p") {
		t.Errorf("mirror with credentials: %v", err)
	}
	fsys[".bundle/config"] = &fstest.MapFile{Data: []byte("---\nBUNDLE_WITHOUT: [unclosed\n")}
	if _, err := Resolve(ctx, fsys, "Gemfile.lock"); err == nil || !strings.Contains(err.Error(), ".bundle/config") {
		t.Errorf("bad config: %v", err)
	}
}

func TestResolveLockfileProblems(t *testing.T) {
	ctx := context.Background()
	gemfile := "source 'https://rubygems.org'\ngem 'a'\n"
	base := "GEM\n  remote: https://rubygems.org/\n  specs:\n    a (1.0)\n      b (~> 2.0)\n    b (2.1)\n\nPLATFORMS\n  ruby\n\nDEPENDENCIES\n  a\n"
	for _, c := range []struct {
		name, lock, want string
		gemfile          string
	}{
		{"dependency not locked", strings.Replace(base, "    b (2.1)\n", "", 1), "Gemfile.lock:5: gem b: a depends on it but no spec of it is locked", ""},
		{"dependency version unsatisfied", strings.Replace(base, "b (2.1)", "b (3.0)", 1), "Gemfile.lock:5: gem b: a requires b (~> 2.0) but 3.0 is locked", ""},
		{"platform not locked", strings.Replace(strings.Replace(base, "a (1.0)", "a (1.0-x86_64-darwin)", 1), "  ruby\n", "  x86_64-darwin\n", 1), "Gemfile.lock:8: PLATFORMS (x86_64-darwin) do not include the target platform x86_64-linux", ""},
		{"no variant for platform", strings.Replace(strings.Replace(base, "a (1.0)", "a (1.0-x86_64-darwin)", 1), "  ruby\n", "  ruby\n  x86_64-darwin\n", 1), "Gemfile.lock:4: gem a: no locked variant for platform x86_64-linux", ""},
		{"several remotes", strings.Replace(base, "  remote: https://rubygems.org/\n", "  remote: https://rubygems.org/\n  remote: https://other.example/\n", 1), "Gemfile.lock:1: gem a: its GEM section lists 2 remotes",
			gemfile + "source 'https://other.example'\n"},
		{"plugin source", strings.Replace(base, "      b (~> 2.0)\n", "      b (~> 2.0)\n      c\n", 1) + "\nPLUGIN SOURCE\n  remote: https://x\n  type: foo\n  specs:\n    c (2.1)\n", "Gemfile.lock:19: gem c: gems from PLUGIN SOURCE sections are not supported", ""},
		{"unparseable line", strings.Replace(base, "    b (2.1)", "    b (2.1) junk", 1), "Gemfile.lock:6: cannot parse spec line", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			gf := c.gemfile
			if gf == "" {
				gf = gemfile
			}
			_, err := Resolve(ctx, tree("Gemfile", gf, "Gemfile.lock", c.lock), "Gemfile.lock")
			if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, errs.ErrDependency) {
				t.Errorf("err = %v\nwant ~ %s", err, c.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "resolving gems of Gemfile.lock: ") {
				t.Errorf("err not wrapped: %v", err)
			}
		})
	}
	if _, err := Resolve(ctx, tree("Gemfile", gemfile), "Gemfile.lock"); !errors.Is(err, errs.ErrDependency) {
		t.Errorf("missing lockfile: %v", err)
	}
	// a Gemfile naming bundler itself: in DEPENDENCIES, never a spec
	withBundler := strings.Replace(base, "DEPENDENCIES\n  a\n", "DEPENDENCIES\n  a\n  bundler (~> 2.5)\n", 1)
	if s, err := Resolve(ctx, tree("Gemfile", gemfile+"gem 'bundler', '~> 2.5'\n", "Gemfile.lock", withBundler), "Gemfile.lock"); err != nil || s.Has("bundler") || gemIDs(s) != "a-1.0 b-2.1" {
		t.Errorf("gem bundler: %v", err)
	}
	if _, err := Resolve(ctx, tree("app/Gemfile", gemfile, "app/Gemfile.lock", base), "./app/Gemfile.lock", WithGemfile("./app/Gemfile")); err != nil {
		t.Errorf("unclean paths: %v", err)
	}
	if _, err := Resolve(ctx, tree("gems.rb", gemfile, "gems.locked", base), "gems.locked"); err != nil {
		t.Errorf("gems.rb: %v", err)
	}
	if _, err := Resolve(ctx, tree("Gemfile.prod", gemfile, "locks/prod.lock", base), "locks/prod.lock", WithGemfile("Gemfile.prod")); err != nil {
		t.Errorf("WithGemfile: %v", err)
	}
}

func TestResolveGraph(t *testing.T) {
	lock := `GEM
  remote: https://rubygems.org/
  specs:
    app (1.0)
      cext
      pure
    cext (1.0)
      helper
    helper (1.0)
    pure (1.0)
      helper
    ring-a (1.0)
      ring-b
    ring-b (1.0)
      ring-c
      helper
    ring-c (1.0)
      ring-a
    selfish (1.0)
      selfish

PLATFORMS
  ruby

DEPENDENCIES
  app
  ring-a
  selfish
`
	s, err := Resolve(context.Background(), tree("Gemfile", "source 'https://rubygems.org'\ngem 'app'\ngem 'ring-a'\ngem 'selfish'\n", "Gemfile.lock", lock), "Gemfile.lock")
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, st := range s.Order() {
		order = append(order, strings.Join(st.Gems, "+")+"@"+string(rune('0'+st.Layer))+"("+strings.Join(st.Deps, ",")+")")
	}
	want := "helper@0() selfish@0() cext@1(helper) pure@1(helper) ring-a+ring-b+ring-c@1(helper) app@2(cext,helper,pure)"
	if strings.Join(order, " ") != want {
		t.Errorf("order = %s\nwant    %s", strings.Join(order, " "), want)
	}
	layers := s.Layers()
	if len(layers) != 3 || strings.Join(layers[1], ",") != "cext,pure,ring-a,ring-b,ring-c" {
		t.Errorf("layers = %v", layers)
	}
	if got := strings.Join(s.TransitiveDeps("ring-b"), ","); got != "helper,ring-a,ring-c" {
		t.Errorf("transitive deps of ring-b = %s", got)
	}
	if got := strings.Join(s.TransitiveDeps("app"), ","); got != "cext,helper,pure" {
		t.Errorf("transitive deps of app = %s", got)
	}
	if got := s.DirectDeps("app"); !slices.Equal(got, []string{"cext", "pure"}) {
		t.Errorf("direct deps of app = %v", got)
	}
	if got := s.Cycles(); len(got) != 2 || strings.Join(got[0], ",") != "selfish" || strings.Join(got[1], ",") != "ring-a,ring-b,ring-c" {
		t.Errorf("cycles = %v", got)
	}
}

func TestResolveGemspec(t *testing.T) {
	lock := `PATH
  remote: .
  specs:
    mylib (0.3.0)
      zeitwerk (~> 2.6)

GEM
  remote: https://rubygems.org/
  specs:
    rake (13.2.1)
    rspec (3.13.0)
    zeitwerk (2.7.1)

PLATFORMS
  ruby

DEPENDENCIES
  mylib!
  rake (~> 13.0)
  rspec (~> 3.0)
`
	fsys := tree("Gemfile", "source 'https://rubygems.org'\ngemspec\ngem 'rake', '~> 13.0'\n", "Gemfile.lock", lock, "mylib.gemspec", "")
	s, err := Resolve(context.Background(), fsys, "Gemfile.lock", Without("development"), WithPathGems())
	if err != nil {
		t.Fatal(err)
	}
	// rspec is the gemspec's development dependency: in "development"
	if gemIDs(s) != "rake-13.2.1 zeitwerk-2.7.1" || len(s.Path) != 1 || s.Path[0].Dir != "." {
		t.Errorf("gems = %s, path = %+v", gemIDs(s), s.Path)
	}
	s, err = Resolve(context.Background(), fsys, "Gemfile.lock", WithPathGems())
	if err != nil || gemIDs(s) != "rake-13.2.1 rspec-3.13.0 zeitwerk-2.7.1" {
		t.Errorf("with development: %v %v", s, err)
	}
	_, err = Resolve(context.Background(), fsys, "Gemfile.lock")
	if err == nil || !strings.Contains(err.Error(), "gem mylib: a PATH gem") {
		t.Errorf("gemspec without path gems: %v", err)
	}
}
