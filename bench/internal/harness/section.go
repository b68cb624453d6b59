package harness

import (
	"fmt"
	"os"
	"strings"
)

// bench/RESULTS.md is written by bench/run; bench/run-hermetic owns one
// section of it, between these markers, which bench/run keeps when it
// writes the file again.
const (
	SectionBegin = "<!-- bench/run-hermetic: begin (written by bench/run-hermetic, kept by bench/run) -->"
	SectionEnd   = "<!-- bench/run-hermetic: end -->"
)

// Section returns the marked section of md (markers included), or "".
func Section(md string) string {
	i := strings.Index(md, SectionBegin)
	if i < 0 {
		return ""
	}
	j := strings.Index(md[i:], SectionEnd)
	if j < 0 {
		return ""
	}
	return md[i : i+j+len(SectionEnd)]
}

// WithSection returns md with its marked section replaced by section
// (markers included), or section appended if md has none.
func WithSection(md, section string) string {
	if old := Section(md); old != "" {
		return strings.Replace(md, old, section, 1)
	}
	return strings.TrimRight(md, "\n") + "\n\n" + section + "\n"
}

// KeepSection carries the marked section of the file at path (if it has
// one) into md, the file's new content.
func KeepSection(path, md string) string {
	old, err := os.ReadFile(path)
	if err != nil {
		return md
	}
	if s := Section(string(old)); s != "" {
		return WithSection(md, s)
	}
	return md
}

// WriteSection replaces the marked section of the file at path with body
// (without markers).
func WriteSection(path, body string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	section := SectionBegin + "\n" + strings.TrimRight(body, "\n") + "\n" + SectionEnd
	if err := os.WriteFile(path, []byte(WithSection(string(old), section)), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
