// Package deps pins the packages a build installs — npm and Yarn
// tarballs, gems, Debian .debs — Nix-style: each is one fixed-output
// download, named by URL and sha256 before the build, fetched by BuildKit's
// HTTP source with its checksum, and installed with the network off.
//
// The subpackages read each ecosystem's own lockfile or index and resolve
// the set a step needs to []Package:
//
//	deps/npm   package-lock.json v2/v3
//	deps/yarn  yarn.lock, v1 and Berry (workspaces focus, production)
//	deps/gem   Gemfile.lock (+ the Gemfile's groups)
//	deps/deb   a Debian suite: InRelease (signature checked), Packages,
//	           the Depends/Pre-Depends closure
//
// This package holds what they share: the Package pin, package URLs
// (purls), Subresource-Integrity checks and the lock-time Fetcher that
// downloads a package once to hash it where the lockfile has no usable
// hash.
package deps

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/vmbuild/vmbuild/internal/redact"
)

// Ecosystem names a package type, as purls spell it.
type Ecosystem string

const (
	NPM Ecosystem = "npm"
	Gem Ecosystem = "gem"
	Deb Ecosystem = "deb"
)

// Package is one pinned download. It is a value: copy it freely.
type Package struct {
	// Name is the ecosystem's name: "express", "@types/node", "nokogiri",
	// "libc6".
	Name    string `json:"name"`
	Version string `json:"version"`
	// Platform is a gem's platform ("x86_64-linux"; empty for pure-Ruby
	// gems) or a .deb's architecture ("amd64", "all").
	Platform string `json:"platform,omitempty"`
	// URL is where the package is downloaded from. It never carries
	// credentials.
	URL string `json:"url"`
	// SHA256 is the hex sha256 of the download: BuildKit's checksum.
	SHA256 string `json:"sha256"`
	// Size in bytes, where known.
	Size int64 `json:"size,omitempty"`
	// Integrity is the lockfile's own integrity string (npm's SRI
	// "sha512-…"), kept so a reader can check it was honoured. Empty where
	// the lockfile has none.
	Integrity string `json:"integrity,omitempty"`
	// Path is where the download goes in the tree handed to the install
	// step (a registry mirror layout, vendor/cache, …): relative, slash
	// separated, unique within a set.
	Path string `json:"path"`
}

// ID is "name@version" (with "-platform" for a platform gem), the name
// errors and diffs use.
func (p Package) ID() string {
	if p.Platform != "" && p.Platform != "ruby" {
		return p.Name + "@" + p.Version + "-" + p.Platform
	}
	return p.Name + "@" + p.Version
}

// Digest is the download's digest as BuildKit and OCI spell it.
func (p Package) Digest() string { return "sha256:" + p.SHA256 }

// Purl is the package URL (github.com/package-url/purl-spec) of p in eco:
//
//	pkg:npm/%40types/node@20.1.0
//	pkg:gem/nokogiri@1.16.0?platform=x86_64-linux
//	pkg:deb/debian/libc6@2.41-12?arch=amd64
func (p Package) Purl(eco Ecosystem) string {
	var b strings.Builder
	b.WriteString("pkg:")
	b.WriteString(string(eco))
	b.WriteByte('/')
	name := p.Name
	switch eco {
	case NPM:
		if ns, n, ok := strings.Cut(name, "/"); ok && strings.HasPrefix(ns, "@") {
			b.WriteString(purlEscape(ns))
			b.WriteByte('/')
			name = n
		}
	case Deb:
		b.WriteString("debian/")
	}
	b.WriteString(purlEscape(name))
	b.WriteByte('@')
	b.WriteString(purlEscape(p.Version))
	switch {
	case eco == Deb && p.Platform != "":
		b.WriteString("?arch=" + purlEscape(p.Platform))
	case eco == Gem && p.Platform != "" && p.Platform != "ruby":
		b.WriteString("?platform=" + purlEscape(p.Platform))
	}
	return b.String()
}

// purlEscape percent-encodes a purl component (the spec's rules: '@' and
// everything outside the unreserved set; '+' too, as Debian versions have
// it).
func purlEscape(s string) string {
	return strings.NewReplacer("+", "%2B", "@", "%40").Replace(url.PathEscape(s))
}

// Validate checks a pin's fields: a name, a version, an http(s) URL
// without credentials, a 64-hex sha256 and a clean relative path.
func (p Package) Validate() error {
	switch {
	case p.Name == "":
		return fmt.Errorf("package with URL %s has no name", p.URL)
	case p.Version == "":
		return fmt.Errorf("package %s has no version", p.Name)
	case !IsSHA256(p.SHA256):
		return fmt.Errorf("package %s: sha256 %q is not 64 hex digits", p.ID(), p.SHA256)
	case p.Path == "" || strings.HasPrefix(p.Path, "/") || strings.Contains("/"+p.Path+"/", "/../") || strings.Contains("/"+p.Path+"/", "/./"):
		return fmt.Errorf("package %s: path %q is not a clean relative path", p.ID(), p.Path)
	}
	u, err := url.Parse(p.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("package %s: URL %q is not an http(s) URL", p.ID(), RedactURL(p.URL))
	}
	if u.User != nil {
		return fmt.Errorf("package %s: URL %s carries credentials; configure them for the registry instead", p.ID(), RedactURL(p.URL))
	}
	return nil
}

// IsSHA256 reports whether s is 64 lower-case hex digits.
func IsSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Sort orders packages by Path (the order locks and graphs use), in
// place, and returns them.
func Sort(ps []Package) []Package {
	sort.Slice(ps, func(i, j int) bool { return ps[i].Path < ps[j].Path })
	return ps
}

// RedactURL is u for messages: redact.Text, without user info, query or
// fragment.
func RedactURL(u string) string { return redact.Text(u) }
