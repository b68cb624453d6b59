package deb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/vmbuild/vmbuild/errs"
)

// ResolveOptions tunes Resolve. The zero value is the default.
type ResolveOptions struct {
	// Essential adds every Essential: yes package of the index (and its
	// closure), as apt and debootstrap assume they are present. Default
	// off: a base made by extraction alone (no dpkg, no shell scripts)
	// does not need them; turn it on when the image must run maintainer
	// scripts or shell tools.
	Essential bool
	// Exclude names packages never to select (a dependency on one is
	// treated as satisfied): e.g. "debconf" or "dpkg" pulled in by
	// Pre-Depends that only maintainer scripts use. Default none.
	Exclude []string
	// Logger receives one debug line per choice among alternatives or
	// providers. Default: discard.
	Logger *slog.Logger
}

// Selected is one package of a resolution, with why it is there.
type Selected struct {
	*Entry
	// Chain is the path from a requested package to this one:
	// ["nodejs", "libnode137", "libicu78"]. A requested package's chain is
	// itself alone.
	Chain []string
	// Requested is true for a package asked for by name.
	Requested bool
}

// Resolution is the result of Resolve: the selected packages sorted by
// name.
type Resolution struct {
	Packages []Selected
}

// ResolveError reports a request or dependency that cannot be satisfied,
// with the chain that needs it. It is errs.ErrDependency.
type ResolveError struct {
	// Chain ends with the unsatisfiable relation: ["nodejs",
	// "libnode137", "libfoo (>= 2)"].
	Chain  []string
	Reason string // "no such package in sid/main amd64"
}

func (e *ResolveError) Error() string {
	return strings.Join(e.Chain, " → ") + ": " + e.Reason
}

func (e *ResolveError) Is(target error) bool { return target == errs.ErrDependency }

// ConflictError reports two selected packages that may not be unpacked
// together (Conflicts or Breaks), each with the chain that brought it in.
// It is errs.ErrDependency.
type ConflictError struct {
	A, B           string // name=version
	Field          string // "Conflicts" or "Breaks", declared by A
	Relation       string // A's relation that B matches
	ChainA, ChainB []string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s %s %s (%s); %s comes from %s, %s from %s",
		e.A, strings.ToLower(e.Field), e.B, e.Relation, e.A, strings.Join(e.ChainA, " → "), e.B, strings.Join(e.ChainB, " → "))
}

func (e *ConflictError) Is(target error) bool { return target == errs.ErrDependency }

// Request parses "name" or "name=version" (exact version), as apt takes
// them.
type Request struct {
	Name    string
	Version string // "" for the highest available
}

// ParseRequest parses "nodejs" or "nodejs=24.11.1+dfsg-1".
func ParseRequest(s string) (Request, error) {
	s = strings.TrimSpace(s)
	name, ver, _ := strings.Cut(s, "=")
	if name == "" || strings.ContainsAny(name, " \t:()|,") {
		return Request{}, fmt.Errorf("parsing package request %q: %w: not name or name=version", s, errs.ErrDependency)
	}
	if ver != "" {
		if _, err := ParseVersion(ver); err != nil {
			return Request{}, fmt.Errorf("parsing package request %q: %w: %v", s, errs.ErrDependency, err)
		}
	}
	return Request{Name: name, Version: ver}, nil
}

func (r Request) String() string {
	if r.Version != "" {
		return r.Name + "=" + r.Version
	}
	return r.Name
}

