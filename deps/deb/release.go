package deb

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/errs"
)

// maxInRelease bounds the InRelease download (sid's is 190 KB).
const maxInRelease = 16 << 20

// maxFutureDate is how far a Release's Date may lie ahead of the clock
// (apt refuses a "not valid yet" Release; we allow for clock skew).
const maxFutureDate = 10 * time.Minute

// FileSum is a Release file's entry for one index file.
type FileSum struct {
	Size   int64
	SHA256 string
}

// Release is a verified InRelease: the fields the resolver and the lock
// need.
type Release struct {
	// URL the InRelease was fetched from.
	URL string
	// SHA256 of the InRelease file exactly as fetched: what a lock
	// records to name the index it resolved against.
	SHA256 string

	Origin, Label string
	// Suite ("unstable", "stable") and Codename ("sid", "trixie").
	Suite, Codename string
	Version         string
	Date            time.Time
	// ValidUntil is zero when the Release has none (trixie's has none).
	ValidUntil    time.Time
	Architectures []string
	Components    []string
	// AcquireByHash: index files can be fetched by their sha256 under
	// by-hash/SHA256/, which never changes under a concurrent mirror
	// update.
	AcquireByHash bool
	// NoArchAllPackages is true with "No-Support-for-Architecture-all:
	// Packages": arch "all" packages are listed in each binary-ARCH
	// index, not in binary-all.
	NoArchAllPackages bool
	// Files is the SHA256 list: path relative to dists/SUITE → size and
	// sha256.
	Files map[string]FileSum

	// Signer is the fingerprint (40 upper-case hex digits) of the primary
	// key whose signature verified; SigningKey that of the key (primary
	// or subkey) that made it; SignedAt the signature's time.
	Signer, SigningKey string
	SignerName         string
	SignedAt           time.Time
	// Expired is true when Valid-Until had passed and Source.AllowExpired
	// accepted it anyway. A lock should record that.
	Expired bool
}

// FetchRelease downloads dists/SUITE/InRelease, verifies its signature
// against the source's keyring and its validity window against the clock,
// and parses it. A bad signature, a signer outside SignedBy, or an
// expired index (without AllowExpired) is an *errs.VerificationError.
func FetchRelease(ctx context.Context, src Source, opts ...Option) (*Release, error) {
	return fetchRelease(ctx, src, newConfig(opts))
}

func fetchRelease(ctx context.Context, src Source, c *config) (*Release, error) {
	if err := src.Validate(); err != nil {
		return nil, fmt.Errorf("fetching Debian index: %w: %v", errs.ErrDependency, err)
	}
	src = src.withDefaults()
	keyring, err := LoadKeyring(src.Keyring)
	if err != nil {
		return nil, err
	}
	u := src.Mirror + "/dists/" + src.Suite + "/InRelease"
	start := time.Now()
	body, err := httpGet(ctx, c, u, maxInRelease)
	if err != nil {
		return nil, fmt.Errorf("fetching InRelease of %s: %w", src.Suite, err)
	}
	c.log.Debug("fetched InRelease", "url", u, "bytes", len(body), "took", time.Since(start).Round(time.Millisecond))
	return VerifyRelease(body, u, src, keyring, c.now())
}

// LoadKeyring reads an OpenPGP keyring file: a binary keyring (.gpg,
// .pgp) or an ASCII-armored one (.asc).
func LoadKeyring(path string) (openpgp.EntityList, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading keyring %s: %w: %v", path, errs.ErrKey, err)
	}
	var el openpgp.EntityList
	if bytes.Contains(b[:min(len(b), 1024)], []byte("-----BEGIN PGP")) {
		el, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
	} else {
		el, err = openpgp.ReadKeyRing(bytes.NewReader(b))
	}
	if err != nil {
		return nil, fmt.Errorf("reading keyring %s: %w: %v", path, errs.ErrKey, err)
	}
	if len(el) == 0 {
		return nil, fmt.Errorf("reading keyring %s: %w: no keys", path, errs.ErrKey)
	}
	return el, nil
}

