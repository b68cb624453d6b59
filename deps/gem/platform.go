package gem

import (
	"fmt"
	"regexp"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
)

// Platform is a Gem::Platform: CPU, OS and version (for Linux the libc:
// "gnu", "musl", "gnueabihf"). The zero value is not a platform; Ruby is
// the "ruby" platform of a pure-Ruby (or compile-from-source) gem.
type Platform struct {
	CPU, OS, Version string
	ruby             bool
}

// Ruby is the platform of gems that are not precompiled.
var Ruby = Platform{ruby: true}

// IsRuby reports whether p is the "ruby" platform.
func (p Platform) IsRuby() bool { return p.ruby }

// String is the platform as RubyGems writes it ("x86_64-linux-musl",
// "ruby").
func (p Platform) String() string {
	if p.ruby {
		return "ruby"
	}
	var parts []string
	for _, s := range []string{p.CPU, p.OS, p.Version} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	if p.CPU == "" {
		return strings.Join(parts, "")
	}
	return strings.Join(parts, "-")
}

// MarshalText is String, for JSON.
func (p Platform) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText is ParsePlatform, for JSON.
func (p *Platform) UnmarshalText(b []byte) error {
	*p = ParsePlatform(string(b))
	return nil
}

var (
	reAIX       = regexp.MustCompile(`aix-?(\d+)?`)
	reDarwin    = regexp.MustCompile(`darwin-?(\d+)?`)
	reMacruby   = regexp.MustCompile(`^macruby-?(\d+(?:\.\d+)*)?`)
	reFreeBSD   = regexp.MustCompile(`freebsd-?(\d+)?`)
	reJava      = regexp.MustCompile(`^java-?(\d+(?:\.\d+)*)?`)
	reDalvik    = regexp.MustCompile(`^dalvik-?(\d+)?$`)
	reDotnet    = regexp.MustCompile(`^dotnet-?(\d+(?:\.\d+)*)?`)
	reLinux     = regexp.MustCompile(`linux-?(\w+)?`)
	reMingw     = regexp.MustCompile(`mingw-?(\w+)?`)
	reMswin     = regexp.MustCompile(`(mswin\d+)(?:[_-](\d+))?`)
	reOpenBSD   = regexp.MustCompile(`openbsd-?(\d+\.\d+)?`)
	reSolaris   = regexp.MustCompile(`solaris-?(\d+\.\d+)?`)
	reX86       = regexp.MustCompile(`i\d86`)
	reTrailDash = regexp.MustCompile(`-+$`)
)

// ParsePlatform parses a platform string as Gem::Platform.new does
// (RubyGems 3.6): "x86_64-linux" → {x86_64 linux ""}, "x86_64-linux-gnu"
// → {x86_64 linux gnu}, "arm64-darwin-23", "java", "ruby".
func ParsePlatform(s string) Platform {
	if s == "" || s == "ruby" {
		return Ruby
	}
	cpu, os, ok := strings.Cut(reTrailDash.ReplaceAllString(s, ""), "-")
	var p Platform
	p.CPU = cpu
	if reX86.MatchString(cpu) {
		p.CPU = "x86"
	}
	if !ok {
		p.CPU = ""
		os = cpu
	}
	sub := func(re *regexp.Regexp) ([]string, bool) {
		m := re.FindStringSubmatch(os)
		return m, m != nil
	}
	switch {
	case reAIX.MatchString(os):
		m, _ := sub(reAIX)
		p.OS, p.Version = "aix", m[1]
	case strings.Contains(os, "cygwin"):
		p.OS = "cygwin"
	case reDarwin.MatchString(os):
		m, _ := sub(reDarwin)
		p.OS, p.Version = "darwin", m[1]
	case os == "macruby":
		p.OS = "macruby"
	case reMacruby.MatchString(os):
		m, _ := sub(reMacruby)
		p.OS, p.Version = "macruby", m[1]
	case reFreeBSD.MatchString(os):
		m, _ := sub(reFreeBSD)
		p.OS, p.Version = "freebsd", m[1]
	case os == "java" || os == "jruby":
		p.OS = "java"
	case reJava.MatchString(os):
		m, _ := sub(reJava)
		p.OS, p.Version = "java", m[1]
	case reDalvik.MatchString(os):
		m, _ := sub(reDalvik)
		p.OS, p.Version = "dalvik", m[1]
	case os == "dotnet":
		p.OS = "dotnet"
	case reDotnet.MatchString(os):
		m, _ := sub(reDotnet)
		p.OS, p.Version = "dotnet", m[1]
	case reLinux.MatchString(os):
		m, _ := sub(reLinux)
		p.OS, p.Version = "linux", m[1]
	case strings.Contains(os, "mingw32"):
		p.OS = "mingw32"
	case reMingw.MatchString(os):
		m, _ := sub(reMingw)
		p.OS, p.Version = "mingw", m[1]
	case reMswin.MatchString(os):
		m, _ := sub(reMswin)
		p.OS, p.Version = m[1], m[2]
		if p.CPU == "" && strings.HasSuffix(m[1], "32") {
			p.CPU = "x86"
		}
	case strings.Contains(os, "netbsdelf"):
		p.OS = "netbsdelf"
	case reOpenBSD.MatchString(os):
		m, _ := sub(reOpenBSD)
		p.OS, p.Version = "openbsd", m[1]
	case reSolaris.MatchString(os):
		m, _ := sub(reSolaris)
		p.OS, p.Version = "solaris", m[1]
	case strings.Contains(os, "wasi"):
		p.OS = "wasi"
	default:
		p.OS = "unknown"
	}
	return p
}

