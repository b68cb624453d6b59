// Package strictyaml decodes hand-written YAML configuration strictly:
// unknown and duplicate keys, wrong types and missing fields are errors
// naming the file, line, column and the dotted field path
// (build.layers[1].outputs[0]), every problem in the file at once. Recipes
// and verification policies use it.
package strictyaml

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FieldError is one problem, located by file, line, column and field.
type FieldError struct {
	File   string
	Line   int
	Column int
	Field  string
	Msg    string
}

func (e *FieldError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
		if e.Column > 0 {
			loc = fmt.Sprintf("%s:%d", loc, e.Column)
		}
	}
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", loc, e.Field, e.Msg)
	}
	return fmt.Sprintf("%s: %s", loc, e.Msg)
}

// Error lists every problem found in a file, in file order. It matches
// (errors.Is) its Sentinel.
type Error struct {
	What     string // "recipe", "policy"
	File     string
	Fields   []*FieldError
	Sentinel error
}

func (e *Error) Error() string {
	if len(e.Fields) == 1 {
		return "invalid " + e.What + ": " + e.Fields[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "invalid %s %s: %d problems:", e.What, e.File, len(e.Fields))
	for _, f := range e.Fields {
		b.WriteString("\n  ")
		b.WriteString(f.Error())
	}
	return b.String()
}

func (e *Error) Is(target error) bool { return e.Sentinel != nil && target == e.Sentinel }

// Options tune a Decoder.
type Options struct {
	// RefuseAliases makes anchors and aliases errors (alias expansion is
	// how YAML bombs work); otherwise aliases are followed.
	RefuseAliases bool
	// MaxErrors bounds the problems collected (default 100).
	MaxErrors int
}

// Decoder collects the problems of one file.
type Decoder struct {
	what, file string
	sentinel   error
	opts       Options
	errs       []*FieldError
}

// NewDecoder returns a decoder for file; what names the kind of file in
// messages and sentinel is the error class its errors match.
func NewDecoder(what, file string, sentinel error, opts Options) *Decoder {
	if opts.MaxErrors == 0 {
		opts.MaxErrors = 100
	}
	return &Decoder{what: what, file: file, sentinel: sentinel, opts: opts}
}

var yamlLineRE = regexp.MustCompile(`(?:yaml: )?line (\d+):`)

// Parse parses raw and returns its top node, or an *Error for malformed
// or empty YAML.
func (d *Decoder) Parse(raw []byte) (*yaml.Node, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	err := dec.Decode(&doc)
	if err == io.EOF {
		d.ErrAt(nil, "", "the file is empty")
		return nil, d.Result()
	}
	if err == nil {
		// A second document ("---") would otherwise be silently ignored,
		// whatever it says: refuse it.
		var next yaml.Node
		switch nerr := dec.Decode(&next); {
		case nerr == io.EOF:
		case nerr != nil:
			err = nerr
		default:
			line := next.Line
			if line == 0 && len(next.Content) > 0 {
				line = next.Content[0].Line
			}
			d.errs = append(d.errs, &FieldError{File: d.file, Line: line,
				Msg: fmt.Sprintf("a second YAML document starts here; a %s is exactly one document (remove the \"---\" and what follows, or merge it into the first)", d.what)})
			return nil, d.Result()
		}
	}
	if err != nil {
		line := 0
		msg := err.Error()
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = strings.TrimSpace(yamlLineRE.ReplaceAllString(msg, ""))
		}
		msg = strings.TrimPrefix(msg, "yaml: ")
		d.errs = append(d.errs, &FieldError{File: d.file, Line: line, Msg: "malformed YAML: " + msg})
		return nil, d.Result()
	}
	if len(doc.Content) == 0 {
		d.ErrAt(nil, "", "the file is empty")
		return nil, d.Result()
	}
	return doc.Content[0], nil
}

// Result is nil when no problem was found, else the *Error.
func (d *Decoder) Result() error {
	if len(d.errs) == 0 {
		return nil
	}
	sort.SliceStable(d.errs, func(i, j int) bool { return d.errs[i].Line < d.errs[j].Line })
	return &Error{What: d.what, File: d.file, Fields: d.errs, Sentinel: d.sentinel}
}

// Failed reports whether a problem was found so far.
func (d *Decoder) Failed() bool { return len(d.errs) > 0 }

// ErrAt records a problem at n (nil: no position).
func (d *Decoder) ErrAt(n *yaml.Node, field, format string, args ...any) {
	fe := &FieldError{File: d.file, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		fe.Line, fe.Column = n.Line, n.Column
	}
	d.ErrLine(fe)
}

// ErrLine records a problem already located.
func (d *Decoder) ErrLine(fe *FieldError) {
	if fe.File == "" {
		fe.File = d.file
	}
	if len(d.errs) < d.opts.MaxErrors {
		d.errs = append(d.errs, fe)
	}
}

// KindName describes a node for messages ("a mapping", "a number").
func KindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "null"
		case "!!bool":
			return "a boolean"
		case "!!int", "!!float":
			return "a number"
		}
		return "a string"
	}
	return "something else"
}

// Join appends key to a dotted field path.
func Join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

// node follows aliases, or refuses them.
func (d *Decoder) node(n *yaml.Node, field string) (*yaml.Node, bool) {
	if d.opts.RefuseAliases {
		if n.Kind == yaml.AliasNode || n.Anchor != "" {
			d.ErrAt(n, field, "YAML anchors and aliases are not supported in a %s", d.what)
			return n, false
		}
		return n, true
	}
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n, true
}

