package gem

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Version is a RubyGems version ("1.16.0", "3.0.0.beta.1"), compared as
// Gem::Version compares: segments split at dots and at digit/letter
// boundaries, numbers numerically, a letter segment before any number
// (so "1.0.a" < "1.0"), trailing zero segments ignored ("1.0" == "1").
type Version struct {
	raw   string
	segs  []segment // as written (Gem::Version#segments)
	canon []segment // canonical segments, for comparing
}

// segment is a number (digits without leading zeros, "0" for zero) or
// a letter run.
type segment struct {
	isNum bool
	s     string
}

func (s segment) zero() bool { return s.isNum && s.s == "0" }

// cmpNum compares two numbers in canonical decimal form.
func cmpNum(a, b string) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// incNum adds one to a number in canonical decimal form.
func incNum(a string) string {
	b := []byte(a)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < '9' {
			b[i]++
			return string(b)
		}
		b[i] = '0'
	}
	return "1" + string(b)
}

// validVersion is Gem::Version's pattern,
// [0-9]+(\.[0-9a-zA-Z]+)*(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?, by hand:
// it runs for every line of a lockfile.
func validVersion(s string) bool {
	main, pre, hasPre := strings.Cut(s, "-")
	if main == "" || main[0] < '0' || main[0] > '9' {
		return false
	}
	for _, part := range strings.Split(main, ".") {
		if part == "" || !allAlnum(part, false) {
			return false
		}
	}
	if hasPre {
		for _, part := range strings.Split(pre, ".") {
			if part == "" || !allAlnum(part, true) {
				return false
			}
		}
	}
	return true
}

func allAlnum(s string, dash bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || dash && c == '-') {
			return false
		}
	}
	return true
}

// ParseVersion parses a version as Gem::Version.new does (a "-" is
// RubyGems' ".pre.").
func ParseVersion(s string) (Version, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		s = "0"
	}
	if !validVersion(s) {
		return Version{}, fmt.Errorf("malformed version %q", s)
	}
	segs := scanSegments(strings.ReplaceAll(s, "-", ".pre."))
	return Version{raw: s, segs: segs, canon: canonical(segs)}, nil
}

// scanSegments is Ruby's scan(/[0-9]+|[a-z]+/i).
func scanSegments(norm string) []segment {
	var segs []segment
	for i := 0; i < len(norm); {
		c := norm[i]
		j := i
		switch {
		case c >= '0' && c <= '9':
			for j < len(norm) && norm[j] >= '0' && norm[j] <= '9' {
				j++
			}
			n := strings.TrimLeft(norm[i:j], "0")
			if n == "" {
				n = "0"
			}
			segs = append(segs, segment{isNum: true, s: n})
		case isLetter(rune(c)):
			for j < len(norm) && isLetter(rune(norm[j])) {
				j++
			}
			segs = append(segs, segment{s: norm[i:j]})
		default:
			j++
		}
		i = j
	}
	return segs
}

// canonical drops trailing zeros of the numeric part and of the string
// part, as Gem::Version#canonical_segments does.
func canonical(segs []segment) []segment {
	firstStr := firstString(segs)
	trim := func(ss []segment) []segment {
		for len(ss) > 0 && ss[len(ss)-1].zero() {
			ss = ss[:len(ss)-1]
		}
		return ss
	}
	out := slices.Clone(trim(segs[:firstStr]))
	return append(out, trim(segs[firstStr:])...)
}

func firstString(segs []segment) int {
	if i := slices.IndexFunc(segs, func(s segment) bool { return !s.isNum }); i >= 0 {
		return i
	}
	return len(segs)
}

// String is the version as written.
func (v Version) String() string { return v.raw }

// Prerelease reports whether the version has a letter (Gem::Version#prerelease?).
func (v Version) Prerelease() bool { return strings.ContainsFunc(v.raw, isLetter) }

func isLetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }

// Compare returns -1, 0 or 1 (Gem::Version#<=>).
func (v Version) Compare(o Version) int {
	n := max(len(v.canon), len(o.canon))
	zero := segment{isNum: true, s: "0"}
	for i := 0; i < n; i++ {
		l, r := zero, zero
		if i < len(v.canon) {
			l = v.canon[i]
		}
		if i < len(o.canon) {
			r = o.canon[i]
		}
		switch {
		case l.isNum && r.isNum:
			if c := cmpNum(l.s, r.s); c != 0 {
				return c
			}
		case !l.isNum && r.isNum:
			return -1
		case l.isNum && !r.isNum:
			return 1
		default:
			if c := strings.Compare(l.s, r.s); c != 0 {
				return c
			}
		}
	}
	return 0
}