// normalizedLinuxVersion is Gem::Platform#normalized_linux_version:
// the libc without "gnu" and without an "eabi"/"eabihf" suffix ("" for
// glibc).
func (p Platform) normalizedLinuxVersion() string {
	v := strings.TrimPrefix(p.Version, "gnu")
	if s, ok := strings.CutSuffix(v, "eabihf"); ok {
		return s
	}
	return strings.TrimSuffix(v, "eabi")
}

// Matches reports whether a gem built for p installs on the runtime
// platform target: Gem::Platform#=== with p the gem's platform (the
// operation is not symmetric: for Linux a gem without libc matches glibc
// and musl runtimes, a runtime without libc is glibc). The ruby platform
// matches every runtime.
func (p Platform) Matches(target Platform) bool {
	if p.ruby || p == target {
		return true
	}
	if target.ruby {
		return false
	}
	if (p.CPU == "universal" || target.CPU == "universal") && strings.HasPrefix(p.OS, "mingw") && strings.HasPrefix(target.OS, "mingw") {
		return true
	}
	cpu := p.CPU == "" || p.CPU == "universal" || target.CPU == "" || target.CPU == "universal" ||
		p.CPU == target.CPU || (p.CPU == "arm" && strings.HasPrefix(target.CPU, "armv"))
	if !cpu || p.OS != target.OS {
		return false
	}
	switch {
	case p.OS != "linux" && (p.Version == "" || target.Version == ""):
		return true
	case p.OS == "linux" && (p.normalizedLinuxVersion() == target.normalizedLinuxVersion() ||
		target.Version == "musl"+p.Version || target.Version == "musleabi"+p.Version || target.Version == "musleabihf"+p.Version):
		return true
	}
	return p.Version == target.Version
}

// specificity is Gem::Platform.platform_specificity_match: lower is a
// better match of a gem platform p for the runtime platform target.
func (p Platform) specificity(target Platform) int {
	if p == target {
		return -1
	}
	if p.ruby || target.ruby {
		return 1_000_000
	}
	score := 0
	if p.OS != target.OS {
		score++
	}
	switch {
	case p.CPU == target.CPU:
	case p.CPU == "arm" && strings.HasPrefix(target.CPU, "arm"):
	case p.CPU == "" || p.CPU == "universal":
		score += 10
	default:
		score += 20
	}
	switch {
	case p.Version == target.Version:
	case p.Version == "":
		score += 100
	default:
		score += 200
	}
	return score
}

// Libc names the C library of a Linux target, as deps/npm does.
type Libc string

const (
	Glibc Libc = "glibc" // also accepted: "gnu", and "" (the default)
	Musl  Libc = "musl"
)

// PlatformFor is the gem platform a Ruby on the OCI platform p reports
// (Gem::Platform.local), for libc (glibc when empty): linux/amd64 →
// x86_64-linux (or x86_64-linux-musl), linux/arm64 → aarch64-linux,
// linux/arm/v7 → arm-linux-gnueabihf, linux/386 → x86-linux,
// linux/ppc64le → powerpc64le-linux, linux/s390x → s390x-linux,
// linux/riscv64 → riscv64-linux.
//
// For glibc the version is left empty, as RubyGems before 3.6 and the
// official Ruby images report it; "x86_64-linux" and "x86_64-linux-gnu"
// match the same gems.
func PlatformFor(p ocispec.Platform, libc Libc) (Platform, error) {
	if p.OS != "linux" {
		return Platform{}, fmt.Errorf("choosing gem platform: %w: OS %q is not linux", errs.ErrDependency, p.OS)
	}
	var cpu string
	switch p.Architecture {
	case "amd64":
		cpu = "x86_64"
	case "arm64":
		cpu = "aarch64"
	case "arm":
		cpu = "arm"
	case "386":
		cpu = "x86"
	case "ppc64le":
		cpu = "powerpc64le"
	case "s390x":
		cpu = "s390x"
	case "riscv64":
		cpu = "riscv64"
	default:
		return Platform{}, fmt.Errorf("choosing gem platform: %w: no gem platform for architecture %q", errs.ErrDependency, p.Architecture)
	}
	var version string
	switch libc {
	case "", Glibc, "gnu":
		if cpu == "arm" {
			version = "gnueabihf"
		}
	case Musl:
		version = "musl"
		if cpu == "arm" {
			version = "musleabihf"
		}
	default:
		return Platform{}, fmt.Errorf("choosing gem platform: %w: unknown libc %q (want glibc or musl)", errs.ErrDependency, libc)
	}
	return Platform{CPU: cpu, OS: "linux", Version: version}, nil
}