// Resolve computes the closure of the requested packages over Depends
// and Pre-Depends (never Recommends or Suggests), greedily and
// deterministically:
//
//   - a relation already satisfied by a selected package (by name, or by
//     a Provides, versioned for a versioned relation) adds nothing;
//   - otherwise the first alternative that can be satisfied is taken: the
//     highest version of the real package that satisfies the version
//     relation, else a provider (one whose name matches comes first, then
//     by Priority, then by name);
//   - arch qualifiers follow dpkg: ":any" needs Multi-Arch: allowed,
//     ":native" and no qualifier match native and "all" packages;
//   - requests are processed in the order given, breadth first.
//
// Then every Conflicts and Breaks between two selected packages is an
// error (a *ConflictError), as is any unsatisfiable request or dependency
// (a *ResolveError): all problems are reported, joined.
func Resolve(ctx context.Context, ix *Index, reqs []Request, opt ResolveOptions) (*Resolution, error) {
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &resolver{ix: ix, log: log, sel: map[string]*Selected{}, excluded: map[string]bool{}}
	for _, x := range opt.Exclude {
		r.excluded[x] = true
	}
	var problems []error
	type item struct {
		e     *Entry
		chain []string
	}
	var queue []item
	add := func(e *Entry, chain []string, requested bool) {
		if _, ok := r.sel[e.Name]; ok {
			return
		}
		s := &Selected{Entry: e, Chain: append(append([]string(nil), chain...), e.Name), Requested: requested}
		r.sel[e.Name] = s
		queue = append(queue, item{e, s.Chain})
	}
	for _, q := range reqs {
		e, err := r.request(q)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		if prev, ok := r.sel[e.Name]; ok && prev.Version != e.Version {
			problems = append(problems, &ResolveError{Chain: []string{q.String()}, Reason: "also requested as " + prev.ID()})
			continue
		}
		add(e, nil, true)
	}
	if opt.Essential {
		var ess []*Entry
		for _, es := range ix.byName {
			if es[0].Essential {
				ess = append(ess, es[0])
			}
		}
		sort.Slice(ess, func(i, j int) bool { return ess[i].Name < ess[j].Name })
		for _, e := range ess {
			if !r.excluded[e.Name] {
				add(e, []string{"(essential)"}, false)
			}
		}
	}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("resolving Debian packages: %w", err)
		}
		it := queue[0]
		queue = queue[1:]
		for _, field := range []string{"Pre-Depends", "Depends"} {
			rels, err := it.e.relations(field)
			if err != nil {
				problems = append(problems, &ResolveError{Chain: it.chain, Reason: err.Error()})
				break
			}
			for _, rel := range rels {
				if r.satisfied(rel) {
					continue
				}
				e, err := r.choose(rel, it.chain)
				if err != nil {
					problems = append(problems, err)
					continue
				}
				if e != nil {
					add(e, it.chain, false)
				}
			}
		}
	}
	if len(problems) == 0 {
		problems = r.conflicts()
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("resolving Debian packages from %s: %w", ix.Source, errors.Join(problems...))
	}
	res := &Resolution{}
	for _, s := range r.sel {
		res.Packages = append(res.Packages, *s)
	}
	sort.Slice(res.Packages, func(i, j int) bool { return res.Packages[i].Name < res.Packages[j].Name })
	return res, nil
}

type resolver struct {
	ix       *Index
	log      *slog.Logger
	sel      map[string]*Selected
	excluded map[string]bool
}

func (r *resolver) request(q Request) (*Entry, error) {
	es := r.ix.Lookup(q.Name)
	if q.Version != "" {
		for _, e := range es {
			if CompareVersions(e.Version, q.Version) == 0 {
				return e, nil
			}
		}
		reason := "no such package in " + r.ix.Source.String()
		if len(es) > 0 {
			var vs []string
			for _, e := range es {
				vs = append(vs, e.Version)
			}
			reason = "no version " + q.Version + " in " + r.ix.Source.String() + " (it has " + strings.Join(vs, ", ") + ")"
		}
		return nil, &ResolveError{Chain: []string{q.String()}, Reason: reason}
	}
	if len(es) > 0 {
		return es[0], nil
	}
	provs, err := r.ix.providersOf(q.Name)
	if err != nil {
		return nil, &ResolveError{Chain: []string{q.String()}, Reason: err.Error()}
	}
	switch names := providerNames(provs); len(names) {
	case 0:
		return nil, &ResolveError{Chain: []string{q.String()}, Reason: "no such package in " + r.ix.Source.String()}
	case 1:
		return provs[0].by, nil
	default:
		return nil, &ResolveError{Chain: []string{q.String()}, Reason: "a virtual package provided by " + strings.Join(names, ", ") + ": request one of them"}
	}
}

