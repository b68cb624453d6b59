package deb

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// paragraph is one deb822 stanza: field names as written (matching is
// case-insensitive, as Debian's is) and values with continuation lines
// joined by "\n" and their leading space removed.
type paragraph struct {
	// Line is the 1-based line the stanza starts on, for messages.
	Line   int
	fields []field
}

type field struct{ name, value string }

// Get returns the value of a field (case-insensitive name), "" if absent.
func (p *paragraph) Get(name string) string {
	v, _ := p.Lookup(name)
	return v
}

// Lookup returns the value of a field and whether it is present.
func (p *paragraph) Lookup(name string) (string, bool) {
	for _, f := range p.fields {
		if strings.EqualFold(f.name, name) {
			return f.value, true
		}
	}
	return "", false
}

// readParagraphs calls fn for each stanza of r, a deb822 file (Packages,
// Release, a control file). It stops at fn's first error. Lines starting
// with '#' between stanzas are comments. name is the file's name for
// messages. keep, if not nil, selects the fields to keep (the others and
// their continuation lines are skipped without allocating).
func readParagraphs(r io.Reader, name string, keep func(field []byte) bool, fn func(*paragraph) error) error {
	br := bufio.NewReaderSize(r, 1<<16)
	var cur *paragraph
	line := 0
	skipping := false
	flush := func() error {
		if cur == nil {
			return nil
		}
		p := cur
		cur = nil
		return fn(p)
	}
	for {
		b, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A very long line: gather it whole.
			buf := append([]byte(nil), b...)
			for err == bufio.ErrBufferFull {
				b, err = br.ReadSlice('\n')
				buf = append(buf, b...)
			}
			b = buf
		}
		if len(b) == 0 && err != nil {
			if err == io.EOF {
				return flush()
			}
			return fmt.Errorf("reading %s: %w", name, err)
		}
		line++
		b = bytes.TrimRight(b, "\r\n")
		switch {
		case len(bytes.TrimSpace(b)) == 0:
			skipping = false
			if err := flush(); err != nil {
				return err
			}
		case b[0] == ' ' || b[0] == '\t':
			if skipping {
				break
			}
			if cur == nil || len(cur.fields) == 0 {
				return fmt.Errorf("reading %s: line %d: continuation line outside a field", name, line)
			}
			f := &cur.fields[len(cur.fields)-1]
			cont := bytes.TrimLeft(b, " \t")
			if f.value == "" {
				f.value = string(cont)
			} else {
				f.value += "\n" + string(cont)
			}
		case b[0] == '#' && cur == nil:
			// comment
		default:
			i := bytes.IndexByte(b, ':')
			if i <= 0 {
				return fmt.Errorf("reading %s: line %d: %q is not a field", name, line, truncate(string(b), 60))
			}
			if cur == nil {
				cur = &paragraph{Line: line}
			}
			if skipping = keep != nil && !keep(b[:i]); skipping {
				break
			}
			cur.fields = append(cur.fields, field{
				name:  string(b[:i]),
				value: string(bytes.TrimSpace(b[i+1:])),
			})
		}
		if err == io.EOF {
			return flush()
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
