package deps

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// Integrity is a set of expected digests of one download, from a
// lockfile: npm's Subresource Integrity ("sha512-<base64> sha1-<base64>"),
// a Bundler CHECKSUMS entry ("sha256=<hex>"), a Debian index's SHA256.
// The zero value expects nothing.
type Integrity struct {
	// Digests maps an algorithm ("sha1", "sha256", "sha384", "sha512") to
	// the raw digest bytes.
	Digests map[string][]byte
	// Source says where the expectation came from, for messages:
	// "package-lock.json integrity", "Gemfile.lock CHECKSUMS".
	Source string
}

// ParseSRI parses a Subresource Integrity string: one or more
// "<alg>-<base64>" tokens separated by white space. Unknown algorithms are
// ignored, as the SRI spec asks; an unparseable token is an error.
func ParseSRI(s, source string) (Integrity, error) {
	in := Integrity{Digests: map[string][]byte{}, Source: source}
	for _, tok := range strings.Fields(s) {
		alg, b64, ok := strings.Cut(tok, "-")
		if !ok {
			return Integrity{}, fmt.Errorf("integrity %q: token %q is not <algorithm>-<base64>", s, tok)
		}
		if i := strings.IndexByte(b64, '?'); i >= 0 { // SRI options
			b64 = b64[:i]
		}
		if newHash(alg) == nil {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return Integrity{}, fmt.Errorf("integrity %q: %s digest is not base64: %v", s, alg, err)
		}
		if len(raw) != newHash(alg).Size() {
			return Integrity{}, fmt.Errorf("integrity %q: %s digest has %d bytes, want %d", s, alg, len(raw), newHash(alg).Size())
		}
		in.Digests[alg] = raw
	}
	return in, nil
}

// HexIntegrity is an expectation of one hex digest (alg "sha256", …).
func HexIntegrity(alg, hexDigest, source string) (Integrity, error) {
	h := newHash(alg)
	if h == nil {
		return Integrity{}, fmt.Errorf("%s: unknown digest algorithm %q", source, alg)
	}
	raw, err := hex.DecodeString(hexDigest)
	if err != nil || len(raw) != h.Size() {
		return Integrity{}, fmt.Errorf("%s: %s digest %q is not %d hex digits", source, alg, hexDigest, 2*h.Size())
	}
	return Integrity{Digests: map[string][]byte{alg: raw}, Source: source}, nil
}

// Empty reports whether in expects nothing.
func (in Integrity) Empty() bool { return len(in.Digests) == 0 }

// SHA256 returns the expected sha256 in hex, if the integrity has one.
func (in Integrity) SHA256() (string, bool) {
	d, ok := in.Digests["sha256"]
	if !ok {
		return "", false
	}
	return hex.EncodeToString(d), true
}

func newHash(alg string) hash.Hash {
	switch alg {
	case "sha1":
		return sha1.New()
	case "sha256":
		return sha256.New()
	case "sha384":
		return sha512.New384()
	case "sha512":
		return sha512.New()
	}
	return nil
}

// strongest is the algorithm an SRI check uses: the strongest present
// (the SRI spec's rule), sha1 only when nothing else is given.
func (in Integrity) strongest() string {
	for _, a := range []string{"sha512", "sha384", "sha256", "sha1"} {
		if _, ok := in.Digests[a]; ok {
			return a
		}
	}
	return ""
}

// Hashers returns the hashes needed to check in, plus sha256 (always
// computed: it is the pin).
func (in Integrity) hashers() map[string]hash.Hash {
	hs := map[string]hash.Hash{"sha256": sha256.New()}
	if a := in.strongest(); a != "" && hs[a] == nil {
		hs[a] = newHash(a)
	}
	return hs
}

// check compares computed sums with the expectation.
func (in Integrity) check(sums map[string][]byte) (alg, want, got string, ok bool) {
	a := in.strongest()
	if a == "" {
		return "", "", "", true
	}
	w, g := in.Digests[a], sums[a]
	if string(w) == string(g) {
		return a, "", "", true
	}
	enc := func(b []byte) string {
		if a == "sha256" {
			return "sha256:" + hex.EncodeToString(b)
		}
		return a + "-" + base64.StdEncoding.EncodeToString(b)
	}
	return a, enc(w), enc(g), false
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
