package lock

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/recipe"
)

// DepsVersion is the format version of NAME.deps.lock.json.
const DepsVersion = 1

// DepsPin, in the main lock, pins the dependency lock file beside it by
// sha256: the main lock alone pins every byte that enters the image.
type DepsPin struct {
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
	// Packages counts the pins in the file, for a reader of the main lock.
	Packages int `json:"packages"`
}

// DepsLock is the content of NAME.deps.lock.json: every package the build
// downloads, each pinned by URL and sha256. One package per line, sorted,
// so that a lockfile bump diffs as the lines of the packages it moved.
type DepsLock struct {
	Version int `json:"depsLockVersion"`
	// Base is the Debian-package base's .debs.
	Base *BasePackages `json:"base,omitempty"`
	// Layers are the layers' dependency sets, in recipe order.
	Layers []LayerDeps `json:"layers,omitempty"`
}

// BasePackages are the .debs of a Debian-package base.
type BasePackages struct {
	Packages []deps.Package `json:"packages"`
}

// LayerDeps is one layer's pinned dependency set.
type LayerDeps struct {
	Layer string `json:"layer"`
	// Manager is "npm", "yarn-v1", "yarn-berry" or "bundler".
	Manager string `json:"manager"`
	// Lockfile is the lockfile's path in the source tree, and
	// LockfileSHA256 the sha256 of its content at the locked commit after
	// the patches: the build checks it before installing.
	Lockfile       string `json:"lockfile"`
	LockfileSHA256 string `json:"lockfileSha256"`
	// Scope is how the set was scoped (workspaces, production, groups,
	// platform), for the reader.
	Scope Scope `json:"scope"`
	// Registry is where the packages come from (no credentials).
	Registry string `json:"registry,omitempty"`
	// Tool is the package manager itself, when pinned (Yarn, npm).
	Tool *ToolPin `json:"tool,omitempty"`
	// Packages are the downloads, sorted by Path.
	Packages []PackagePin `json:"packages"`
	// Git are Bundler gems from git sources, pinned by commit.
	Git []GitPin `json:"git,omitempty"`
}

// Scope records how a set was scoped.
type Scope struct {
	Platform   string   `json:"platform"`
	Workspaces []string `json:"workspaces,omitempty"`
	Production bool     `json:"production,omitempty"`
	Without    []string `json:"without,omitempty"`
	With       []string `json:"with,omitempty"`
}

// PackagePin is a pinned package, with the names of the packages it
// requires where the build installs one package per step (Bundler).
type PackagePin struct {
	deps.Package
	Requires []string `json:"requires,omitempty"`
}

// ToolPin is a package manager pinned as a registry tarball: Entry is the
// script inside it that node runs ("package/bin/yarn.js").
type ToolPin struct {
	deps.Package
	Entry string `json:"entry"`
}

// GitPin is a dependency fetched from git at a commit.
type GitPin struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Remote   string `json:"remote"`
	Revision string `json:"revision"`
	// Path is the directory the build places its tree in, in the install
	// tree (Bundler's vendor/cache layout: NAME-SHORTREV).
	Path string `json:"path"`
	Glob string `json:"glob,omitempty"`
}

// Count is the number of pinned downloads (packages, tools, git sources).
func (d *DepsLock) Count() int {
	if d == nil {
		return 0
	}
	n := 0
	if d.Base != nil {
		n += len(d.Base.Packages)
	}
	for _, l := range d.Layers {
		n += len(l.Packages) + len(l.Git)
		if l.Tool != nil {
			n++
		}
	}
	return n
}

// Pin is one pinned download of a DepsLock, with what it is and where it
// goes: the one list provenance and the SBOM are written from.
type Pin struct {
	Name, Version string
	// Purl is the package URL (pkg:deb/…, pkg:npm/…, pkg:gem/…).
	Purl string
	// URL is the download (a git remote for a git pin); SHA256 its hex
	// sha256, or GitCommit the commit a git pin is fetched at.
	URL, SHA256, GitCommit string
	// Layer is the layer that installs it; "" for a .deb of the base.
	Layer string
	// Tool marks the package manager itself.
	Tool bool
}

