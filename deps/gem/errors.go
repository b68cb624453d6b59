package gem

import (
	"fmt"
	"strings"

	"github.com/vmbuild/vmbuild/errs"
)

// InputError is bad input in a Gemfile, Gemfile.lock or Bundler config:
// it names the file, the line (0 when the problem is not on one line) and
// the gem, if any. errors.Is(err, errs.ErrDependency) holds.
type InputError struct {
	File string
	Line int
	Gem  string
	Msg  string
}

func (e *InputError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Gem != "" {
		fmt.Fprintf(&b, "gem %s: ", e.Gem)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Is makes errors.Is(err, errs.ErrDependency) hold.
func (e *InputError) Is(target error) bool { return target == errs.ErrDependency }

func inputErr(file string, line int, gem, format string, args ...any) *InputError {
	return &InputError{File: file, Line: line, Gem: gem, Msg: fmt.Sprintf(format, args...)}
}

// Mismatch is one difference between a Gemfile and its Gemfile.lock.
type Mismatch struct {
	Gem string
	// Kind is "added" (in the Gemfile, not in DEPENDENCIES), "deleted"
	// (in DEPENDENCIES, not in the Gemfile), "changed" (requirement or
	// source differ) or "unsatisfied" (the locked version does not meet
	// the Gemfile's requirement).
	Kind         string
	Detail       string
	GemfileLine  int // 0 when the gem is not in the Gemfile
	LockfileLine int // 0 when the gem is not in DEPENDENCIES
}

// MismatchError reports a Gemfile.lock that does not match its Gemfile,
// as `bundle install --frozen` refuses it ("the gemspecs for path gems
// changed", "You have added to the Gemfile: …"). It lists every
// difference. errors.Is(err, errs.ErrDependency) holds.
type MismatchError struct {
	Gemfile, Lockfile string
	Mismatches        []Mismatch
}

func (e *MismatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s does not match its Gemfile %s (run `bundle install` and commit the updated %s):", e.Lockfile, e.Gemfile, e.Lockfile)
	for _, m := range e.Mismatches {
		b.WriteString("\n  gem ")
		b.WriteString(m.Gem)
		b.WriteString(": ")
		b.WriteString(m.Detail)
		var at []string
		if m.GemfileLine > 0 {
			at = append(at, fmt.Sprintf("%s:%d", e.Gemfile, m.GemfileLine))
		}
		if m.LockfileLine > 0 {
			at = append(at, fmt.Sprintf("%s:%d", e.Lockfile, m.LockfileLine))
		}
		if len(at) > 0 {
			b.WriteString(" (" + strings.Join(at, ", ") + ")")
		}
	}
	return b.String()
}

// Is makes errors.Is(err, errs.ErrDependency) hold.
func (e *MismatchError) Is(target error) bool { return target == errs.ErrDependency }
