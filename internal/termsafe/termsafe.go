// Package termsafe makes remote text safe to print on a terminal: what a
// registry, a git server or a signed document says is escaped before it
// reaches an error message or a report, so that it cannot move the
// cursor, recolour or clear the screen, or reorder what is displayed.
package termsafe

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Text returns s with every character that a terminal would interpret
// rather than show escaped, Go-style:
//
//   - C0 controls (including newline, carriage return and tab) and DEL as
//     \xNN, so remote text stays on one line;
//   - C1 controls (U+0080–U+009F, among them U+009B, the one-byte CSI) as
//     \u00NN;
//   - format characters (Unicode category Cf): the bidirectional controls
//     U+200E, U+200F, U+202A–U+202E, U+2066–U+2069 and U+061C, zero-width
//     characters and the like, and the line and paragraph separators
//     U+2028 and U+2029, as \uNNNN;
//   - bytes that are not UTF-8 as \xNN.
//
// Everything else, including backslashes and non-ASCII letters, is kept.
func Text(s string) string {
	if safe(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func unsafeRune(r rune) bool {
	return (r >= 0x80 && r <= 0x9f) || r == 0x2028 || r == 0x2029 || unicode.Is(unicode.Cf, r)
}

func safe(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || unsafeRune(r) {
			return false
		}
		i += n
	}
	return true
}