// Pins lists every pinned download: the base's .debs, then each layer's
// tool, packages and git pins, in lock order.
func (d *DepsLock) Pins() []Pin {
	if d == nil {
		return nil
	}
	var out []Pin
	pin := func(p deps.Package, eco deps.Ecosystem, layer string, tool bool) Pin {
		return Pin{Name: p.Name, Version: p.Version, Purl: p.Purl(eco), URL: p.URL, SHA256: p.SHA256, Layer: layer, Tool: tool}
	}
	if d.Base != nil {
		for _, p := range d.Base.Packages {
			out = append(out, pin(p, deps.Deb, "", false))
		}
	}
	for _, l := range d.Layers {
		eco := deps.NPM
		if l.Manager == string(recipe.DepsBundler) {
			eco = deps.Gem
		}
		if l.Tool != nil {
			out = append(out, pin(l.Tool.Package, deps.NPM, l.Layer, true))
		}
		for _, p := range l.Packages {
			out = append(out, pin(p.Package, eco, l.Layer, false))
		}
		for _, g := range l.Git {
			gp := deps.Package{Name: g.Name, Version: g.Version}
			out = append(out, Pin{Name: g.Name, Version: g.Version, Purl: gp.Purl(deps.Gem), URL: g.Remote, GitCommit: g.Revision, Layer: l.Layer})
		}
	}
	return out
}

// LayerDeps returns the set of the named layer.
func (d *DepsLock) LayerDeps(layer string) (*LayerDeps, bool) {
	if d == nil {
		return nil, false
	}
	for i := range d.Layers {
		if d.Layers[i].Layer == layer {
			return &d.Layers[i], true
		}
	}
	return nil, false
}

// URLOf is the URL of the pinned download id (Package.ID()) with the
// given digest ("sha256:…"), for messages; "" if none.
func (d *DepsLock) URLOf(id, digest string) string {
	if d == nil {
		return ""
	}
	match := func(p deps.Package) bool { return p.ID() == id && p.Digest() == digest }
	if d.Base != nil {
		for _, p := range d.Base.Packages {
			if match(p) {
				return p.URL
			}
		}
	}
	for _, l := range d.Layers {
		if l.Tool != nil && match(l.Tool.Package) {
			return l.Tool.URL
		}
		for _, p := range l.Packages {
			if match(p.Package) {
				return p.URL
			}
		}
	}
	return ""
}

// Marshal renders the file: indented JSON, except that each package is one
// line.
func (d *DepsLock) Marshal() ([]byte, error) {
	var b bytes.Buffer
	line := func(v any) error {
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		return enc.Encode(v) // one line, with its newline
	}
	list := func(indent string, n int, item func(i int) any) error {
		if n == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteString("[\n")
		for i := 0; i < n; i++ {
			b.WriteString(indent + "  ")
			if err := line(item(i)); err != nil {
				return err
			}
			if i < n-1 {
				b.Truncate(b.Len() - 1)
				b.WriteString(",\n")
			}
		}
		b.WriteString(indent + "]")
		return nil
	}
	field := func(indent, name string, v any, comma bool) error {
		b.WriteString(indent + `"` + name + `": `)
		vb, err := json.Marshal(v)
		if err != nil {
			return err
		}
		b.Write(vb)
		if comma {
			b.WriteString(",")
		}
		b.WriteString("\n")
		return nil
	}
	fmt.Fprintf(&b, "{\n  \"depsLockVersion\": %d", d.Version)
	if d.Base != nil {
		b.WriteString(",\n  \"base\": {\n    \"packages\": ")
		if err := list("    ", len(d.Base.Packages), func(i int) any { return d.Base.Packages[i] }); err != nil {
			return nil, err
		}
		b.WriteString("\n  }")
	}
	if len(d.Layers) > 0 {
		b.WriteString(",\n  \"layers\": [\n")
		for i, l := range d.Layers {
			b.WriteString("    {\n")
			const in = "      "
			for _, f := range []struct {
				name string
				v    any
				omit bool
			}{
				{"layer", l.Layer, false},
				{"manager", l.Manager, false},
				{"lockfile", l.Lockfile, false},
				{"lockfileSha256", l.LockfileSHA256, false},
				{"scope", l.Scope, false},
				{"registry", l.Registry, l.Registry == ""},
				{"tool", l.Tool, l.Tool == nil},
			} {
				if !f.omit {
					if err := field(in, f.name, f.v, true); err != nil {
						return nil, err
					}
				}
			}
			b.WriteString(in + `"packages": `)
			if err := list(in, len(l.Packages), func(i int) any { return l.Packages[i] }); err != nil {
				return nil, err
			}
			if len(l.Git) > 0 {
				b.WriteString(",\n" + in + `"git": `)
				if err := list(in, len(l.Git), func(i int) any { return l.Git[i] }); err != nil {
					return nil, err
				}
			}
			b.WriteString("\n    }")
			if i < len(d.Layers)-1 {
				b.WriteString(",")
			}
			b.WriteString("\n")
		}
		b.WriteString("  ]")
	}
	b.WriteString("\n}\n")
	// The hand-written layout must be the JSON the struct reads back.
	var check DepsLock
	if err := json.Unmarshal(b.Bytes(), &check); err != nil {
		return nil, fmt.Errorf("encoding dependency lock: %w", err)
	}
	return b.Bytes(), nil
}

