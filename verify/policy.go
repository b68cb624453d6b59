package verify

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"
	"go.yaml.in/yaml/v3"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/redact"
	"github.com/vmbuild/vmbuild/internal/strictyaml"
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

	// The fields below came after the first policies were written: left
	// out (nil, false), they do not constrain, and their checks are
	// reported as skipped.

	// Recipes are the allowed sha256 (64 lowercase hex) of the recipe
	// file (externalParameters.recipe.sha256). AnyRecipe allows every
	// recipe, on purpose.
	Recipes   []string
	AnyRecipe bool

	// Frontends are the allowed digests of the Dockerfile frontend image
	// (the `# syntax=` line). An empty, non-nil list allows only builds
	// without one (BuildKit's built-in frontend, native builds).
	// AnyFrontend allows every frontend, on purpose.
	Frontends   []digest.Digest
	AnyFrontend bool

	// StrictPatches requires every patch to be recorded as applied
	// strictly: no offset, no fuzz, not optional, and it changed the tree
	// (provenance.Patch.Strict).
	StrictPatches bool

	// Hermetic requires the provenance to record that no step had network
	// access and nothing was downloaded unpinned (provenance.Info's
	// NonHermetic recorded and empty).
	Hermetic bool

	// Debian constrains a base assembled from Debian packages: the suites
	// it may come from and the archive keys whose signature on the index
	// must have verified. nil: not constrained (checked, when set, also
	// that the base is assembled from Debian packages).
	Debian *PolicyDebian

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

// PolicyDebian is the policy's debianBase: each list, when given, must
// contain the provenance's value (a list left out does not constrain).
type PolicyDebian struct {
	// Suites are the allowed suites ("trixie", "sid"), as the recipe
	// names them.
	Suites []string `json:"suites,omitempty"`
	// SignedBy are the allowed fingerprints (40 or 64 hex; spaces and
	// case ignored) of the primary key whose signature on InRelease
	// verified: the Debian archive's keys, or a mirror's own.
	SignedBy []string `json:"signedBy,omitempty"`
	// Keyrings are the allowed sha256 (64 hex) of the keyring file the
	// index was verified against.
	Keyrings []string `json:"keyrings,omitempty"`
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

// normFingerprint writes an OpenPGP fingerprint as provenance records it:
// uppercase hex, no spaces.
func normFingerprint(s string) string {
	return strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), " ", ""))
}

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
		if clean, err := redact.URL(p.Source); err != nil || clean != p.Source {
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
	switch {
	case p.AnyRecipe && len(p.Recipes) > 0:
		return bad("recipes: both a list and any")
	case p.Recipes != nil && len(p.Recipes) == 0:
		return bad("recipes: an empty list allows no recipe (list sha256 digests, or any)")
	}
	seen = map[string]bool{}
	for i, r := range p.Recipes {
		if !hex64RE.MatchString(r) {
			return bad("recipes[%d]: %q is not 64 lowercase hex", i, r)
		}
		if seen[r] {
			return bad("recipes[%d]: listed twice", i)
		}
		seen[r] = true
	}
	if p.AnyFrontend && len(p.Frontends) > 0 {
		return bad("frontends: both a list and any")
	}
	if deb := p.Debian; deb != nil {
		if deb.Suites == nil && deb.SignedBy == nil && deb.Keyrings == nil {
			return bad("debianBase: constrains nothing (give suites, signedBy or keyrings)")
		}
		for i, f := range deb.SignedBy {
			if !provenance.IsFingerprint(f) {
				return bad("debianBase.signedBy[%d]: %q is not an uppercase OpenPGP fingerprint", i, f)
			}
		}
		for i, k := range deb.Keyrings {
			if !hex64RE.MatchString(k) {
				return bad("debianBase.keyrings[%d]: %q is not 64 lowercase hex", i, k)
			}
		}
	}
	for i, d := range p.Frontends {
		if d.Algorithm() != digest.SHA256 || d.Validate() != nil {
			return bad("frontends[%d]: %q is not sha256:<64 hex>", i, d)
		}
	}
	return nil
}

// PolicyFieldError is one problem in a policy file, located by file, line
// and the dotted path of the field.
type PolicyFieldError = strictyaml.FieldError

// PolicyError lists every problem found in a policy file, in file order.
// It matches errs.ErrInvalidPolicy.
type PolicyError = strictyaml.Error