// Fields maps the keys a mapping allows to their decoders.
type Fields map[string]func(n *yaml.Node, field string)

// Mapping decodes a mapping strictly: unknown (with a suggestion for a
// near miss) and duplicate keys, merge keys and non-string keys are
// errors, and so are missing required keys. It returns the key nodes
// seen, by name (nil when n is not a mapping).
func (d *Decoder) Mapping(n *yaml.Node, field string, fields Fields, required ...string) map[string]*yaml.Node {
	n, ok := d.node(n, field)
	if !ok {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		d.ErrAt(n, field, "must be a mapping, not %s", KindName(n))
		return nil
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		k, ok := d.node(k, field)
		if !ok {
			continue
		}
		if k.Kind == yaml.ScalarNode && k.Value == "<<" {
			d.ErrAt(k, field, "YAML merge keys (<<) are not supported")
			continue
		}
		if k.Kind != yaml.ScalarNode || (k.Tag != "!!str" && d.opts.RefuseAliases) {
			d.ErrAt(k, field, "keys must be strings")
			continue
		}
		name := Join(field, k.Value)
		if prev, dup := seen[k.Value]; dup {
			d.ErrAt(k, name, "duplicate key (first defined on line %d)", prev.Line)
			continue
		}
		seen[k.Value] = k
		fn, ok := fields[k.Value]
		if !ok {
			d.ErrAt(k, name, "unknown field%s (allowed: %s)", suggest(k.Value, fields), strings.Join(keys(fields), ", "))
			continue
		}
		fn(v, name)
	}
	for _, req := range required {
		if _, ok := seen[req]; !ok {
			d.ErrAt(n, Join(field, req), "missing required field")
		}
	}
	return seen
}

func keys(m Fields) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func suggest(got string, m Fields) string {
	best, bestD := "", 3
	for k := range m {
		if dd := editDistance(strings.ToLower(got), strings.ToLower(k)); dd < bestD {
			best, bestD = k, dd
		}
	}
	if best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return ""
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// Str decodes a string. A number or boolean written unquoted is an error
// that says to quote it (YAML 1.1 tools read "yes" or 0755 differently).
func (d *Decoder) Str(n *yaml.Node, field string) string {
	n, ok := d.node(n, field)
	if !ok {
		return ""
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.ErrAt(n, field, "must be a string, not %s", KindName(n))
		return ""
	}
	if n.Tag != "!!str" {
		d.ErrAt(n, field, "must be a string, not %s (quote it: \"%s\")", KindName(n), n.Value)
		return ""
	}
	return n.Value
}

// Stringish decodes a scalar as its text: strings, and numbers and
// booleans as written (env values, build args: `PORT: 3000`).
func (d *Decoder) Stringish(n *yaml.Node, field string) string {
	n, ok := d.node(n, field)
	if !ok {
		return ""
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.ErrAt(n, field, "must be a string, not %s", KindName(n))
		return ""
	}
	return n.Value
}

// Bool decodes true or false.
func (d *Decoder) Bool(n *yaml.Node, field string) bool {
	n, ok := d.node(n, field)
	if !ok {
		return false
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		d.ErrAt(n, field, "must be true or false, not %s", KindName(n))
		return false
	}
	return n.Value == "true"
}

// Int decodes an integer.
func (d *Decoder) Int(n *yaml.Node, field string) int {
	n, ok := d.node(n, field)
	if !ok {
		return 0
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		d.ErrAt(n, field, "must be an integer, not %s", KindName(n))
		return 0
	}
	v, err := strconv.Atoi(n.Value)
	if err != nil {
		d.ErrAt(n, field, "must be an integer: %v", err)
	}
	return v
}

// MaxListLen bounds the entries of one list.
const MaxListLen = 10000

// List decodes a list, calling each with every entry and its field path
// (field[i]). It reports whether n was a list.
func (d *Decoder) List(n *yaml.Node, field string, each func(i int, n *yaml.Node, field string)) bool {
	n, ok := d.node(n, field)
	if !ok {
		return false
	}
	if n.Kind != yaml.SequenceNode {
		d.ErrAt(n, field, "must be a list, not %s", KindName(n))
		return false
	}
	if len(n.Content) > MaxListLen {
		d.ErrAt(n, field, "more than %d entries", MaxListLen)
		return false
	}
	for i, c := range n.Content {
		each(i, c, fmt.Sprintf("%s[%d]", field, i))
	}
	return true
}

// StrList decodes a list of strings.
func (d *Decoder) StrList(n *yaml.Node, field string) []string {
	out := []string{}
	d.List(n, field, func(_ int, c *yaml.Node, f string) {
		out = append(out, d.Str(c, f))
	})
	return out
}

// StrMap decodes a mapping of names to scalar values (as text).
func (d *Decoder) StrMap(n *yaml.Node, field string) map[string]string {
	out := map[string]string{}
	n, ok := d.node(n, field)
	if !ok {
		return out
	}
	if n.Kind != yaml.MappingNode {
		d.ErrAt(n, field, "must be a mapping of names to values, not %s", KindName(n))
		return out
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		k, ok := d.node(k, field)
		if !ok {
			continue
		}
		name := Join(field, k.Value)
		if prev, dup := seen[k.Value]; dup {
			d.ErrAt(k, name, "duplicate key (first defined on line %d)", prev)
			continue
		}
		seen[k.Value] = k.Line
		out[k.Value] = d.Stringish(v, name)
	}
	return out
}

// Resolve follows aliases (for callers inspecting a node's kind or line).
func Resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}