// ParseDeps decodes and validates a dependency lock file.
func ParseDeps(file string, b []byte) (*DepsLock, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var d DepsLock
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("reading dependency lock %s: %w: %v", file, errs.ErrInvalidLock, err)
	}
	if d.Version != DepsVersion {
		return nil, fmt.Errorf("reading dependency lock %s: %w: depsLockVersion %d is not supported (this vmbuild writes %d)", file, errs.ErrInvalidLock, d.Version, DepsVersion)
	}
	check := func(where string, ps []deps.Package) error {
		seen := map[string]bool{}
		for _, p := range ps {
			if err := p.Validate(); err != nil {
				return fmt.Errorf("reading dependency lock %s: %w: %s: %v", file, errs.ErrInvalidLock, where, err)
			}
			if seen[p.Path] {
				return fmt.Errorf("reading dependency lock %s: %w: %s: path %s is pinned twice", file, errs.ErrInvalidLock, where, p.Path)
			}
			seen[p.Path] = true
		}
		return nil
	}
	if d.Base != nil {
		if err := check("base", d.Base.Packages); err != nil {
			return nil, err
		}
	}
	for _, l := range d.Layers {
		ps := make([]deps.Package, 0, len(l.Packages)+1)
		for _, p := range l.Packages {
			ps = append(ps, p.Package)
		}
		if l.Tool != nil {
			ps = append(ps, l.Tool.Package)
		}
		if err := check("layer "+l.Layer, ps); err != nil {
			return nil, err
		}
		if !deps.IsSHA256(l.LockfileSHA256) {
			return nil, fmt.Errorf("reading dependency lock %s: %w: layer %s: lockfileSha256 %q is not 64 hex digits", file, errs.ErrInvalidLock, l.Layer, l.LockfileSHA256)
		}
		for _, g := range l.Git {
			if !IsCommit(g.Revision) {
				return nil, fmt.Errorf("reading dependency lock %s: %w: layer %s: git gem %s: revision %q is not a full commit hash", file, errs.ErrInvalidLock, l.Layer, g.Name, g.Revision)
			}
		}
	}
	return &d, nil
}

// DepsPath is the dependency lock file beside a lock file.
func DepsPath(lockPath string) string {
	return strings.TrimSuffix(lockPath, ".lock.json") + ".deps.lock.json"
}

// readDeps loads the dependency lock the main lock pins, checking its
// sha256.
func (l *Lock) readDeps(lockPath string) error {
	if l.Deps == nil {
		return nil
	}
	if l.Deps.File != filepath.Base(l.Deps.File) {
		return fmt.Errorf("reading lock %s: %w: deps.file %q must name a file beside the lock", lockPath, errs.ErrInvalidLock, l.Deps.File)
	}
	path := filepath.Join(filepath.Dir(lockPath), l.Deps.File)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reading lock: %w: %s pins %s, which does not exist; run `vmbuild lock` to write it", errs.ErrLockMissing, lockPath, path)
	}
	if err != nil {
		return fmt.Errorf("reading dependency lock: %w", err)
	}
	if got := sha256Hex(b); got != l.Deps.SHA256 {
		return fmt.Errorf("reading lock %s: %w: %s has sha256 %s, the lock pins %s: it was edited or is from another lock; run `vmbuild lock` to pin it again",
			lockPath, errs.ErrInvalidLock, path, short(got), short(l.Deps.SHA256))
	}
	d, err := ParseDeps(path, b)
	if err != nil {
		return err
	}
	l.DepsLock = d
	return nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// DiffDeps describes how next's pins differ from prev's, one line per
