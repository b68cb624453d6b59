package gem

import (
	"fmt"
	"strings"
)

// A small lexer for the subset of Ruby that Gemfiles are written in:
// identifiers, labels (require:), strings, symbols, numbers, %w/%i
// arrays, punctuation and newlines. Everything else is lexed as an
// operator token so that the parser can refuse it by line.

type tokKind int

const (
	tEOF tokKind = iota
	tNewline
	tIdent
	tConst // identifier starting with an upper-case letter
	tLabel // `name:` or `"name":`
	tString
	tSymbol
	tNumber
	tWords // %w[] / %i[]
	tPunct
)

type token struct {
	kind   tokKind
	text   string   // identifier, punctuation, string or symbol value
	words  []string // tWords
	symArr bool     // %i
	interp bool     // a string with #{…}
	space  bool     // white space before the token
	line   int
}

func (t token) String() string {
	switch t.kind {
	case tEOF:
		return "end of file"
	case tNewline:
		return "end of line"
	case tString:
		return fmt.Sprintf("%q", t.text)
	case tSymbol:
		return ":" + t.text
	case tLabel:
		return t.text + ":"
	case tWords:
		return "%w[" + strings.Join(t.words, " ") + "]"
	}
	return "`" + t.text + "`"
}

type lexError struct {
	line int
	msg  string
}

func (e *lexError) Error() string { return e.msg }

type lexer struct {
	src  string
	pos  int
	line int
	toks []token
}

func lexRuby(src string) ([]token, error) {
	l := &lexer{src: src, line: 1}
	if err := l.run(); err != nil {
		return nil, err
	}
	return l.toks, nil
}

func (l *lexer) errf(format string, args ...any) error {
	return &lexError{line: l.line, msg: fmt.Sprintf(format, args...)}
}

func (l *lexer) peekAt(i int) byte {
	if l.pos+i < len(l.src) {
		return l.src[l.pos+i]
	}
	return 0
}

func (l *lexer) emit(t token) { l.toks = append(l.toks, t) }

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func isIdentChar(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

func (l *lexer) atLineStart() bool { return l.pos == 0 || l.src[l.pos-1] == '\n' }

func (l *lexer) run() error {
	space := false
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		if l.atLineStart() {
			rest := l.src[l.pos:]
			if strings.HasPrefix(rest, "__END__") && (len(rest) == 7 || rest[7] == '\n' || rest[7] == '\r') {
				break
			}
			if strings.HasPrefix(rest, "=begin") {
				end := strings.Index(rest, "\n=end")
				if end < 0 {
					return l.errf("=begin without =end")
				}
				skip := rest[:end+5]
				l.line += strings.Count(skip, "\n")
				l.pos += len(skip)
				for l.pos < len(l.src) && l.src[l.pos] != '\n' {
					l.pos++
				}
				continue
			}
		}
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			l.pos++
			space = true
			continue
		case c == '\\' && (l.peekAt(1) == '\n' || l.peekAt(1) == '\r' && l.peekAt(2) == '\n'):
			for l.src[l.pos] != '\n' {
				l.pos++
			}
			l.pos++
			l.line++
			space = true
			continue
		case c == '#':
			for l.pos < len(l.src) && l.src[l.pos] != '\n' {
				l.pos++
			}
			continue
		case c == '\n' || c == ';':
			l.emit(token{kind: tNewline, text: string(c), line: l.line})
			if c == '\n' {
				l.line++
			}
			l.pos++
			space = false
			continue
		}
		line := l.line
		var t token
		var err error
		switch {
		case isIdentStart(c):
			start := l.pos
			for l.pos < len(l.src) && isIdentChar(l.src[l.pos]) {
				l.pos++
			}
			if c := l.peekAt(0); (c == '?' || c == '!') && l.peekAt(1) != '=' {
				l.pos++
			}
			word := l.src[start:l.pos]
			if l.peekAt(0) == ':' && l.peekAt(1) != ':' {
				l.pos++
				t = token{kind: tLabel, text: word}
			} else if word[0] >= 'A' && word[0] <= 'Z' {
				t = token{kind: tConst, text: word}
			} else {
				t = token{kind: tIdent, text: word}
			}
		case c >= '0' && c <= '9':
			start := l.pos
			for l.pos < len(l.src) && (l.src[l.pos] >= '0' && l.src[l.pos] <= '9' || l.src[l.pos] == '_' || l.src[l.pos] == '.' && l.peekAt(1) >= '0' && l.peekAt(1) <= '9') {
				l.pos++
			}
			t = token{kind: tNumber, text: l.src[start:l.pos]}
		case c == '\'' || c == '"':
			l.pos++
			t, err = l.quoted(c, c, c == '"')
			if err == nil && l.peekAt(0) == ':' && l.peekAt(1) != ':' && !t.interp {
				l.pos++
				t = token{kind: tLabel, text: t.text}
			}
		case c == ':' && l.peekAt(1) == ':':
			l.pos += 2
			t = token{kind: tPunct, text: "::"}
		case c == ':' && (l.peekAt(1) == '"' || l.peekAt(1) == '\''):
			q := l.peekAt(1)
			l.pos += 2
			t, err = l.quoted(q, q, q == '"')
			t.kind = tSymbol
		case c == ':' && isIdentStart(l.peekAt(1)):
			l.pos++
			start := l.pos
			for l.pos < len(l.src) && isIdentChar(l.src[l.pos]) {
				l.pos++
			}
			if c := l.peekAt(0); c == '?' || c == '!' || c == '=' && l.peekAt(1) != '>' {
				l.pos++
			}
			t = token{kind: tSymbol, text: l.src[start:l.pos]}
		case c == '%' && strings.ContainsRune("wWiIqQ", rune(l.peekAt(1))) && isPercentDelim(l.peekAt(2)):
			kind := l.peekAt(1)
			open := l.peekAt(2)
			l.pos += 3
			t, err = l.quoted(open, closing(open), kind == 'W' || kind == 'I' || kind == 'Q')
			if err == nil && kind != 'q' && kind != 'Q' {
				if t.interp {
					return &lexError{line: line, msg: "interpolation in a %" + string(kind) + " array is not supported"}
				}
				t = token{kind: tWords, words: strings.Fields(t.text), symArr: kind == 'i' || kind == 'I'}
			}
		case c == '%' && isPercentDelim(l.peekAt(1)) && l.peekAt(1) != '=':
			open := l.peekAt(1)
			l.pos += 2
			t, err = l.quoted(open, closing(open), true)
		default:
			for _, op := range []string{"**", "=>", "->", "==", "=~", "!=", "!~", "&&", "||", "<<", ">=", "<=", "&.", "..", "+=", "-=", "||="} {
				if strings.HasPrefix(l.src[l.pos:], op) {
					t = token{kind: tPunct, text: op}
					break
				}
			}
			if t.text == "" {
				t = token{kind: tPunct, text: string(c)}
			}
			l.pos += len(t.text)
		}
		if err != nil {
			return err
		}
		t.line, t.space = line, space
		l.emit(t)
		space = false
	}
	l.emit(token{kind: tEOF, line: l.line})
	return nil
}

