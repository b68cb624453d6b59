package gem

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/vmbuild/vmbuild/errs"
)

// fullLock has every section, in the format Bundler 2.6 writes.
const fullLock = `GIT
  remote: https://github.com/example/webpush.git
  revision: 9631ac63045cfabddacc69fc06e919b4c13eb913
  ref: 9631ac63045cfabddacc69fc06e919b4c13eb913
  specs:
    webpush (1.1.0)
      hkdf (~> 0.2)
      jwt (~> 2.0)

GIT
  remote: https://github.com/example/multi.git
  revision: 1111111111111111111111111111111111111111
  branch: main
  glob: gems/*/*.gemspec
  submodules: true
  specs:
    multi-a (0.1.0)
    multi-b (0.1.0)
      multi-a (= 0.1.0)

PATH
  remote: engines/local
  specs:
    local_engine (0.0.1)
      rack

GEM
  remote: https://rubygems.org/
  specs:
    hkdf (0.3.0)
    jwt (2.10.1)
      base64
    base64 (0.2.0)
    nokogiri (1.18.0)
      mini_portile2 (~> 2.8.2)
      racc (~> 1.4)
    nokogiri (1.18.0-aarch64-linux-gnu)
      racc (~> 1.4)
    nokogiri (1.18.0-x86_64-linux-gnu)
      racc (~> 1.4)
    nokogiri (1.18.0-x86_64-linux-musl)
      racc (~> 1.4)
    mini_portile2 (2.8.8)
    racc (1.8.1)
    rack (3.1.8)

PLATFORMS
  aarch64-linux-gnu
  ruby
  x86_64-linux-gnu
  x86_64-linux-musl

DEPENDENCIES
  local_engine!
  multi-b!
  nokogiri (~> 1.18, >= 1.18.0)
  webpush!

CHECKSUMS
  base64 (0.2.0) sha256=01b2bd4a1bb7ac6b2f3f3a1d3e6c0de6d07cbee2a1d6c67fc3f80cbc2b0a0eea
  hkdf (0.3.0) sha256=04fc6bd7ab1d2ee3e5d8d2d1f2b7c4a7e6b4ad8ba2b3b8f1a1d2f3e4c5b6a7b8
  jwt (2.10.1)
  local_engine (0.0.1)
  nokogiri (1.18.0) sha256=AbCdEf0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789
  nokogiri (1.18.0-x86_64-linux-gnu) sha256=qrvN7wEjRWeJq83vASNFZ4mrze8BI0VniavN7wEjRWc=
  unknown-gem (9.9.9) sha256=0000000000000000000000000000000000000000000000000000000000000000

RUBY VERSION
   ruby 3.3.6p108

BUNDLED WITH
   2.6.2
`

