package deb

import (
	"fmt"
	"strings"
)

// Op is a version relation of a dependency.
type Op string

const (
	OpNone Op = ""
	OpLT   Op = "<<"
	OpLE   Op = "<="
	OpEQ   Op = "="
	OpGE   Op = ">="
	OpGT   Op = ">>"
)

// Dep is one possibility of a relation: "libc6 (>= 2.38)",
// "python3:any", "default-dbus-session-bus".
type Dep struct {
	Name string
	// ArchQual is the Multi-Arch qualifier after ':' ("any", "native",
	// an architecture), "" when none.
	ArchQual string
	Op       Op
	Version  string
	// Archs is a source-style architecture restriction list ("[amd64
	// !i386]"); binary indexes do not carry them, kept for completeness.
	Archs []string
}

func (d Dep) String() string {
	s := d.Name
	if d.ArchQual != "" {
		s += ":" + d.ArchQual
	}
	if d.Op != OpNone {
		s += " (" + string(d.Op) + " " + d.Version + ")"
	}
	return s
}

// Relation is one comma-separated element of a relation field: a list of
// alternatives separated by '|'.
type Relation []Dep

func (r Relation) String() string {
	parts := make([]string, len(r))
	for i, d := range r {
		parts[i] = d.String()
	}
	return strings.Join(parts, " | ")
}

// ParseRelations parses a relation field (Depends, Pre-Depends,
// Conflicts, Breaks, Provides). The obsolete "<" and ">" mean "<=" and
// ">=" as in dpkg; build profiles ("<!nocheck>") are dropped.
func ParseRelations(s string) ([]Relation, error) {
	var out []Relation
	for _, rel := range strings.Split(s, ",") {
		rel = strings.TrimSpace(rel)
		if rel == "" {
			continue
		}
		var r Relation
		for _, alt := range strings.Split(rel, "|") {
			d, err := parseDep(strings.TrimSpace(alt))
			if err != nil {
				return nil, fmt.Errorf("parsing relation %q: %w", rel, err)
			}
			r = append(r, d)
		}
		out = append(out, r)
	}
	return out, nil
}

func parseDep(s string) (Dep, error) {
	var d Dep
	// Build profiles, then architecture restrictions, from the end.
	for {
		s = strings.TrimSpace(s)
		if strings.HasSuffix(s, ">") && strings.Contains(s, "<") && !strings.HasSuffix(s, ")") {
			i := strings.LastIndexByte(s, '<')
			if i > 0 && s[i-1] != '<' && !strings.Contains(s[i:], "(") {
				s = s[:i]
				continue
			}
		}
		break
	}
	if strings.HasSuffix(s, "]") {
		i := strings.LastIndexByte(s, '[')
		if i < 0 {
			return d, fmt.Errorf("unbalanced '[' in %q", s)
		}
		d.Archs = strings.Fields(s[i+1 : len(s)-1])
		s = strings.TrimSpace(s[:i])
	}
	if i := strings.IndexByte(s, '('); i >= 0 {
		j := strings.LastIndexByte(s, ')')
		if j < i || strings.TrimSpace(s[j+1:]) != "" {
			return d, fmt.Errorf("unbalanced '(' in %q", s)
		}
		inner := strings.TrimSpace(s[i+1 : j])
		s = strings.TrimSpace(s[:i])
		opEnd := 0
		for opEnd < len(inner) && strings.IndexByte("<>=", inner[opEnd]) >= 0 {
			opEnd++
		}
		op, ver := inner[:opEnd], strings.TrimSpace(inner[opEnd:])
		switch op {
		case "<<", "<=", "=", ">=", ">>":
			d.Op = Op(op)
		case "<":
			d.Op = OpLE
		case ">":
			d.Op = OpGE
		default:
			return d, fmt.Errorf("unknown version relation %q in %q", op, inner)
		}
		if ver == "" {
			return d, fmt.Errorf("no version after %q", op)
		}
		d.Version = ver
	}
	if name, q, ok := strings.Cut(s, ":"); ok {
		s, d.ArchQual = name, q
	}
	if s == "" || strings.ContainsAny(s, " \t()[]<>|,") {
		return d, fmt.Errorf("bad package name %q", s)
	}
	d.Name = s
	return d, nil
}

// satisfiesVersion reports whether version v satisfies op ref.
func satisfiesVersion(v string, op Op, ref string) bool {
	if op == OpNone {
		return true
	}
	c := CompareVersions(v, ref)
	switch op {
	case OpLT:
		return c < 0
	case OpLE:
		return c <= 0
	case OpEQ:
		return c == 0
	case OpGE:
		return c >= 0
	case OpGT:
		return c > 0
	}
	return false
}