func providerNames(ps []provided) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range ps {
		if !seen[p.by.Name] {
			seen[p.by.Name] = true
			out = append(out, p.by.Name)
		}
	}
	sort.Strings(out)
	return out
}

// archOK is dpkg's archsatisfied for a single-architecture system: every
// candidate is native or "all" (treated as native).
func archOK(e *Entry, d Dep, native string) bool {
	switch d.ArchQual {
	case "", "native":
		return true
	case "any":
		return e.MultiArch == "allowed"
	}
	return d.ArchQual == native
}

// conflictArchOK is archOK for Conflicts and Breaks: there dpkg lets
// ":any" match every architecture, whatever the Multi-Arch field.
func conflictArchOK(d Dep, native string) bool {
	return d.ArchQual == "" || d.ArchQual == "any" || d.ArchQual == "native" || d.ArchQual == native
}

// matches reports whether e satisfies d directly by its name and version.
func (r *resolver) matches(e *Entry, d Dep) bool {
	return e.Name == d.Name && archOK(e, d, r.ix.Source.Arch) && satisfiesVersion(e.Version, d.Op, d.Version)
}

// providerMatches reports whether p satisfies d: an unversioned relation
// is satisfied by any Provides of the name; a versioned one only by a
// versioned Provides whose version satisfies it (Policy §7.5).
func (r *resolver) providerMatches(p provided, d Dep) bool {
	if d.Op != OpNone && (p.version == "" || !satisfiesVersion(p.version, d.Op, d.Version)) {
		return false
	}
	// A provided name is qualified as its provider is, except that a
	// Multi-Arch: foreign provider satisfies any qualifier.
	if d.ArchQual == "any" {
		return p.by.MultiArch == "allowed" || p.by.MultiArch == "foreign"
	}
	return archOK(p.by, d, r.ix.Source.Arch)
}

func (r *resolver) satisfied(rel Relation) bool {
	for _, d := range rel {
		if r.excluded[d.Name] {
			return true
		}
		if s, ok := r.sel[d.Name]; ok && r.matches(s.Entry, d) {
			return true
		}
		provs, _ := r.ix.providersOf(d.Name)
		for _, p := range provs {
			if s, ok := r.sel[p.by.Name]; ok && s.Entry == p.by && r.providerMatches(p, d) {
				return true
			}
		}
	}
	return false
}