func policyError(file string, fe *PolicyFieldError) *PolicyError {
	return &PolicyError{What: "policy", File: file, Fields: []*PolicyFieldError{fe}, Sentinel: errs.ErrInvalidPolicy}
}

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
			return nil, policyError(path, &PolicyFieldError{File: path, Line: p.historyLine, Field: "history", Msg: fmt.Sprintf("%s is not a readable file", p.HistoryFile)})
		}
	}
	return p, nil
}

// ParsePolicy parses policy YAML strictly: unknown and duplicate keys,
// wrong types, malformed digests and missing required fields are errors
// naming file:line and the field (a *PolicyError). file is used in
// messages; a relative history path is returned as written.
func ParsePolicy(file string, raw []byte) (*Policy, error) {
	d := &pdecoder{Decoder: strictyaml.NewDecoder("policy", file, errs.ErrInvalidPolicy, strictyaml.Options{RefuseAliases: true})}
	if len(raw) > MaxPolicyBytes {
		d.ErrAt(nil, "", "larger than %d bytes", MaxPolicyBytes)
		return nil, d.Result()
	}
	top, err := d.Parse(raw)
	if err != nil {
		return nil, err
	}
	p := &Policy{File: file}
	d.policy(top, p)
	if err := d.Result(); err != nil {
		return nil, err
	}
	// The decoder checked everything field by field; Validate is the
	// backstop for rules across fields.
	if err := p.Validate(); err != nil {
		return nil, policyError(file, &PolicyFieldError{File: file, Line: 1, Msg: strings.TrimPrefix(err.Error(), errs.ErrInvalidPolicy.Error()+": ")})
	}
	return p, nil
}

type pdecoder struct{ *strictyaml.Decoder }

type pfields = strictyaml.Fields

func (d *pdecoder) mapping(n *yaml.Node, field string, fields pfields, required ...string) map[string]*yaml.Node {
	return d.Mapping(n, field, fields, required...)
}

