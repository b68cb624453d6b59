package termsafe

import "testing"

func TestText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain text, ünïcödé, 日本", "plain text, ünïcödé, 日本"},
		{`back\slash`, `back\slash`},
		{"esc \x1b[31mred\x1b[0m", `esc \x1b[31mred\x1b[0m`},
		{"csi \u009b31m", `csi \u009b31m`},
		{"nel \u0085 and \u0080", `nel \u0085 and \u0080`},
		{"two\nlines\r\ttab", `two\x0alines\x0d\x09tab`},
		{"del \x7f", `del \x7f`},
		{"bidi \u202e evil \u202c", `bidi \u202e evil \u202c`},
		{"isolates \u2066\u2067\u2068\u2069", `isolates \u2066\u2067\u2068\u2069`},
		{"marks \u200e\u200f\u061c", `marks \u200e\u200f\u061c`},
		{"embeddings \u202a\u202b\u202d", `embeddings \u202a\u202b\u202d`},
		{"zero\u200bwidth", `zero\u200bwidth`},
		{"sep \u2028\u2029", `sep \u2028\u2029`},
		{"bad \xff\xfe utf8", `bad \xff\xfe utf8`},
		{"", ""},
	} {
		if got := Text(c.in); got != c.want {
			t.Errorf("Text(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestTextLeavesNoControls(t *testing.T) {
	var all []rune
	for r := rune(0); r < 0x3000; r++ {
		all = append(all, r)
	}
	out := Text(string(all))
	for _, r := range out {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || unsafeRune(r) {
			t.Fatalf("Text left %U", r)
		}
	}
}
