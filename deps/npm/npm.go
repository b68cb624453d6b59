// Package npm resolves an npm package-lock.json (lockfileVersion 2 and 3)
// to the registry tarballs an `npm ci` needs, and holds what the npm
// registry's other clients share with it (package deps/yarn builds on it):
// the resolved Set, scope options, npm's os/cpu/libc platform check, the
// registry tarball layout, .npmrc reading and the pin of the package
// manager itself from a package.json "packageManager" field.
//
// Resolving is pure: it reads the source tree (an fs.FS) and never touches
// the network. Pinning (Set.Pin) downloads each tarball once through
// deps.Fetcher to record its sha256, checking the lockfile's integrity.
package npm

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/errs"
)

// Managers, as Set.Manager spells them.
const (
	ManagerNPM       = "npm"
	ManagerYarnV1    = "yarn-v1"
	ManagerYarnBerry = "yarn-berry"
)

// DefaultRegistry is npm's default registry.
const DefaultRegistry = "https://registry.npmjs.org"

// Set is what a lockfile resolves to for one install step.
type Set struct {
	// Manager is "npm", "yarn-v1" or "yarn-berry".
	Manager string `json:"manager"`
	// Lockfile is the lockfile's path in the tree; LockfileVersion its
	// format version (npm's lockfileVersion, Berry's __metadata.version,
	// 1 for Yarn v1).
	Lockfile        string `json:"lockfile"`
	LockfileVersion int    `json:"lockfileVersion"`
	// Registry is the registry the lockfile's packages come from, as
	// configured in the tree or by Options.Registry (base URL, no trailing
	// slash). Scopes maps "@scope" to a scope's own registry.
	Registry string            `json:"registry"`
	Scopes   map[string]string `json:"scopes,omitempty"`
	// Packages are the downloads, sorted by Path, one per Path. Path is the
	// file's place in the mirror the install reads: the registry layout
	// NAME/-/BASENAME-VERSION.tgz for npm and Yarn Berry, Yarn v1's
	// offline-mirror file name for Yarn v1.
	Packages []deps.Package `json:"packages"`
	// Tool is the package manager itself, when package.json pins it with
	// "packageManager". Nil otherwise.
	Tool *Tool `json:"tool,omitempty"`
	// Credentials names where the tree configures registry credentials
	// (".npmrc:3: //npm.example.com/:_authToken"), never their values.
	// vmbuild does not use them; supplying them is the caller's business.
	Credentials []string `json:"credentials,omitempty"`
}

// Options scope a resolution the way the package manager's own flags do.
// The zero value resolves everything for linux/amd64 with glibc.
type Options struct {
	// Production leaves out devDependencies (npm ci --omit=dev, yarn
	// workspaces focus --production, yarn install --production).
	Production bool
	// Workspaces restricts the install to these workspaces, by name or by
	// path (npm ci --workspace X; yarn workspaces focus X). Empty: the
	// whole project.
	Workspaces []string
	// Platform is the target the install runs on: optional packages whose
	// os/cpu/libc do not match it are left out. Default linux/amd64.
	Platform ocispec.Platform
	// Libc is the target's C library, "glibc" or "musl", for packages that
	// declare one. Default "glibc" on linux.
	Libc string
	// Registry overrides the registry configured in the tree (.npmrc,
	// .yarnrc.yml). For npm, resolved URLs on registry.npmjs.org move to
	// it, as npm's replace-registry-host=npmjs does.
	Registry string
	// Logger receives debug lines. Default: discard.
	Logger *slog.Logger
}

// Log returns the logger, silent by default.
func (o Options) Log() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Target is a platform as npm names it: process.platform, process.arch and
// the libc family.
type Target struct {
	OS   string // linux, darwin, win32, …
	CPU  string // x64, arm64, ia32, …
	Libc string // glibc, musl; empty off linux
}

var goosToNode = map[string]string{
	"linux": "linux", "darwin": "darwin", "windows": "win32", "freebsd": "freebsd",
	"openbsd": "openbsd", "netbsd": "netbsd", "aix": "aix", "android": "android",
	"solaris": "sunos", "illumos": "sunos",
}

