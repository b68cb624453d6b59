package verify

import (
	"fmt"
	"io"
	"strings"
)

// WriteText renders the report for people: one line per check,
// "PASS|FAIL|SKIP  name  reason", then the verdict.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "image   %s\n", r.Image)
	pol := r.Policy
	if pol == "" {
		pol = "(given in code)"
	}
	fmt.Fprintf(&b, "policy  %s\n\n", pol)
	width := 0
	for _, c := range r.Checks {
		width = max(width, len(c.Name))
	}
	for _, c := range r.Checks {
		fmt.Fprintf(&b, "%s  %-*s  %s\n", c.Status(), width, c.Name, oneLine(c.Reason))
	}
	b.WriteString("\n")
	switch {
	case r.Verified:
		fmt.Fprintf(&b, "VERIFIED  %s\n", r.Image)
	case r.Error != "":
		fmt.Fprintf(&b, "UNDECIDED  %s: %s\n", r.Image, oneLine(r.Error))
	default:
		fmt.Fprintf(&b, "NOT VERIFIED  %s\n", r.Image)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// oneLine keeps attacker-influenced text on one line of the report.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' || (r < 0x20) || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