var priorityRank = map[string]int{"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}

func rank(p string) int {
	if n, ok := priorityRank[p]; ok {
		return n
	}
	return 5
}

// choose picks the package for an unsatisfied relation, or reports why
// none can be.
func (r *resolver) choose(rel Relation, chain []string) (*Entry, error) {
	var why []string
	for _, d := range rel {
		// The real package first, highest version satisfying.
		var blocked *Selected
		for _, e := range r.ix.Lookup(d.Name) {
			if !r.matches(e, d) {
				continue
			}
			if s, ok := r.sel[e.Name]; ok && s.Entry != e {
				blocked = s
				continue
			}
			if len(rel) > 1 {
				r.log.Debug("chose alternative", "relation", rel.String(), "chose", e.ID(), "for", strings.Join(chain, " → "))
			}
			return e, nil
		}
		// Then providers.
		provs, err := r.ix.providersOf(d.Name)
		if err != nil {
			return nil, &ResolveError{Chain: append(append([]string(nil), chain...), rel.String()), Reason: err.Error()}
		}
		var cands []*Entry
		for _, p := range provs {
			if !r.providerMatches(p, d) {
				continue
			}
			if s, ok := r.sel[p.by.Name]; ok && s.Entry != p.by {
				continue
			}
			cands = append(cands, p.by)
		}
		if len(cands) > 0 {
			sort.SliceStable(cands, func(i, j int) bool {
				a, b := cands[i], cands[j]
				if ra, rb := rank(a.Priority), rank(b.Priority); ra != rb {
					return ra < rb
				}
				if a.Name != b.Name {
					return a.Name < b.Name
				}
				return CompareVersions(a.Version, b.Version) > 0
			})
			r.log.Debug("chose provider", "relation", rel.String(), "chose", cands[0].ID(), "among", len(cands), "for", strings.Join(chain, " → "))
			return cands[0], nil
		}
		switch es := r.ix.Lookup(d.Name); {
		case blocked != nil:
			why = append(why, fmt.Sprintf("%s: %s is selected (from %s)", d, blocked.ID(), strings.Join(blocked.Chain, " → ")))
		case len(es) > 0:
			var vs []string
			for _, e := range es {
				vs = append(vs, e.Version)
			}
			if d.ArchQual == "any" && es[0].MultiArch != "allowed" {
				why = append(why, fmt.Sprintf("%s: %s is not Multi-Arch: allowed", d, d.Name))
			} else {
				why = append(why, fmt.Sprintf("%s: %s has only %s", d, d.Name, strings.Join(vs, ", ")))
			}
		case len(provs) > 0:
			why = append(why, fmt.Sprintf("%s: no provider matches (provided by %s)", d, strings.Join(providerNames(provs), ", ")))
		default:
			why = append(why, fmt.Sprintf("%s: no such package", d))
		}
	}
	reason := ""
	if len(why) == 1 {
		reason = strings.TrimPrefix(why[0], rel[0].String()+": ") + " in " + r.ix.Source.String()
		if reason == "no such package in "+r.ix.Source.String() {
			reason = "no such package in " + r.ix.Source.String()
		}
	} else {
		reason = "no alternative can be satisfied in " + r.ix.Source.String() + ": " + strings.Join(why, "; ")
	}
	return nil, &ResolveError{Chain: append(append([]string(nil), chain...), rel.String()), Reason: reason}
}

// conflicts checks Conflicts and Breaks between selected packages, as
// dpkg would on unpacking them together. A package never conflicts with
// itself (the Provides+Conflicts idiom for exclusive virtual packages).
func (r *resolver) conflicts() []error {
	names := make([]string, 0, len(r.sel))
	for n := range r.sel {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []error
	seen := map[string]bool{}
	for _, n := range names {
		a := r.sel[n]
		for _, field := range []string{"Conflicts", "Breaks"} {
			rels, err := a.relations(field)
			if err != nil {
				out = append(out, &ResolveError{Chain: a.Chain, Reason: err.Error()})
				continue
			}
			for _, rel := range rels {
				for _, d := range rel {
					var hits []*Selected
					if b, ok := r.sel[d.Name]; ok && b.Entry != a.Entry && satisfiesVersion(b.Version, d.Op, d.Version) && conflictArchOK(d, r.ix.Source.Arch) {
						hits = append(hits, b)
					}
					provs, _ := r.ix.providersOf(d.Name)
					for _, p := range provs {
						b, ok := r.sel[p.by.Name]
						if !ok || b.Entry != p.by || b.Entry == a.Entry {
							continue
						}
						if d.Op != OpNone && (p.version == "" || !satisfiesVersion(p.version, d.Op, d.Version)) {
							continue
						}
						hits = append(hits, b)
					}
					for _, b := range hits {
						key := a.Name + "\x00" + b.Name + "\x00" + field
						if seen[key] {
							continue
						}
						seen[key] = true
						out = append(out, &ConflictError{A: a.ID(), B: b.ID(), Field: field, Relation: d.String(), ChainA: a.Chain, ChainB: b.Chain})
					}
				}
			}
		}
	}
	return out
}