func fromSegments(segs []segment) Version {
	parts := make([]string, len(segs))
	for i, s := range segs {
		parts[i] = s.s
	}
	return Version{raw: strings.Join(parts, "."), segs: segs, canon: canonical(segs)}
}

// release is the version without its prerelease part (Gem::Version#release).
func (v Version) release() Version {
	if i := firstString(v.segs); i < len(v.segs) {
		return fromSegments(slices.Clone(v.segs[:i]))
	}
	return v
}

// bump is Gem::Version#bump: drop the prerelease part and the last
// segment, then increment the new last one: "1.2.3" → "1.3", "1.0" → "2",
// "1" → "2". It works on the segments as written, so "~> 1.0" means
// < 2 and "~> 1.0.0" means < 1.1.
func (v Version) bump() Version {
	segs := slices.Clone(v.segs[:firstString(v.segs)])
	if len(segs) > 1 {
		segs = segs[:len(segs)-1]
	}
	if len(segs) == 0 {
		segs = []segment{{isNum: true, s: "0"}}
	}
	segs[len(segs)-1] = segment{isNum: true, s: incNum(segs[len(segs)-1].s)}
	return fromSegments(segs)
}

// Constraint is one "op version" of a requirement.
type Constraint struct {
	Op      string // "=", "!=", ">", "<", ">=", "<=", "~>"
	Version Version
}

func (c Constraint) String() string { return c.Op + " " + c.Version.raw }

// Requirement is a Gem::Requirement: constraints that must all hold. The
// empty requirement is ">= 0".
type Requirement []Constraint

var constraintPattern = regexp.MustCompile(`^\s*(=|!=|>=|<=|>|<|~>)?\s*([0-9][0-9A-Za-z.\-]*)\s*$`)

// ParseRequirement parses constraints as Gem::Requirement.parse does
// ("~> 1.2", ">=1", "1.0" meaning "= 1.0").
func ParseRequirement(cs ...string) (Requirement, error) {
	var r Requirement
	for _, c := range cs {
		m := constraintPattern.FindStringSubmatch(c)
		if m == nil {
			return nil, fmt.Errorf("malformed requirement %q", c)
		}
		v, err := ParseVersion(m[2])
		if err != nil {
			return nil, fmt.Errorf("malformed requirement %q: %v", c, err)
		}
		op := m[1]
		if op == "" {
			op = "="
		}
		r = append(r, Constraint{Op: op, Version: v})
	}
	return r, nil
}

// String is the requirement as Bundler writes it: constraints sorted,
// comma separated; ">= 0" when empty.
func (r Requirement) String() string {
	if len(r) == 0 {
		return ">= 0"
	}
	parts := make([]string, len(r))
	for i, c := range r {
		parts[i] = c.String()
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// IsDefault reports whether r is ">= 0" (no constraint).
func (r Requirement) IsDefault() bool {
	for _, c := range r {
		if !(c.Op == ">=" && len(c.Version.canon) == 0) {
			return false
		}
	}
	return true
}

// Satisfied reports whether v meets every constraint.
func (r Requirement) Satisfied(v Version) bool {
	for _, c := range r {
		cmp := v.Compare(c.Version)
		ok := false
		switch c.Op {
		case "=":
			ok = cmp == 0
		case "!=":
			ok = cmp != 0
		case ">":
			ok = cmp > 0
		case "<":
			ok = cmp < 0
		case ">=":
			ok = cmp >= 0
		case "<=":
			ok = cmp <= 0
		case "~>":
			ok = cmp >= 0 && v.release().Compare(c.Version.bump()) < 0
		}
		if !ok {
			return false
		}
	}
	return true
}

// Equal compares requirements as Gem::Requirement#== does: the same
// constraints in any order (versions compared by value, ">= 0" implied
// when empty), and "~>" constraints written with the same precision.
func (r Requirement) Equal(o Requirement) bool {
	a, b := r.normalized(), o.normalized()
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Op != b[i].Op || a[i].Version.Compare(b[i].Version) != 0 {
			return false
		}
		if a[i].Op == "~>" && a[i].Version.raw != b[i].Version.raw {
			return false
		}
	}
	return true
}

func (r Requirement) normalized() []Constraint {
	if r.IsDefault() {
		return nil
	}
	cs := slices.Clone([]Constraint(r))
	// dedupe and sort by op then version, as _sorted_requirements does
	slices.SortFunc(cs, func(x, y Constraint) int {
		if c := strings.Compare(x.Op, y.Op); c != 0 {
			return c
		}
		return x.Version.Compare(y.Version)
	})
	return slices.CompactFunc(cs, func(x, y Constraint) bool {
		return x.Op == y.Op && x.Version.Compare(y.Version) == 0 && x.Version.raw == y.Version.raw
	})
}
