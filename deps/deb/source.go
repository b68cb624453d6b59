package deb

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const (
	// DefaultMirror is Debian's CDN.
	DefaultMirror = "https://deb.debian.org/debian"
	// DefaultKeyring is the keyring Debian's debian-archive-keyring
	// package installs.
	DefaultKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
)

// Source names one Debian suite to resolve packages from. It is what a
// recipe says; the zero values of its optional fields are the documented
// defaults.
type Source struct {
	// Mirror is the archive's base URL, the directory holding dists/ and
	// pool/. Default DefaultMirror. A snapshot (SnapshotMirror) works the
	// same way.
	Mirror string
	// Suite is a suite or codename: "sid", "unstable", "trixie",
	// "stable". Required.
	Suite string
	// Components to read. Default ["main"].
	Components []string
	// Arch is a Debian architecture ("amd64", "arm64"; see ArchForGOARCH).
	// Required. Arch "all" packages are always included.
	Arch string
	// Keyring is the OpenPGP keyring (binary or ASCII-armored) that must
	// have signed InRelease. Default DefaultKeyring.
	Keyring string
	// SignedBy, if set, restricts the accepted signers to these
	// fingerprints (40 hex digits, of the primary key or the signing
	// subkey): the lock can pin the key it saw.
	SignedBy []string
	// AllowExpired accepts an InRelease whose Valid-Until has passed (apt's
	// Acquire::Check-Valid-Until=false). Valid-Until exists against freeze
	// attacks, where a mirror keeps serving an old, validly signed index
	// to hide security updates; waive it only for a suite that is not
	// refreshed (a snapshot, an archived release, sid between dinstall
	// runs on a stale mirror). The Release reports Expired when it was
	// used.
	AllowExpired bool
}

func (s Source) withDefaults() Source {
	if s.Mirror == "" {
		s.Mirror = DefaultMirror
	}
	s.Mirror = strings.TrimRight(s.Mirror, "/")
	if len(s.Components) == 0 {
		s.Components = []string{"main"}
	}
	if s.Keyring == "" {
		s.Keyring = DefaultKeyring
	}
	return s
}

// Validate checks the fields a caller must set and the shape of the
// others.
func (s Source) Validate() error {
	s = s.withDefaults()
	u, err := url.Parse(s.Mirror)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("mirror %q is not an http(s) URL", s.Mirror)
	}
	if u.User != nil || u.RawQuery != "" {
		return fmt.Errorf("mirror %q must not carry credentials or a query", s.Mirror)
	}
	if !validName(s.Suite) {
		return fmt.Errorf("suite %q is not a suite or codename (sid, trixie, stable, …)", s.Suite)
	}
	if !validName(s.Arch) || s.Arch == "all" {
		return fmt.Errorf("architecture %q is not a Debian architecture (amd64, arm64, …)", s.Arch)
	}
	for _, c := range s.Components {
		if !validName(strings.ReplaceAll(c, "/", "-")) {
			return fmt.Errorf("component %q is not a component name", c)
		}
	}
	for _, f := range s.SignedBy {
		if len(normFingerprint(f)) != 40 {
			return fmt.Errorf("signed-by %q is not a 40-hex-digit fingerprint", f)
		}
	}
	return nil
}

func validName(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '+') {
			return false
		}
	}
	return true
}

func normFingerprint(s string) string {
	return strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), " ", ""))
}

// String is "sid/main amd64" or "trixie/main,contrib arm64", the name
// errors use.
func (s Source) String() string {
	s = s.withDefaults()
	return s.Suite + "/" + strings.Join(s.Components, ",") + " " + s.Arch
}

// SnapshotMirror is snapshot.debian.org's archive of Debian as it was at
// t (rounded down to the second), usable as Source.Mirror for a lock that
// must stay fetchable after packages leave the live archive. Snapshots'
// InRelease files are old by nature: pair it with AllowExpired.
func SnapshotMirror(t time.Time) string {
	return "https://snapshot.debian.org/archive/debian/" + t.UTC().Format("20060102T150405Z")
}

// ArchForGOARCH maps a Go GOARCH to the Debian architecture name (amd64,
// arm64, armhf for arm (v7), i386 for 386, ppc64el, riscv64, s390x,
// loong64, mips64el). ok is false when Debian has no port for it.
func ArchForGOARCH(goarch string) (arch string, ok bool) {
	switch goarch {
	case "amd64", "arm64", "riscv64", "s390x", "loong64", "mips64le":
		if goarch == "mips64le" {
			return "mips64el", true
		}
		return goarch, true
	case "arm":
		return "armhf", true
	case "386":
		return "i386", true
	case "ppc64le":
		return "ppc64el", true
	}
	return "", false
}

// Option configures Open and FetchRelease.
type Option func(*config)

type config struct {
	client    *http.Client
	cacheDir  string
	log       *slog.Logger
	now       func() time.Time
	maxIndex  int64
	userAgent string
}

func newConfig(opts []Option) *config {
	c := &config{
		client:    &http.Client{Timeout: 5 * time.Minute},
		log:       slog.New(slog.DiscardHandler),
		now:       time.Now,
		maxIndex:  1 << 30,
		userAgent: "vmbuild",
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// WithHTTPClient sets the client for the archive. Default: a client
// honouring the proxy environment with a 5-minute timeout.
func WithHTTPClient(c *http.Client) Option {
	return func(cf *config) {
		if c != nil {
			cf.client = c
		}
	}
}

// WithCacheDir keeps verified Packages files in dir/sha256/<hex>, so
// locking again against an unchanged index does not download it again
// (the InRelease is always fetched). Default: no cache.
func WithCacheDir(dir string) Option { return func(c *config) { c.cacheDir = dir } }

// WithLogger receives one line per download and per decision worth
// knowing (an expired index accepted, an alternative chosen). Default:
// discard.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.log = l
		}
	}
}

// WithClock sets the clock that Valid-Until, Date and key expiry are
// checked against. Default time.Now.
func WithClock(now func() time.Time) Option {
	return func(c *config) {
		if now != nil {
			c.now = now
		}
	}
}

// WithMaxIndexSize bounds one Packages file, decompressed. Default 1 GiB
// (sid's main/binary-amd64 is 65 MB).
func WithMaxIndexSize(n int64) Option {
	return func(c *config) {
		if n > 0 {
			c.maxIndex = n
		}
	}
}