// VerifyRelease verifies an InRelease file's clearsigned signature against
// keyring, parses the signed text only, and checks Date and Valid-Until
// against now (Valid-Until is waived by src.AllowExpired). url names the
// file in messages.
func VerifyRelease(inRelease []byte, url string, src Source, keyring openpgp.KeyRing, now time.Time) (*Release, error) {
	src = src.withDefaults()
	fail := func(check, format string, args ...any) error {
		return fmt.Errorf("verifying InRelease of %s: %w", src.Suite, &errs.VerificationError{Check: check, Reason: fmt.Sprintf(format, args...)})
	}
	block, rest := clearsign.Decode(inRelease)
	if block == nil {
		return nil, fail("signature", "%s is not a clearsigned OpenPGP message", deps.RedactURL(url))
	}
	// Nothing may stand outside the signed message: apt refuses that too
	// (CVE-2013-1051-style injections).
	if i := bytes.Index(inRelease, []byte("-----BEGIN PGP SIGNED MESSAGE-----")); i < 0 || len(bytes.TrimSpace(inRelease[:i])) != 0 {
		return nil, fail("signature", "%s has text before its signed message", deps.RedactURL(url))
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fail("signature", "%s has text after its signature", deps.RedactURL(url))
	}
	cfg := &packet.Config{Time: func() time.Time { return now }}
	sig, signer, err := openpgp.VerifyDetachedSignature(keyring, bytes.NewReader(block.Bytes), block.ArmoredSignature.Body, cfg)
	if err != nil {
		if signer == nil {
			return nil, fail("signature", "%s: %v (keyring %s)", deps.RedactURL(url), err, src.Keyring)
		}
		return nil, fail("signature", "%s: %v", deps.RedactURL(url), err)
	}
	rel := &Release{URL: deps.RedactURL(url), Files: map[string]FileSum{}}
	sum := sha256.Sum256(inRelease)
	rel.SHA256 = hex.EncodeToString(sum[:])
	rel.Signer = fingerprint(signer.PrimaryKey.Fingerprint)
	rel.SigningKey = rel.Signer
	if sig.IssuerKeyId != nil {
		for _, sk := range signer.Subkeys {
			if sk.PublicKey.KeyId == *sig.IssuerKeyId {
				rel.SigningKey = fingerprint(sk.PublicKey.Fingerprint)
			}
		}
	}
	if id := signer.PrimaryIdentity(); id != nil {
		rel.SignerName = id.Name
	}
	rel.SignedAt = sig.CreationTime.UTC()
	if len(src.SignedBy) > 0 {
		ok := false
		for _, f := range src.SignedBy {
			if f := normFingerprint(f); f == rel.Signer || f == rel.SigningKey {
				ok = true
			}
		}
		if !ok {
			return nil, fail("signed-by", "%s is signed by %s (%s), not by one of %s", deps.RedactURL(url), rel.SigningKey, rel.SignerName, strings.Join(src.SignedBy, ", "))
		}
	}
	if err := parseRelease(block.Plaintext, rel); err != nil {
		return nil, fmt.Errorf("parsing InRelease of %s: %w: %v", src.Suite, errs.ErrDependency, err)
	}
	if rel.Date.IsZero() {
		return nil, fail("date", "%s has no Date", deps.RedactURL(url))
	}
	if rel.Date.After(now.Add(maxFutureDate)) {
		return nil, fail("date", "%s is not valid yet: dated %s, the clock says %s", deps.RedactURL(url), rel.Date.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if !rel.ValidUntil.IsZero() && now.After(rel.ValidUntil) {
		if !src.AllowExpired {
			return nil, fail("valid-until", "%s expired on %s (dated %s; it is now %s): a mirror may be serving a stale index to hide updates (a freeze attack). If this suite is known not to be refreshed (a snapshot, a stale mirror), accept it with allow-expired (apt's Acquire::Check-Valid-Until=false)",
				deps.RedactURL(url), rel.ValidUntil.Format(time.RFC3339), rel.Date.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
		rel.Expired = true
	}
	if !matchesSuite(rel, src.Suite) {
		return nil, fail("suite", "%s is for suite %q, codename %q, not %q", deps.RedactURL(url), rel.Suite, rel.Codename, src.Suite)
	}
	return rel, nil
}

func matchesSuite(rel *Release, suite string) bool {
	// A mirror serving another suite's Release under this name would
	// be a downgrade; apt checks the same.
	return suite == rel.Suite || suite == rel.Codename || (rel.Suite == "" && rel.Codename == "")
}

func fingerprint(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

func parseRelease(text []byte, rel *Release) error {
	var para *paragraph
	err := readParagraphs(bytes.NewReader(text), "Release", nil, func(p *paragraph) error {
		if para != nil {
			return errors.New("more than one stanza")
		}
		para = p
		return nil
	})
	if err != nil {
		return err
	}
	if para == nil {
		return errors.New("empty")
	}
	rel.Origin = para.Get("Origin")
	rel.Label = para.Get("Label")
	rel.Suite = para.Get("Suite")
	rel.Codename = para.Get("Codename")
	rel.Version = para.Get("Version")
	rel.Architectures = strings.Fields(para.Get("Architectures"))
	rel.Components = strings.Fields(para.Get("Components"))
	rel.AcquireByHash = strings.EqualFold(para.Get("Acquire-By-Hash"), "yes")
	rel.NoArchAllPackages = slices.Contains(strings.Fields(para.Get("No-Support-for-Architecture-all")), "Packages")
	if d := para.Get("Date"); d != "" {
		t, err := parseReleaseDate(d)
		if err != nil {
			return fmt.Errorf("field Date: %v", err)
		}
		rel.Date = t
	}
	if d := para.Get("Valid-Until"); d != "" {
		t, err := parseReleaseDate(d)
		if err != nil {
			return fmt.Errorf("field Valid-Until: %v", err)
		}
		rel.ValidUntil = t
	}
	sums, ok := para.Lookup("SHA256")
	if !ok {
		return errors.New("no SHA256 field (MD5/SHA1-only Release files are not accepted)")
	}
	for _, line := range strings.Split(sums, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 || !deps.IsSHA256(f[0]) {
			return fmt.Errorf("field SHA256: line %q is not <sha256> <size> <path>", line)
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("field SHA256: line %q: bad size", line)
		}
		rel.Files[f[2]] = FileSum{Size: n, SHA256: f[0]}
	}
	return nil
}

// parseReleaseDate parses RFC 2822 dates as Release files write them
// ("Sat, 21 Nov 2026 09:15:44 UTC"), as apt does (several spellings).
func parseReleaseDate(s string) (time.Time, error) {
	for _, layout := range []string{
		"Mon, 02 Jan 2006 15:04:05 MST", "Mon, 2 Jan 2006 15:04:05 MST",
		"Mon, 02 Jan 2006 15:04:05 -0700", "Mon, 2 Jan 2006 15:04:05 -0700",
		time.RFC1123Z, time.RFC1123,
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 2822 date", s)
}

// httpGet fetches url into memory, at most max bytes.
func httpGet(ctx context.Context, c *config, url string, max int64) ([]byte, error) {
	resp, err := httpOpen(ctx, c, url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", deps.RedactURL(url), err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("reading %s: %w", deps.RedactURL(url), &errs.LimitError{Limit: fmt.Sprintf("download size (%d bytes)", max)})
	}
	return b, nil
}

// errNotFound marks a 404/410 answer, for fallbacks.
var errNotFound = errors.New("not found on the mirror")

func httpOpen(ctx context.Context, c *config, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("requesting %s: %w: %v", deps.RedactURL(url), errs.ErrDependency, err)
	}
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("requesting %s: %w", deps.RedactURL(url), err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone {
			return nil, fmt.Errorf("requesting %s: %w: %w (%s)", deps.RedactURL(url), errs.ErrDependency, errNotFound, resp.Status)
		}
		return nil, fmt.Errorf("requesting %s: %w: %s", deps.RedactURL(url), errs.ErrDependency, resp.Status)
	}
	return resp, nil
}