var goarchToNode = map[string]string{
	"amd64": "x64", "arm64": "arm64", "arm": "arm", "386": "ia32",
	"ppc64le": "ppc64", "ppc64": "ppc64", "s390x": "s390x", "riscv64": "riscv64",
	"loong64": "loong64", "mips64le": "mips64el", "mips64": "mips64",
	"mipsle": "mipsel", "mips": "mips",
}

// TargetOf maps an OCI platform (GOOS/GOARCH names) to npm's names.
// libc is "glibc" or "musl" (default "glibc" on linux).
func TargetOf(p ocispec.Platform, libc string) (Target, error) {
	if p.OS == "" && p.Architecture == "" {
		p.OS, p.Architecture = "linux", "amd64"
	}
	t := Target{OS: goosToNode[p.OS], CPU: goarchToNode[p.Architecture]}
	if t.OS == "" {
		return Target{}, fmt.Errorf("mapping platform %s/%s: %w: no Node.js os for %q", p.OS, p.Architecture, errs.ErrDependency, p.OS)
	}
	if t.CPU == "" {
		return Target{}, fmt.Errorf("mapping platform %s/%s: %w: no Node.js cpu for %q", p.OS, p.Architecture, errs.ErrDependency, p.Architecture)
	}
	if t.OS == "linux" {
		switch libc {
		case "":
			t.Libc = "glibc"
		case "glibc", "musl":
			t.Libc = libc
		default:
			return Target{}, fmt.Errorf("mapping platform %s/%s: %w: libc %q is neither glibc nor musl", p.OS, p.Architecture, errs.ErrDependency, libc)
		}
	}
	return t, nil
}

// Matches reports whether a package declaring os, cpu and libc (npm's
// package.json fields; nil means any) installs on t, with npm's rules
// (npm-install-checks): "!x" excludes x, "any" allows all, and a libc
// constraint fails off linux.
func (t Target) Matches(os, cpu, libc []string) bool {
	if len(os) > 0 && !checkList(t.OS, os) {
		return false
	}
	if len(cpu) > 0 && !checkList(t.CPU, cpu) {
		return false
	}
	if len(libc) > 0 {
		if t.OS != "linux" {
			return false
		}
		return checkList(t.Libc, libc)
	}
	return true
}

func (t Target) String() string {
	s := t.OS + "/" + t.CPU
	if t.Libc != "" {
		s += " (" + t.Libc + ")"
	}
	return s
}

func checkList(value string, list []string) bool {
	if len(list) == 1 && list[0] == "any" {
		return true
	}
	negated, match := 0, false
	for _, e := range list {
		if neg, ok := strings.CutPrefix(e, "!"); ok {
			negated++
			if neg == value {
				return false
			}
		} else if e == value {
			match = true
		}
	}
	return match || negated == len(list)
}

// Basename is a package name without its @scope/.
func Basename(name string) string {
	if strings.HasPrefix(name, "@") {
		if _, b, ok := strings.Cut(name, "/"); ok {
			return b
		}
	}
	return name
}

// Scope is "@scope" for a scoped name, "" otherwise.
func Scope(name string) string {
	if strings.HasPrefix(name, "@") {
		if s, _, ok := strings.Cut(name, "/"); ok {
			return s
		}
	}
	return ""
}

// TarballPath is the registry layout of a package's tarball:
// NAME/-/BASENAME-VERSION.tgz ("@types/node/-/node-20.1.0.tgz").
func TarballPath(name, version string) string {
	return name + "/-/" + Basename(name) + "-" + version + ".tgz"
}

// TarballURL is a package's tarball on a registry (base URL, with or
// without a trailing slash).
func TarballURL(registry, name, version string) string {
	return strings.TrimSuffix(registry, "/") + "/" + TarballPath(name, version)
}