func TestParseLockfileAllSections(t *testing.T) {
	lf, err := ParseLockfile("Gemfile.lock", []byte(fullLock))
	if err != nil {
		t.Fatal(err)
	}
	if len(lf.Sources) != 4 {
		t.Fatalf("sources = %d, want 4", len(lf.Sources))
	}
	git := lf.Sources[0]
	if git.Kind != SourceGit || git.Remote() != "https://github.com/example/webpush.git" || git.Revision != "9631ac63045cfabddacc69fc06e919b4c13eb913" || git.Ref != git.Revision || git.Line != 1 {
		t.Errorf("GIT source = %+v", git)
	}
	multi := lf.Sources[1]
	if multi.Branch != "main" || multi.Glob != "gems/*/*.gemspec" || !multi.Submodules || len(multi.Specs) != 2 {
		t.Errorf("second GIT source = %+v", multi)
	}
	if p := lf.Sources[2]; p.Kind != SourcePath || p.Remote() != "engines/local" || p.Specs[0].Name != "local_engine" {
		t.Errorf("PATH source = %+v", p)
	}
	gem := lf.Sources[3]
	if gem.Kind != SourceGem || gem.Remote() != "https://rubygems.org/" || len(gem.Specs) != 10 {
		t.Errorf("GEM source = %+v (%d specs)", gem, len(gem.Specs))
	}
	if len(lf.Specs) != 14 {
		t.Errorf("specs = %d, want 14", len(lf.Specs))
	}
	var nokos []string
	for _, s := range lf.Specs {
		if s.Name == "nokogiri" {
			nokos = append(nokos, s.FullName())
		}
	}
	if strings.Join(nokos, " ") != "nokogiri-1.18.0 nokogiri-1.18.0-aarch64-linux-gnu nokogiri-1.18.0-x86_64-linux-gnu nokogiri-1.18.0-x86_64-linux-musl" {
		t.Errorf("nokogiri specs = %v", nokos)
	}
	ruby := lf.Specs[slicesIndex(lf.Specs, "nokogiri-1.18.0")]
	if len(ruby.Deps) != 2 || ruby.Deps[0].Name != "mini_portile2" || ruby.Deps[0].Req.String() != "~> 2.8.2" || ruby.Deps[0].Line != 35 {
		t.Errorf("nokogiri deps = %+v", ruby.Deps)
	}
	var plats []string
	for _, p := range lf.Platforms {
		plats = append(plats, p.String())
	}
	if strings.Join(plats, " ") != "aarch64-linux-gnu ruby x86_64-linux-gnu x86_64-linux-musl" || lf.PlatformsLine != 47 {
		t.Errorf("PLATFORMS = %v (line %d)", plats, lf.PlatformsLine)
	}
	if len(lf.Dependencies) != 4 {
		t.Fatalf("DEPENDENCIES = %+v", lf.Dependencies)
	}
	if d := lf.Dependencies[2]; d.Name != "nokogiri" || d.Pinned || d.Req.String() != ">= 1.18.0, ~> 1.18" {
		t.Errorf("nokogiri dependency = %+v (%s)", d, d.Req)
	}
	if d := lf.Dependencies[3]; d.Name != "webpush" || !d.Pinned || !d.Req.IsDefault() {
		t.Errorf("webpush dependency = %+v", d)
	}
	if !lf.HasChecksums {
		t.Error("no CHECKSUMS")
	}
	for full, want := range map[string]string{
		"base64-0.2.0":                     "01b2bd4a1bb7ac6b2f3f3a1d3e6c0de6d07cbee2a1d6c67fc3f80cbc2b0a0eea",
		"jwt-2.10.1":                       "",
		"nokogiri-1.18.0":                  "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789", // upper-case hex
		"nokogiri-1.18.0-x86_64-linux-gnu": b64hex(t, "qrvN7wEjRWeJq83vASNFZ4mrze8BI0VniavN7wEjRWc="),
	} {
		c, ok := lf.Checksums[full]
		if !ok || c.SHA256 != want {
			t.Errorf("checksum of %s = %+v (present %v), want %q", full, c, ok, want)
		}
	}
	if lf.RubyVersion != "ruby 3.3.6p108" || lf.BundledWith != "2.6.2" {
		t.Errorf("RUBY VERSION %q, BUNDLED WITH %q", lf.RubyVersion, lf.BundledWith)
	}
}

func b64hex(t *testing.T, s string) string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(raw)
}

func TestSHA256Hex(t *testing.T) {
	std := "qrvN7wEjRWeJq83vASNFZ4mrze8BI0VniavN7wEjRWc="
	want := b64hex(t, std)
	for _, in := range []string{std, strings.TrimRight(std, "="), want, strings.ToUpper(want)} {
		if got, err := sha256Hex(in); err != nil || got != want {
			t.Errorf("sha256Hex(%q) = %q, %v", in, got, err)
		}
	}
	raw, _ := hex.DecodeString("fbff" + want[4:])
	urlsafe := base64.URLEncoding.EncodeToString(raw)
	if got, err := sha256Hex(urlsafe); err != nil || got != hex.EncodeToString(raw) || !strings.ContainsAny(urlsafe, "-_") {
		t.Errorf("sha256Hex(%q) = %q, %v", urlsafe, got, err)
	}
	for _, bad := range []string{"abc", want + "00", strings.Repeat("g", 64)} {
		if _, err := sha256Hex(bad); err == nil {
			t.Errorf("sha256Hex(%q) succeeded", bad)
		}
	}
}

