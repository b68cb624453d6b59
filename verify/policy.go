package verify

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	"gopkg.in/yaml.v3"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/provenance"
)

// PolicyAPIVersion and PolicyKind identify a policy file.
const (
	PolicyAPIVersion = "vmbuild/v1"
	PolicyKind       = "VerifyPolicy"
	// Any is the value that leaves a policy field unconstrained, written
	// out on purpose (`baseImages: any`).
	Any = "any"
	// MaxPolicyBytes bounds a policy file.
	MaxPolicyBytes = 1 << 20
)

// Policy says which images are trusted beyond "signed by a trusted key
// and carrying well-formed vmbuild provenance". Every constraint must be
// given explicitly: a field left empty is a configuration error, not
// "anything goes" (set the matching Any* field for that). Build one in
// code or read one with [LoadPolicy] / [ParsePolicy]; [NoPolicy] is the
// explicit "no policy" choice.
type Policy struct {
	// Source is the upstream repository, exactly as provenance records it
	// (externalParameters.upstream.repository, sanitized; see
	// provenance.SanitizeURL). AnySource allows every repository.
	Source    string
	AnySource bool

	// Commits are the allowed upstream commits (40 hex). HistoryFile names
	// a `vmbuild track` history (JSON lines): every commit it records as
	// published is allowed too. It is read at each Verify, so a
	// long-running verifier sees new publications. AnyCommit allows every
	// commit.
	Commits     []string
	HistoryFile string
	AnyCommit   bool

	// Patches is the exact patch set: every patch the provenance records
	// must be listed (by sha256) and every listed patch must be recorded.
	// An empty, non-nil list means "no patch at all". AnyPatches allows
	// every patch set.
	Patches    []PolicyPatch
	AnyPatches bool

	// BaseImages are the allowed digests of the images the build started
	// from: the recipe's base image and, in dockerfile mode, every image
	// the Dockerfile pulled. AnyBaseImage allows every image.
	BaseImages   []digest.Digest
	AnyBaseImage bool

	// Builders are the trusted builder ids (runDetails.builder.id).
	// Empty means [provenance.DefaultBuilderID] only.
	Builders []string

	// File is where the policy was read from (for messages), if anywhere.
	File string

	noPolicy    bool
	historyLine int // line of `history:` in File, for messages
}

// PolicyPatch is one patch of the allowed set. Name is optional; when
// given, the provenance must record the patch under that name.
type PolicyPatch struct {
	Name   string `json:"name,omitempty"`
	SHA256 string `json:"sha256"`
}

// NoPolicy is the explicit choice to verify without a policy: the
// signature, the provenance's signature and form, and a builder id equal
// to provenance.DefaultBuilderID are checked; source, commit, patches and
// base images are not (their checks are reported as skipped).
func NoPolicy() *Policy {
	return &Policy{AnySource: true, AnyCommit: true, AnyPatches: true, AnyBaseImage: true, noPolicy: true}
}

// IsNoPolicy reports whether p is [NoPolicy].
func (p *Policy) IsNoPolicy() bool { return p != nil && p.noPolicy }

// trustedBuilders returns the builder ids p trusts.
func (p *Policy) trustedBuilders() []string {
	if len(p.Builders) == 0 {
		return []string{provenance.DefaultBuilderID}
	}
	return p.Builders
}

