package yarn

import (
	"fmt"
	"strings"
	"unicode"
)

// archs is the set of architectures Yarn installs for
// (supportedArchitectures): per field ("os", "cpu", "libc"), the accepted
// values; a field without values accepts any (as Yarn's libc off linux).
type archs map[string][]string

// evalConditions evaluates a Berry lockfile `conditions` expression
// ("os=linux & cpu=x64 & libc=glibc", with | and parentheses) against a.
func evalConditions(expr string, a archs) (bool, error) {
	p := &condParser{s: expr}
	v, err := p.or(a)
	if err != nil {
		return false, err
	}
	p.space()
	if p.i != len(p.s) {
		return false, fmt.Errorf("conditions %q: unexpected %q", expr, p.s[p.i:])
	}
	return v, nil
}

type condParser struct {
	s string
	i int
}

func (p *condParser) space() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *condParser) or(a archs) (bool, error) {
	v, err := p.and(a)
	if err != nil {
		return false, err
	}
	for {
		p.space()
		if p.i >= len(p.s) || p.s[p.i] != '|' {
			return v, nil
		}
		p.i++
		w, err := p.and(a)
		if err != nil {
			return false, err
		}
		v = v || w
	}
}

func (p *condParser) and(a archs) (bool, error) {
	v, err := p.term(a)
	if err != nil {
		return false, err
	}
	for {
		p.space()
		if p.i >= len(p.s) || p.s[p.i] != '&' {
			return v, nil
		}
		p.i++
		w, err := p.term(a)
		if err != nil {
			return false, err
		}
		v = v && w
	}
}

func (p *condParser) term(a archs) (bool, error) {
	p.space()
	if p.i < len(p.s) && p.s[p.i] == '!' {
		p.i++
		v, err := p.term(a)
		return !v, err
	}
	if p.i < len(p.s) && p.s[p.i] == '(' {
		p.i++
		v, err := p.or(a)
		if err != nil {
			return false, err
		}
		p.space()
		if p.i >= len(p.s) || p.s[p.i] != ')' {
			return false, fmt.Errorf("conditions %q: missing )", p.s)
		}
		p.i++
		return v, nil
	}
	start := p.i
	for p.i < len(p.s) && (unicode.IsLetter(rune(p.s[p.i])) || unicode.IsDigit(rune(p.s[p.i])) || strings.IndexByte("=_-.", p.s[p.i]) >= 0) {
		p.i++
	}
	name, value, ok := strings.Cut(p.s[start:p.i], "=")
	if !ok || name == "" || value == "" {
		return false, fmt.Errorf("conditions %q: %q is not NAME=VALUE", p.s, p.s[start:p.i])
	}
	supported, known := a[name]
	if !known || len(supported) == 0 {
		return true, nil
	}
	for _, s := range supported {
		if s == value {
			return true, nil
		}
	}
	return false, nil
}