func slicesIndex(specs []*Spec, full string) int {
	for i, s := range specs {
		if s.FullName() == full {
			return i
		}
	}
	return -1
}

func TestParseLockfileCRLFAndUnknownSection(t *testing.T) {
	lock := "GEM\r\n  remote: https://rubygems.org/\r\n  specs:\r\n    rack (3.1.8)\r\n\r\nFUTURE THING\r\n  whatever: 1\r\n    deeper\r\n\r\nPLATFORMS\r\n  ruby\r\n\r\nDEPENDENCIES\r\n  rack\r\n"
	lf, err := ParseLockfile("Gemfile.lock", []byte(lock))
	if err != nil {
		t.Fatal(err)
	}
	if len(lf.Specs) != 1 || lf.Specs[0].FullName() != "rack-3.1.8" || len(lf.Unknown) != 1 || lf.Unknown[0] != "FUTURE THING" {
		t.Errorf("got %+v, unknown %v", lf.Specs, lf.Unknown)
	}
}

func TestParseLockfileErrors(t *testing.T) {
	base := "GEM\n  remote: https://rubygems.org/\n  specs:\n    rack (3.1.8)\n\nPLATFORMS\n  ruby\n\nDEPENDENCIES\n  rack\n"
	for _, c := range []struct {
		name, lock string
		line       int
		gem        string
		msg        string
	}{
		{"spec without version", strings.Replace(base, "rack (3.1.8)", "rack", 1), 4, "rack", "no version"},
		{"bad version", strings.Replace(base, "rack (3.1.8)", "rack (3..1)", 1), 4, "rack", "malformed version"},
		{"bad indentation", strings.Replace(base, "    rack (3.1.8)", "     rack (3.1.8)", 1), 4, "", "unexpected indentation"},
		{"garbage option", strings.Replace(base, "  remote: https://rubygems.org/", "  remote https://rubygems.org/", 1), 2, "", "key: value"},
		{"bad dependency requirement", base + "  puma (~> banana)\n", 11, "puma", "malformed requirement"},
		{"dependency with trailing junk", base + "  puma (~> 6.0) extra\n", 11, "", "cannot parse dependency line"},
		{"duplicate dependency", base + "  rack\n", 11, "rack", "twice"},
		{"duplicate spec", strings.Replace(base, "    rack (3.1.8)\n", "    rack (3.1.8)\n    rack (3.1.8)\n", 1), 5, "rack", "locked twice"},
		{"dep line before spec", strings.Replace(base, "    rack (3.1.8)", "      rack (3.1.8)", 1), 4, "", "unexpected indentation"},
		{"bad checksum", base + "\nCHECKSUMS\n  rack (3.1.8) sha256=xyz\n", 13, "rack", "not a sha256"},
		{"checksum without version", base + "\nCHECKSUMS\n  rack sha256=abc\n", 13, "", "cannot parse checksum line"},
		{"conflict marker", base + "<<<<<<< HEAD\n", 11, "", "merge conflict"},
		{"not a header", base + "Dependencies:\n", 11, "", "not a section header"},
		{"no specs line", "GEM\n  remote: https://rubygems.org/\n\nPLATFORMS\n  ruby\n", 1, "", "no \"  specs:\" line"},
		{"indented before section", "  rack\n", 1, "", "before any section"},
		{"bad BUNDLED WITH", base + "\nBUNDLED WITH\n   two\n", 13, "", "BUNDLED WITH"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseLockfile("app/Gemfile.lock", []byte(c.lock))
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("err = %v, want *InputError", err)
			}
			if ie.File != "app/Gemfile.lock" || ie.Line != c.line || ie.Gem != c.gem || !strings.Contains(ie.Msg, c.msg) {
				t.Errorf("err = %q (%+v), want line %d gem %q msg ~ %q", err, ie, c.line, c.gem, c.msg)
			}
			if !errors.Is(err, errs.ErrDependency) {
				t.Error("not ErrDependency")
			}
		})
	}
}