var (
	commitRE = regexp.MustCompile(`^[0-9a-f]{40}$`)
	hex64RE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Validate checks a policy built in code (ParsePolicy validates as it
// reads). Errors match errs.ErrInvalidPolicy.
func (p *Policy) Validate() error {
	if p == nil {
		return fmt.Errorf("%w: no policy: give one, or verify.NoPolicy() to verify without one", errs.ErrInvalidPolicy)
	}
	bad := func(format string, args ...any) error {
		where := "policy"
		if p.File != "" {
			where = "policy " + p.File
		}
		return fmt.Errorf("%w: %s: %s", errs.ErrInvalidPolicy, where, fmt.Sprintf(format, args...))
	}
	switch {
	case p.AnySource && p.Source != "":
		return bad("source: both a repository and any")
	case !p.AnySource && p.Source == "":
		return bad("source: required (a repository, or any)")
	}
	if p.Source != "" {
		if clean, err := provenance.SanitizeURL(p.Source); err != nil || clean != p.Source {
			return bad("source: %q is not in the sanitized form provenance records (no credentials, query or fragment)", p.Source)
		}
	}
	switch {
	case p.AnyCommit && (len(p.Commits) > 0 || p.HistoryFile != ""):
		return bad("commits: both a list (or history) and any")
	case !p.AnyCommit && len(p.Commits) == 0 && p.HistoryFile == "":
		return bad("commits: required (a list, a history file, or any)")
	}
	for i, c := range p.Commits {
		if !commitRE.MatchString(c) {
			return bad("commits[%d]: %q is not a 40 hex commit id", i, c)
		}
	}
	switch {
	case p.AnyPatches && len(p.Patches) > 0:
		return bad("patches: both a list and any")
	case !p.AnyPatches && p.Patches == nil:
		return bad("patches: required (a list, [] for none, or any)")
	}
	seen := map[string]bool{}
	for i, pt := range p.Patches {
		if !hex64RE.MatchString(pt.SHA256) {
			return bad("patches[%d].sha256: %q is not 64 lowercase hex", i, pt.SHA256)
		}
		if seen[pt.SHA256] {
			return bad("patches[%d].sha256: listed twice", i)
		}
		seen[pt.SHA256] = true
	}
	switch {
	case p.AnyBaseImage && len(p.BaseImages) > 0:
		return bad("baseImages: both a list and any")
	case !p.AnyBaseImage && len(p.BaseImages) == 0:
		return bad("baseImages: required (a list of sha256 digests, or any)")
	}
	for i, d := range p.BaseImages {
		if d.Algorithm() != digest.SHA256 || d.Validate() != nil {
			return bad("baseImages[%d]: %q is not sha256:<64 hex>", i, d)
		}
	}
	for i, b := range p.Builders {
		if b == "" {
			return bad("builders[%d]: empty", i)
		}
	}
	return nil
}

// PolicyFieldError is one problem in a policy file, located by file, line
// and the dotted path of the field.
type PolicyFieldError struct {
	File   string
	Line   int
	Column int
	Field  string
	Msg    string
}

func (e *PolicyFieldError) Error() string {
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

// PolicyError lists every problem found in a policy file, in file order.
// It matches errs.ErrInvalidPolicy.
type PolicyError struct {
	File   string
	Fields []*PolicyFieldError
}

func (e *PolicyError) Error() string {
	if len(e.Fields) == 1 {
		return "invalid policy: " + e.Fields[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "invalid policy %s: %d problems:", e.File, len(e.Fields))
	for _, f := range e.Fields {
		b.WriteString("\n  ")
		b.WriteString(f.Error())
	}
	return b.String()
}

func (e *PolicyError) Is(target error) bool { return target == errs.ErrInvalidPolicy }

// LoadPolicy reads and parses the policy file at path. A relative
// history path in it resolves against the policy file's directory.
func LoadPolicy(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading policy: %w: %w", errs.ErrInvalidPolicy, err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, MaxPolicyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading policy %s: %w: %w", path, errs.ErrInvalidPolicy, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("reading policy: %w", err)
	}
	p, err := ParsePolicy(path, raw)
	if err != nil {
		return nil, err
	}
	if p.HistoryFile != "" && !filepath.IsAbs(p.HistoryFile) {
		p.HistoryFile = filepath.Join(filepath.Dir(abs), p.HistoryFile)
	}
	if p.HistoryFile != "" {
		if st, err := os.Stat(p.HistoryFile); err != nil || !st.Mode().IsRegular() {
			return nil, &PolicyError{File: path, Fields: []*PolicyFieldError{{File: path, Line: p.historyLine, Field: "history", Msg: fmt.Sprintf("%s is not a readable file", p.HistoryFile)}}}
		}
	}
	return p, nil
}

// ParsePolicy parses policy YAML strictly: unknown and duplicate keys,
// wrong types, malformed digests and missing required fields are errors
// naming file:line and the field (a *PolicyError). file is used in
// messages; a relative history path is returned as written.
func ParsePolicy(file string, raw []byte) (*Policy, error) {
	d := &pdecoder{file: file}
	if len(raw) > MaxPolicyBytes {
		d.errAt(nil, "", "larger than %d bytes", MaxPolicyBytes)
		return nil, d.result()
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		line := 0
		msg := err.Error()
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = strings.TrimSpace(yamlLineRE.ReplaceAllString(msg, ""))
		}
		msg = strings.TrimPrefix(msg, "yaml: ")
		return nil, &PolicyError{File: file, Fields: []*PolicyFieldError{{File: file, Line: line, Msg: "malformed YAML: " + msg}}}
	}
	if len(doc.Content) == 0 {
		d.errAt(nil, "", "the file is empty")
		return nil, d.result()
	}
	p := &Policy{File: file}
	d.policy(doc.Content[0], p)
	if err := d.result(); err != nil {
		return nil, err
	}
	// The decoder checked everything field by field; Validate is the
	// backstop for rules across fields.
	if err := p.Validate(); err != nil {
		return nil, &PolicyError{File: file, Fields: []*PolicyFieldError{{File: file, Line: 1, Msg: strings.TrimPrefix(err.Error(), errs.ErrInvalidPolicy.Error()+": ")}}}
	}
	return p, nil
}

var yamlLineRE = regexp.MustCompile(`(?:yaml: )?line (\d+):`)

type pdecoder struct {
	file string
	errs []*PolicyFieldError
}

func (d *pdecoder) result() error {
	if len(d.errs) == 0 {
		return nil
	}
	sort.SliceStable(d.errs, func(i, j int) bool { return d.errs[i].Line < d.errs[j].Line })
	return &PolicyError{File: d.file, Fields: d.errs}
}

func (d *pdecoder) errAt(n *yaml.Node, field, format string, args ...any) {
	fe := &PolicyFieldError{File: d.file, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		fe.Line, fe.Column = n.Line, n.Column
	}
	if len(d.errs) < 100 {
		d.errs = append(d.errs, fe)
	}
}

func kindName(n *yaml.Node) string {
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

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

// Aliases are refused outright: a policy is short, and alias expansion is
// how YAML bombs work.
func (d *pdecoder) noAlias(n *yaml.Node, field string) bool {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		d.errAt(n, field, "YAML anchors and aliases are not supported in a policy")
		return false
	}
	return true
}

type pfields map[string]func(n *yaml.Node, field string)

func (d *pdecoder) mapping(n *yaml.Node, field string, fields pfields, required ...string) map[string]*yaml.Node {
	if !d.noAlias(n, field) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		d.errAt(n, field, "must be a mapping, not %s", kindName(n))
		return nil
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !d.noAlias(k, field) {
			continue
		}
		if k.Kind == yaml.ScalarNode && k.Value == "<<" {
			d.errAt(k, field, "YAML merge keys (<<) are not supported")
			continue
		}
		if k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
			d.errAt(k, field, "keys must be strings")
			continue
		}
		name := join(field, k.Value)
		if prev, dup := seen[k.Value]; dup {
			d.errAt(k, name, "duplicate key (first defined on line %d)", prev.Line)
			continue
		}
		seen[k.Value] = k
		fn, ok := fields[k.Value]
		if !ok {
			names := make([]string, 0, len(fields))
			for f := range fields {
				names = append(names, f)
			}
			sort.Strings(names)
			d.errAt(k, name, "unknown field (allowed: %s)", strings.Join(names, ", "))
			continue
		}
		fn(v, name)
	}
	for _, req := range required {
		if _, ok := seen[req]; !ok {
			d.errAt(n, join(field, req), "missing required field")
		}
	}
	return seen
}

