package gem

import (
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestParsePlatform(t *testing.T) {
	// Expectations from Gem::Platform.new (RubyGems 3.6).
	for _, c := range []struct {
		in           string
		cpu, os, ver string
		str          string
	}{
		{"x86_64-linux", "x86_64", "linux", "", "x86_64-linux"},
		{"x86_64-linux-gnu", "x86_64", "linux", "gnu", "x86_64-linux-gnu"},
		{"x86_64-linux-musl", "x86_64", "linux", "musl", "x86_64-linux-musl"},
		{"aarch64-linux-gnu", "aarch64", "linux", "gnu", "aarch64-linux-gnu"},
		{"arm-linux-gnueabihf", "arm", "linux", "gnueabihf", "arm-linux-gnueabihf"},
		{"i686-linux", "x86", "linux", "", "x86-linux"},
		{"arm64-darwin-23", "arm64", "darwin", "23", "arm64-darwin-23"},
		{"x86_64-darwin", "x86_64", "darwin", "", "x86_64-darwin"},
		{"x64-mingw-ucrt", "x64", "mingw", "ucrt", "x64-mingw-ucrt"},
		{"x64-mingw32", "x64", "mingw32", "", "x64-mingw32"},
		{"java", "", "java", "", "java"},
		{"universal-java-11", "universal", "java", "11", "universal-java-11"},
		{"mswin32", "x86", "mswin32", "", "x86-mswin32"},
	} {
		p := ParsePlatform(c.in)
		if p.CPU != c.cpu || p.OS != c.os || p.Version != c.ver || p.String() != c.str {
			t.Errorf("ParsePlatform(%q) = %+v %q, want %s/%s/%s %q", c.in, p, p.String(), c.cpu, c.os, c.ver, c.str)
		}
	}
	if !ParsePlatform("ruby").IsRuby() || !ParsePlatform("").IsRuby() {
		t.Error("ruby is not Ruby")
	}
}

func TestPlatformMatches(t *testing.T) {
	// Gem::Platform#=== with the gem platform as receiver.
	for _, c := range []struct {
		gem, runtime string
		want         bool
	}{
		{"ruby", "x86_64-linux", true},
		{"x86_64-linux", "x86_64-linux", true},
		{"x86_64-linux-gnu", "x86_64-linux", true}, // gnu is the no-libc default
		{"x86_64-linux", "x86_64-linux-gnu", true},
		{"x86_64-linux", "x86_64-linux-musl", true}, // RubyGems: a libc-less linux gem runs on musl
		{"x86_64-linux-musl", "x86_64-linux", false},
		{"x86_64-linux-gnu", "x86_64-linux-musl", false},
		{"x86_64-linux-musl", "x86_64-linux-musl", true},
		{"aarch64-linux", "x86_64-linux", false},
		{"aarch64-linux-gnu", "aarch64-linux", true},
		{"arm-linux", "arm-linux-gnueabihf", true},
		{"arm-linux-gnu", "arm-linux-gnueabihf", true},
		{"arm-linux-musl", "arm-linux-musleabihf", true}, // "eabihf" is stripped: musl == musl
		{"arm-linux", "armv7l-linux-eabihf", true},
		{"x86_64-darwin", "x86_64-linux", false},
		{"java", "x86_64-linux", false},
		{"x86_64-linux", "ruby", false},
	} {
		g := ParsePlatform(c.gem)
		if got := g.Matches(ParsePlatform(c.runtime)); got != c.want {
			t.Errorf("%s === %s: %v, want %v", c.gem, c.runtime, got, c.want)
		}
	}
}

func specs(t *testing.T, name string, plats ...string) []*Spec {
	t.Helper()
	var out []*Spec
	for i, p := range plats {
		out = append(out, &Spec{Name: name, Version: mustVersion(t, "1.18.0"), Platform: ParsePlatform(p), Line: i + 1})
	}
	return out
}

func TestChoose(t *testing.T) {
	all := []string{"ruby", "aarch64-linux-gnu", "aarch64-linux-musl", "arm-linux-gnu", "arm64-darwin", "x86_64-linux-gnu", "x86_64-linux-musl", "x86_64-darwin"}
	old := []string{"ruby", "aarch64-linux", "x86_64-linux", "arm64-darwin"}
	for _, c := range []struct {
		locked []string
		target string
		force  bool
		want   string
	}{
		{all, "x86_64-linux", false, "x86_64-linux-gnu"},
		{all, "x86_64-linux-musl", false, "x86_64-linux-musl"},
		{all, "aarch64-linux", false, "aarch64-linux-gnu"},
		{all, "aarch64-linux-musl", false, "aarch64-linux-musl"},
		{all, "arm-linux-gnueabihf", false, "arm-linux-gnu"},
		{all, "x86_64-linux", true, "ruby"},
		{old, "x86_64-linux", false, "x86_64-linux"},
		{old, "x86_64-linux-musl", false, "x86_64-linux"}, // as Bundler does; see Matches
		{old, "s390x-linux", false, "ruby"},
		{[]string{"ruby"}, "aarch64-linux-musl", false, "ruby"},
		{[]string{"x86_64-linux", "x86_64-linux-gnu"}, "x86_64-linux", false, "x86_64-linux"},
		{[]string{"x86_64-linux", "x86_64-linux-gnu"}, "x86_64-linux-gnu", false, "x86_64-linux-gnu"},
		{[]string{"aarch64-linux"}, "x86_64-linux", false, ""},
		{[]string{"x86_64-linux-gnu"}, "x86_64-linux", true, ""},
	} {
		got := choose(specs(t, "nokogiri", c.locked...), ParsePlatform(c.target), c.force)
		var gs []string
		for _, s := range got {
			gs = append(gs, s.Platform.String())
		}
		if strings.Join(gs, ",") != c.want {
			t.Errorf("choose(%v, %s, force=%v) = %v, want %s", c.locked, c.target, c.force, gs, c.want)
		}
	}
}

func TestPlatformFor(t *testing.T) {
	for _, c := range []struct {
		arch, variant string
		libc          Libc
		want          string
	}{
		{"amd64", "", "", "x86_64-linux"},
		{"amd64", "", Musl, "x86_64-linux-musl"},
		{"arm64", "v8", Glibc, "aarch64-linux"},
		{"arm64", "v8", "gnu", "aarch64-linux"},
		{"arm64", "", Musl, "aarch64-linux-musl"},
		{"arm", "v7", "", "arm-linux-gnueabihf"},
		{"arm", "v7", Musl, "arm-linux-musleabihf"},
		{"386", "", "", "x86-linux"},
		{"ppc64le", "", "", "powerpc64le-linux"},
		{"s390x", "", "", "s390x-linux"},
		{"riscv64", "", "", "riscv64-linux"},
	} {
		p, err := PlatformFor(ocispec.Platform{OS: "linux", Architecture: c.arch, Variant: c.variant}, c.libc)
		if err != nil || p.String() != c.want {
			t.Errorf("PlatformFor(%s/%s, %q) = %s, %v; want %s", c.arch, c.variant, c.libc, p, err, c.want)
		}
		// what a Ruby there reports parses back to the same platform
		if back := ParsePlatform(p.String()); back != p {
			t.Errorf("ParsePlatform(%s) = %+v, want %+v", p, back, p)
		}
	}
	if _, err := PlatformFor(ocispec.Platform{OS: "windows", Architecture: "amd64"}, ""); err == nil {
		t.Error("windows accepted")
	}
	if _, err := PlatformFor(ocispec.Platform{OS: "linux", Architecture: "mips64le"}, ""); err == nil {
		t.Error("mips64le accepted")
	}
	if _, err := PlatformFor(ocispec.Platform{OS: "linux", Architecture: "amd64"}, "uclibc"); err == nil {
		t.Error("uclibc accepted")
	}
}
