package deb

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a parsed Debian version, [epoch:]upstream[-revision]
// (Debian Policy §5.6.12).
type Version struct {
	Epoch    int
	Upstream string
	Revision string
}

// ParseVersion parses a Debian version. It accepts what dpkg accepts for
// an archive's index: an optional numeric epoch, an upstream version
// starting with a digit (dpkg only warns otherwise, so a non-digit start is
// allowed), and an optional revision after the last hyphen.
func ParseVersion(s string) (Version, error) {
	var v Version
	orig := s
	s = strings.TrimSpace(s)
	if s == "" {
		return v, fmt.Errorf("parsing version %q: empty", orig)
	}
	if strings.ContainsAny(s, " \t") {
		return v, fmt.Errorf("parsing version %q: contains white space", orig)
	}
	if e, rest, ok := strings.Cut(s, ":"); ok {
		n, err := strconv.Atoi(e)
		if err != nil || n < 0 {
			return v, fmt.Errorf("parsing version %q: epoch %q is not a number", orig, e)
		}
		v.Epoch, s = n, rest
	}
	if i := strings.LastIndexByte(s, '-'); i >= 0 {
		v.Upstream, v.Revision = s[:i], s[i+1:]
		if v.Revision == "" {
			return v, fmt.Errorf("parsing version %q: empty revision", orig)
		}
	} else {
		v.Upstream = s
	}
	if v.Upstream == "" {
		return v, fmt.Errorf("parsing version %q: empty upstream version", orig)
	}
	for _, c := range v.Upstream {
		if !isVersionChar(c) {
			return v, fmt.Errorf("parsing version %q: invalid character %q in upstream version", orig, c)
		}
	}
	for _, c := range v.Revision {
		if !isVersionChar(c) || c == ':' || c == '-' {
			return v, fmt.Errorf("parsing version %q: invalid character %q in revision", orig, c)
		}
	}
	return v, nil
}

func isVersionChar(c rune) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.ContainsRune(".+~-:", c)
}

// String formats v as Debian does (the epoch only when non-zero).
func (v Version) String() string {
	s := v.Upstream
	if v.Revision != "" {
		s += "-" + v.Revision
	}
	if v.Epoch != 0 {
		s = strconv.Itoa(v.Epoch) + ":" + s
	}
	return s
}

// Compare returns -1, 0 or +1 as v sorts before, equal to or after w, by
// dpkg's algorithm: epochs numerically, then upstream and revision by
// alternating non-digit parts (letters before non-letters, '~' before
// everything, even the end) and numeric parts.
func (v Version) Compare(w Version) int {
	if v.Epoch != w.Epoch {
		if v.Epoch < w.Epoch {
			return -1
		}
		return 1
	}
	if c := compareFragment(v.Upstream, w.Upstream); c != 0 {
		return c
	}
	return compareFragment(v.Revision, w.Revision)
}

// CompareVersions compares two version strings as dpkg
// --compare-versions does. An unparseable version compares by its text
// after every parseable one, so sorting stays total.
func CompareVersions(a, b string) int {
	va, ea := ParseVersion(a)
	vb, eb := ParseVersion(b)
	switch {
	case ea != nil && eb != nil:
		return strings.Compare(a, b)
	case ea != nil:
		return 1
	case eb != nil:
		return -1
	}
	return va.Compare(vb)
}

// order is dpkg's character weight in the non-digit parts.
func order(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return 0
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		return int(c)
	case c == '~':
		return -1
	case c != 0:
		return int(c) + 256
	}
	return 0
}

func compareFragment(a, b string) int {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		first := 0
		for (i < len(a) && !isDigit(a[i])) || (j < len(b) && !isDigit(b[j])) {
			var ac, bc int
			if i < len(a) {
				ac = order(a[i])
			}
			if j < len(b) {
				bc = order(b[j])
			}
			if ac != bc {
				return sign(ac - bc)
			}
			i++
			j++
		}
		for i < len(a) && a[i] == '0' {
			i++
		}
		for j < len(b) && b[j] == '0' {
			j++
		}
		for i < len(a) && isDigit(a[i]) && j < len(b) && isDigit(b[j]) {
			if first == 0 {
				first = int(a[i]) - int(b[j])
			}
			i++
			j++
		}
		if i < len(a) && isDigit(a[i]) {
			return 1
		}
		if j < len(b) && isDigit(b[j]) {
			return -1
		}
		if first != 0 {
			return sign(first)
		}
	}
	return 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}