func (d *pdecoder) str(n *yaml.Node, field string) string {
	if !d.noAlias(n, field) {
		return ""
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		d.errAt(n, field, "must be a string, not %s", kindName(n))
		return ""
	}
	if n.Value == "" {
		d.errAt(n, field, "must not be empty")
	}
	return n.Value
}

// hex decodes a hexadecimal value (a commit id, a sha256): unquoted hex
// of only digits reads as a YAML number, so a plain scalar's text is taken
// as written whatever its tag (the pattern check follows).
func (d *pdecoder) hex(n *yaml.Node, field string) string {
	if n.Kind == yaml.ScalarNode && (n.Tag == "!!int" || n.Tag == "!!float") && n.Anchor == "" {
		return n.Value
	}
	return d.str(n, field)
}

// isAny reports whether n is the scalar `any`.
func isAny(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!str" && n.Value == Any
}

// list decodes a list; `any` instead of a list sets *anyOut (when allowed).
func (d *pdecoder) list(n *yaml.Node, field string, anyOut *bool, each func(i int, n *yaml.Node, field string)) bool {
	if !d.noAlias(n, field) {
		return false
	}
	if anyOut != nil && isAny(n) {
		*anyOut = true
		return false
	}
	if n.Kind != yaml.SequenceNode {
		hint := ""
		if anyOut != nil {
			hint = " (or any)"
		}
		d.errAt(n, field, "must be a list%s, not %s", hint, kindName(n))
		return false
	}
	if len(n.Content) > 10000 {
		d.errAt(n, field, "more than 10000 entries")
		return false
	}
	for i, c := range n.Content {
		each(i, c, fmt.Sprintf("%s[%d]", field, i))
	}
	return true
}