func isPercentDelim(c byte) bool {
	return c != 0 && strings.IndexByte("([{<|!/^", c) >= 0
}

func closing(open byte) byte {
	switch open {
	case '(':
		return ')'
	case '[':
		return ']'
	case '{':
		return '}'
	case '<':
		return '>'
	}
	return open
}

// quoted reads a string body up to close (the opening delimiter already
// consumed), with Ruby's escapes; dq enables double-quote escapes and
// interpolation, which is skipped (balanced) and flagged.
func (l *lexer) quoted(open, close byte, dq bool) (token, error) {
	var b strings.Builder
	depth := 0
	startLine := l.line
	t := token{kind: tString}
	for {
		if l.pos >= len(l.src) {
			return t, &lexError{line: startLine, msg: "unterminated string"}
		}
		c := l.src[l.pos]
		switch {
		case c == '\\' && l.pos+1 < len(l.src):
			n := l.src[l.pos+1]
			l.pos += 2
			if n == '\n' {
				l.line++
			}
			if !dq {
				if n == close || n == '\\' || n == open {
					b.WriteByte(n)
				} else {
					b.WriteByte('\\')
					b.WriteByte(n)
				}
				continue
			}
			switch n {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case '\n':
			default:
				b.WriteByte(n)
			}
			continue
		case dq && c == '#' && l.peekAt(1) == '{':
			t.interp = true
			l.pos += 2
			d := 1
			for d > 0 {
				if l.pos >= len(l.src) {
					return t, &lexError{line: startLine, msg: "unterminated interpolation"}
				}
				switch l.src[l.pos] {
				case '{':
					d++
				case '}':
					d--
				case '\n':
					l.line++
				}
				l.pos++
			}
			b.WriteString("#{…}")
			continue
		case dq && c == '#' && (l.peekAt(1) == '@' || l.peekAt(1) == '$'):
			t.interp = true
		case c == open && open != close:
			depth++
		case c == close:
			if depth == 0 {
				l.pos++
				t.text = b.String()
				return t, nil
			}
			depth--
		case c == '\n':
			l.line++
		}
		b.WriteByte(c)
		l.pos++
	}
}