// str decodes a non-empty string.
func (d *pdecoder) str(n *yaml.Node, field string) string {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && n.Value == "" && n.Anchor == "" {
		d.ErrAt(n, field, "must not be empty")
		return ""
	}
	return d.Str(n, field)
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

// imageDigest decodes an image digest, sha256:<64 hex>; ok is false (and
// the error recorded, unless the value is empty) when it is not one.
func (d *pdecoder) imageDigest(n *yaml.Node, field string) (digest.Digest, bool) {
	v := d.str(n, field)
	if v == "" {
		return "", false
	}
	dg, err := digest.Parse(v)
	if err != nil || dg.Algorithm() != digest.SHA256 {
		d.ErrAt(n, field, "%q is not an image digest (sha256:<64 hex>)", v)
		return "", false
	}
	return dg, true
}

// isAny reports whether n is the scalar `any`.
func isAny(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!str" && n.Value == Any
}

// list decodes a list; `any` instead of a list sets *anyOut (when allowed).
func (d *pdecoder) list(n *yaml.Node, field string, anyOut *bool, each func(i int, n *yaml.Node, field string)) bool {
	if anyOut != nil && isAny(n) && n.Anchor == "" {
		*anyOut = true
		return false
	}
	if anyOut != nil && n.Kind != yaml.SequenceNode && n.Kind != yaml.AliasNode && n.Anchor == "" {
		d.ErrAt(n, field, "must be a list (or any), not %s", strictyaml.KindName(n))
		return false
	}
	return d.List(n, field, each)
}

func (d *pdecoder) policy(n *yaml.Node, p *Policy) {
	var commitsNode, historyNode *yaml.Node
	d.mapping(n, "", pfields{
		"apiVersion": func(n *yaml.Node, f string) {
			if v := d.str(n, f); v != "" && v != PolicyAPIVersion {
				d.ErrAt(n, f, "unsupported apiVersion %q (this vmbuild reads %q)", v, PolicyAPIVersion)
			}
		},
		"kind": func(n *yaml.Node, f string) {
			if v := d.str(n, f); v != "" && v != PolicyKind {
				d.ErrAt(n, f, "kind %q, want %q", v, PolicyKind)
			}
		},
		"source": func(n *yaml.Node, f string) {
			v := d.str(n, f)
			switch {
			case v == "":
			case v == Any:
				p.AnySource = true
			default:
				if clean, err := redact.URL(v); err != nil {
					d.ErrAt(n, f, "%v", err)
				} else if clean != v {
					d.ErrAt(n, f, "%q is not in the sanitized form provenance records (it would be %q): no credentials, query or fragment", v, clean)
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
					d.ErrAt(n, f, "%q is not a full commit id (40 lowercase hex)", v)
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
							d.ErrAt(n, f, "%q is not a sha256 (64 lowercase hex)", v)
							return
						}
						if prev, dup := seen[v]; dup && v != "" {
							d.ErrAt(n, f, "the same patch is listed twice (first on line %d)", prev)
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
				if dg, ok := d.imageDigest(n, f); ok {
					p.BaseImages = append(p.BaseImages, dg)
				}
			})
		},
		"builders": func(n *yaml.Node, f string) {
			d.list(n, f, nil, func(_ int, n *yaml.Node, f string) {
				if v := d.str(n, f); v != "" {
					p.Builders = append(p.Builders, v)
				}
			})
		},
		"recipes": func(n *yaml.Node, f string) {
			seen := map[string]int{}
			entries := 0
			if d.list(n, f, &p.AnyRecipe, func(_ int, n *yaml.Node, f string) {
				entries++
				v := strings.TrimPrefix(d.hex(n, f), "sha256:")
				switch prev, dup := seen[v]; {
				case v == "":
				case !hex64RE.MatchString(v):
					d.ErrAt(n, f, "%q is not a sha256 (64 lowercase hex)", v)
				case dup:
					d.ErrAt(n, f, "the same recipe is listed twice (first on line %d)", prev)
				default:
					seen[v] = n.Line
					p.Recipes = append(p.Recipes, v)
				}
			}) && entries == 0 {
				d.ErrAt(n, f, "an empty list allows no recipe (list sha256 digests, or any)")
			}
		},
		"frontends": func(n *yaml.Node, f string) {
			if d.list(n, f, &p.AnyFrontend, func(_ int, n *yaml.Node, f string) {
				if dg, ok := d.imageDigest(n, f); ok {
					p.Frontends = append(p.Frontends, dg)
				}
			}) && p.Frontends == nil {
				p.Frontends = []digest.Digest{}
			}
		},
		"strictPatches": func(n *yaml.Node, f string) { p.StrictPatches = d.Bool(n, f) },
		"hermetic":      func(n *yaml.Node, f string) { p.Hermetic = d.Bool(n, f) },
		"debianBase": func(n *yaml.Node, f string) {
			deb := &PolicyDebian{}
			each := func(out *[]string, check func(string) (string, bool), what string) func(n *yaml.Node, f string) {
				return func(n *yaml.Node, f string) {
					d.list(n, f, nil, func(_ int, n *yaml.Node, f string) {
						v := d.hex(n, f)
						if v == "" {
							return
						}
						norm, ok := check(v)
						if !ok {
							d.ErrAt(n, f, "%q is not %s", v, what)
							return
						}
						*out = append(*out, norm)
					})
				}
			}
			d.mapping(n, f, pfields{
				"suites": each(&deb.Suites, func(v string) (string, bool) {
					return v, !strings.ContainsAny(v, " \t/")
				}, "a suite name"),
				"signedBy": each(&deb.SignedBy, func(v string) (string, bool) {
					v = normFingerprint(v)
					return v, provenance.IsFingerprint(v)
				}, "an OpenPGP fingerprint (40 or 64 hex)"),
				"keyrings": each(&deb.Keyrings, func(v string) (string, bool) {
					v = strings.TrimPrefix(v, "sha256:")
					return v, hex64RE.MatchString(v)
				}, "a keyring's sha256 (64 lowercase hex)"),
			})
			if deb.Suites == nil && deb.SignedBy == nil && deb.Keyrings == nil {
				d.ErrAt(n, f, "constrains nothing: give suites, signedBy or keyrings")
				return
			}
			p.Debian = deb
		},
	}, "apiVersion", "kind", "source", "patches", "baseImages")
	switch {
	case commitsNode == nil && historyNode == nil:
		d.ErrAt(n, "commits", "missing required field (give commits, history, or both; `commits: any` allows every commit)")
	case p.AnyCommit && historyNode != nil:
		d.ErrAt(historyNode, "history", "commits is any: a history file adds nothing")
	}
	if historyNode != nil {
		p.historyLine = historyNode.Line
	}
}