func (d *pdecoder) policy(n *yaml.Node, p *Policy) {
	var commitsNode, historyNode *yaml.Node
	d.mapping(n, "", pfields{
		"apiVersion": func(n *yaml.Node, f string) {
			if v := d.str(n, f); v != "" && v != PolicyAPIVersion {
				d.errAt(n, f, "unsupported apiVersion %q (this vmbuild reads %q)", v, PolicyAPIVersion)
			}
		},
		"kind": func(n *yaml.Node, f string) {
			if v := d.str(n, f); v != "" && v != PolicyKind {
				d.errAt(n, f, "kind %q, want %q", v, PolicyKind)
			}
		},
		"source": func(n *yaml.Node, f string) {
			v := d.str(n, f)
			switch {
			case v == "":
			case v == Any:
				p.AnySource = true
			default:
				if clean, err := provenance.SanitizeURL(v); err != nil {
					d.errAt(n, f, "%v", err)
				} else if clean != v {
					d.errAt(n, f, "%q is not in the sanitized form provenance records (it would be %q): no credentials, query or fragment", v, clean)
				} else {
					p.Source = v
				}
			}
		},
		"commits": func(n *yaml.Node, f string) {
			commitsNode = n
			d.list(n, f, &p.AnyCommit, func(_ int, n *yaml.Node, f string) {
				v := d.hex(n, f)
				if v != "" && !commitRE.MatchString(v) {
					d.errAt(n, f, "%q is not a full commit id (40 lowercase hex)", v)
					return
				}
				if v != "" {
					p.Commits = append(p.Commits, v)
				}
			})
		},
		"history": func(n *yaml.Node, f string) {
			historyNode = n
			p.HistoryFile = d.str(n, f)
		},
		"patches": func(n *yaml.Node, f string) {
			seen := map[string]int{}
			if d.list(n, f, &p.AnyPatches, func(_ int, n *yaml.Node, f string) {
				var pt PolicyPatch
				d.mapping(n, f, pfields{
					"name": func(n *yaml.Node, f string) { pt.Name = d.str(n, f) },
					"sha256": func(n *yaml.Node, f string) {
						v := d.hex(n, f)
						v = strings.TrimPrefix(v, "sha256:")
						if v != "" && !hex64RE.MatchString(v) {
							d.errAt(n, f, "%q is not a sha256 (64 lowercase hex)", v)
							return
						}
						if prev, dup := seen[v]; dup && v != "" {
							d.errAt(n, f, "the same patch is listed twice (first on line %d)", prev)
							return
						}
						seen[v] = n.Line
						pt.SHA256 = v
					},
				}, "sha256")
				if pt.SHA256 != "" {
					p.Patches = append(p.Patches, pt)
				}
			}) && p.Patches == nil {
				p.Patches = []PolicyPatch{}
			}
		},
		"baseImages": func(n *yaml.Node, f string) {
			d.list(n, f, &p.AnyBaseImage, func(_ int, n *yaml.Node, f string) {
				v := d.str(n, f)
				if v == "" {
					return
				}
				dg, err := digest.Parse(v)
				if err != nil || dg.Algorithm() != digest.SHA256 {
					d.errAt(n, f, "%q is not an image digest (sha256:<64 hex>)", v)
					return
				}
				p.BaseImages = append(p.BaseImages, dg)
			})
		},
		"builders": func(n *yaml.Node, f string) {
			d.list(n, f, nil, func(_ int, n *yaml.Node, f string) {
				if v := d.str(n, f); v != "" {
					p.Builders = append(p.Builders, v)
				}
			})
		},
	}, "apiVersion", "kind", "source", "patches", "baseImages")
	switch {
	case commitsNode == nil && historyNode == nil:
		d.errAt(n, "commits", "missing required field (give commits, history, or both; `commits: any` allows every commit)")
	case p.AnyCommit && historyNode != nil:
		d.errAt(historyNode, "history", "commits is any: a history file adds nothing")
	}
	if historyNode != nil {
		p.historyLine = historyNode.Line
	}
}