// ValidName checks an npm package name enough to keep it a safe path:
// "name" or "@scope/name", no empty, "." or ".." parts, no backslashes,
// spaces, control or URL-special characters.
func ValidName(name string) bool {
	parts := strings.Split(name, "/")
	switch len(parts) {
	case 1:
		if strings.HasPrefix(name, "@") {
			return false
		}
	case 2:
		if !strings.HasPrefix(parts[0], "@") || len(parts[0]) < 2 {
			return false
		}
	default:
		return false
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || strings.ContainsAny(p, "\\ \t\r\n?#%:") {
			return false
		}
	}
	return true
}

// ValidVersion checks a version is safe in a file name.
func ValidVersion(v string) bool {
	return v != "" && v != "." && v != ".." && !strings.ContainsAny(v, "/\\ \t\r\n?#%")
}

// NormalizeRegistry checks a registry URL (http or https, no credentials,
// query or fragment) and returns it without a trailing slash.
func NormalizeRegistry(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("registry %q is not an http(s) URL", deps.RedactURL(s))
	}
	if u.User != nil {
		return "", fmt.Errorf("registry %s carries credentials in its URL; configure them outside the tree", deps.RedactURL(s))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("registry %s has a query or fragment", deps.RedactURL(s))
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}

// addPackage adds p to the set being built, keyed by Path: the same Path
// twice is fine when URL and integrity agree, an error otherwise.
type collector struct {
	byPath map[string]int
	pkgs   []deps.Package
}

func (c *collector) add(p deps.Package, where string) error {
	if c.byPath == nil {
		c.byPath = map[string]int{}
	}
	if i, ok := c.byPath[p.Path]; ok {
		q := c.pkgs[i]
		if q.URL != p.URL || (q.Integrity != "" && p.Integrity != "" && q.Integrity != p.Integrity) {
			return fmt.Errorf("%s: %w: package %s is resolved twice, from %s and %s", where, errs.ErrDependency, p.ID(), deps.RedactURL(q.URL), deps.RedactURL(p.URL))
		}
		if q.Integrity == "" {
			c.pkgs[i].Integrity = p.Integrity
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

// Pin downloads each package (and the tool) once with f, checks it against
// the lockfile's integrity, and records its sha256 and size. The Set's
// packages are complete pins afterwards (deps.Package.Validate passes).
func (s *Set) Pin(ctx context.Context, f *deps.Fetcher) error {
	if f == nil {
		f = &deps.Fetcher{}
	}
	reqs := make([]deps.Request, len(s.Packages))
	for i, p := range s.Packages {
		var want deps.Integrity
		if p.Integrity != "" {
			w, err := deps.ParseSRI(p.Integrity, s.Lockfile+" integrity")
			if err != nil {
				return fmt.Errorf("pinning package %s: %w: %v", p.ID(), errs.ErrDependency, err)
			}
			want = w
		}
		reqs[i] = deps.Request{ID: p.ID(), URL: p.URL, Want: want}
	}
	sums, err := f.Hash(ctx, reqs)
	if err != nil {
		return fmt.Errorf("pinning %s packages: %w", s.Lockfile, err)
	}
	for i := range s.Packages {
		s.Packages[i].SHA256 = sums[i].SHA256
		s.Packages[i].Size = sums[i].Size
		if err := s.Packages[i].Validate(); err != nil {
			return fmt.Errorf("pinning package %s: %w: %v", s.Packages[i].ID(), errs.ErrDependency, err)
		}
	}
	if s.Tool != nil {
		if err := s.Tool.Pin(ctx, f); err != nil {
			return err
		}
	}
	return nil
}

// SHA1Integrity spells a hex sha1 (Yarn v1's resolved URL fragment) as
// SRI ("sha1-<base64>"), the form Package.Integrity holds.
func SHA1Integrity(hexDigest string) (string, error) {
	raw, err := hex.DecodeString(hexDigest)
	if err != nil || len(raw) != 20 {
		return "", fmt.Errorf("sha1 %q is not 40 hex digits", hexDigest)
	}
	return "sha1-" + base64.StdEncoding.EncodeToString(raw), nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