// package added, removed or moved, per layer (and the base).
func DiffDeps(prev, next *DepsLock) []string {
	type set struct {
		name string
		pkgs map[string]deps.Package
	}
	collect := func(d *DepsLock) []set {
		var out []set
		if d == nil {
			return nil
		}
		if d.Base != nil {
			m := map[string]deps.Package{}
			for _, p := range d.Base.Packages {
				m[p.Name] = p
			}
			out = append(out, set{"base", m})
		}
		for _, l := range d.Layers {
			m := map[string]deps.Package{}
			for _, p := range l.Packages {
				m[p.Path] = p.Package
			}
			if l.Tool != nil {
				m["tool:"+l.Tool.Name] = l.Tool.Package
			}
			out = append(out, set{"layer " + l.Layer, m})
		}
		return out
	}
	a, b := collect(prev), collect(next)
	am := map[string]map[string]deps.Package{}
	for _, s := range a {
		am[s.name] = s.pkgs
	}
	var out []string
	for _, s := range b {
		old := am[s.name]
		delete(am, s.name)
		// Key by name where one version replaced another.
		byName := func(m map[string]deps.Package) map[string][]deps.Package {
			r := map[string][]deps.Package{}
			for _, p := range m {
				r[p.Name] = append(r[p.Name], p)
			}
			return r
		}
		on, nn := byName(old), byName(s.pkgs)
		var names []string
		for n := range nn {
			names = append(names, n)
		}
		for n := range on {
			if _, ok := nn[n]; !ok {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		for _, n := range names {
			o, nw := versions(on[n]), versions(nn[n])
			switch {
			case o == nw && sameSums(on[n], nn[n]):
			case o == "":
				out = append(out, fmt.Sprintf("%s: + %s %s", s.name, n, nw))
			case nw == "":
				out = append(out, fmt.Sprintf("%s: - %s %s", s.name, n, o))
			case o == nw:
				out = append(out, fmt.Sprintf("%s: %s %s: sha256 changed", s.name, n, nw))
			default:
				out = append(out, fmt.Sprintf("%s: %s %s → %s", s.name, n, o, nw))
			}
		}
	}
	for name, m := range am {
		out = append(out, fmt.Sprintf("%s: removed (%d packages)", name, len(m)))
	}
	return out
}

func versions(ps []deps.Package) string {
	var vs []string
	for _, p := range ps {
		v := p.Version
		if p.Platform != "" && p.Platform != "ruby" && p.Platform != "all" {
			v += "-" + p.Platform
		}
		vs = append(vs, v)
	}
	sort.Strings(vs)
	return strings.Join(vs, ", ")
}

func sameSums(a, b []deps.Package) bool {
	sa, sb := map[string]bool{}, map[string]bool{}
	for _, p := range a {
		sa[p.SHA256] = true
	}
	for _, p := range b {
		sb[p.SHA256] = true
	}
	if len(sa) != len(sb) {
		return false
	}
	for k := range sa {
		if !sb[k] {
			return false
		}
	}
	return true
}

// DebianPin pins a Debian-package base: the suite's InRelease as verified
// at lock time. The .debs are in the dependency lock.
type DebianPin struct {
	Mirror       string   `json:"mirror"`
	Suite        string   `json:"suite"`
	Codename     string   `json:"codename,omitempty"`
	Components   []string `json:"components"`
	Architecture string   `json:"architecture"`
	// InRelease is the verified index: its URL and sha256, its Date and
	// Valid-Until, and the fingerprint of the key that signed it.
	InRelease InReleasePin `json:"inRelease"`
	// Keyring is the keyring file InRelease was verified against, and its
	// sha256.
	Keyring       string `json:"keyring"`
	KeyringSHA256 string `json:"keyringSha256"`
	// AllowExpired records that the index was accepted past Valid-Until.
	AllowExpired bool `json:"allowExpired,omitempty"`
	Essential    bool `json:"essential,omitempty"`
	// Requested are the recipe's packages; Packages the closure's size.
	Requested []string `json:"requested"`
	Packages  int      `json:"packages"`
}

// InReleasePin describes a verified InRelease.
type InReleasePin struct {
	URL        string     `json:"url"`
	SHA256     string     `json:"sha256"`
	Date       time.Time  `json:"date"`
	ValidUntil *time.Time `json:"validUntil,omitempty"`
	SignedBy   string     `json:"signedBy"`
}
