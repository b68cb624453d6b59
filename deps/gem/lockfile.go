package gem

import (
	"encoding/base64"
	"encoding/hex"
	"regexp"
	"strings"
)

// SourceKind is a Gemfile.lock source section.
type SourceKind string

const (
	SourceGem    SourceKind = "GEM"
	SourceGit    SourceKind = "GIT"
	SourcePath   SourceKind = "PATH"
	SourcePlugin SourceKind = "PLUGIN SOURCE"
)

// Source is one GEM, GIT, PATH or PLUGIN SOURCE section.
type Source struct {
	Kind SourceKind
	// Remotes are the "remote:" lines: a rubygems server URL for GEM
	// (older lockfiles list several in one section), the repository URL
	// for GIT, the directory (relative to the Gemfile's) for PATH.
	Remotes []string
	// GIT: the locked commit and the Gemfile's ref, branch or tag.
	Revision, Ref, Branch, Tag string
	Submodules                 bool
	// Glob is the gemspec glob of a GIT or PATH source, if not the default.
	Glob string
	// Options holds every "key: value" line as written, in order per key.
	Options map[string][]string
	Line    int
	Specs   []*Spec

	sawSpecs bool
}

// Remote is the first remote ("" if none).
func (s *Source) Remote() string {
	if len(s.Remotes) == 0 {
		return ""
	}
	return s.Remotes[0]
}

// Spec is one locked gem: a "    name (version[-platform])" line and its
// dependency lines.
type Spec struct {
	Name     string
	Version  Version
	Platform Platform
	Source   *Source
	Deps     []Dep
	Line     int
}

// FullName is RubyGems' full name: "nokogiri-1.16.0" or
// "nokogiri-1.16.0-x86_64-linux": the .gem file's base name.
func (s *Spec) FullName() string {
	if s.Platform.IsRuby() {
		return s.Name + "-" + s.Version.String()
	}
	return s.Name + "-" + s.Version.String() + "-" + s.Platform.String()
}

// Dep is a runtime dependency line of a locked spec.
type Dep struct {
	Name string
	Req  Requirement
	Line int
}

// LockDep is a DEPENDENCIES line: a gem the Gemfile names.
type LockDep struct {
	Name string
	Req  Requirement
	// Pinned is the "!" marker: the Gemfile gives the gem a source of its
	// own (git, path, a source block or option).
	Pinned bool
	Line   int
}

// Checksum is a CHECKSUMS entry.
type Checksum struct {
	// SHA256 is the hex digest; empty for an entry without one (git and
	// path gems, or gems Bundler could not checksum).
	SHA256 string
	Line   int
}

// Lockfile is a parsed Gemfile.lock.
type Lockfile struct {
	Path    string
	Sources []*Source
	// Specs are every locked gem in file order.
	Specs []*Spec
	// Platforms is the PLATFORMS section.
	Platforms     []Platform
	PlatformsLine int
	Dependencies  []LockDep
	// HasChecksums reports a CHECKSUMS section (Bundler ≥ 2.5).
	HasChecksums bool
	// Checksums by spec full name ("nokogiri-1.16.0-x86_64-linux").
	Checksums map[string]Checksum
	// RubyVersion is RUBY VERSION ("ruby 3.3.0p0"), if present.
	RubyVersion string
	// BundledWith is BUNDLED WITH ("2.5.6"), if present.
	BundledWith string
	// Unknown lists section headers this parser skipped, as Bundler does.
	Unknown []string
}

var (
	reGemName   = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	reSection   = regexp.MustCompile(`^\w[\w ]*$`)
	reOption    = regexp.MustCompile(`^  ([A-Za-z]+): (.*)$`)
	reConflict  = regexp.MustCompile(`^(<<<<<<<|=======|>>>>>>>|\|\|\|\|\|\|\|)`)
	reSHA256Hex = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	reSHA256B64 = regexp.MustCompile(`^[-0-9a-zA-Z_+/]{43}={0,2}$`)
)

// ParseLockfile parses a Gemfile.lock. name is used in errors. It is
// stricter than Bundler's parser: a line it cannot read is an error
// naming the file and line, not skipped; unknown sections are skipped (as
// Bundler does, for lockfiles from newer Bundlers) and listed in Unknown.
func ParseLockfile(name string, data []byte) (*Lockfile, error) {
	lf := &Lockfile{Path: name, Checksums: map[string]Checksum{}}
	specsByFull := map[string]*Spec{}
	var (
		section   string
		src       *Source
		inSpecs   bool
		spec      *Spec
		sawDeps   = map[string]bool{}
		sawHeader = map[string]bool{}
	)
	lines := strings.Split(string(data), "\n")
	for i, line := range lines {
		n := i + 1
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if reConflict.MatchString(line) {
			return nil, inputErr(name, n, "", "merge conflict marker; resolve the conflict (`git checkout HEAD -- Gemfile.lock`) first")
		}
		if line[0] != ' ' {
			if !reSection.MatchString(line) {
				return nil, inputErr(name, n, "", "cannot parse line %q: not a section header", line)
			}
			section, src, inSpecs, spec = line, nil, false, nil
			switch SourceKind(line) {
			case SourceGem, SourceGit, SourcePath, SourcePlugin:
				src = &Source{Kind: SourceKind(line), Options: map[string][]string{}, Line: n}
				lf.Sources = append(lf.Sources, src)
				continue
			}
			switch line {
			case "PLATFORMS", "DEPENDENCIES", "CHECKSUMS", "RUBY VERSION", "BUNDLED WITH":
				if sawHeader[line] {
					return nil, inputErr(name, n, "", "section %s appears twice", line)
				}
				sawHeader[line] = true
				switch line {
				case "PLATFORMS":
					lf.PlatformsLine = n
				case "CHECKSUMS":
					lf.HasChecksums = true
				}
			default:
				lf.Unknown = append(lf.Unknown, line)
			}
			continue
		}
		switch {
		case section == "":
			return nil, inputErr(name, n, "", "cannot parse line %q: indented line before any section", line)
		case src != nil:
			indent := len(line) - len(strings.TrimLeft(line, " "))
			switch {
			case line == "  specs:":
				inSpecs, src.sawSpecs = true, true
			case indent == 2 && !inSpecs:
				m := reOption.FindStringSubmatch(line)
				if m == nil {
					return nil, inputErr(name, n, "", "cannot parse line %q in %s section: want \"  key: value\"", line, src.Kind)
				}
				k, v := m[1], m[2]
				src.Options[k] = append(src.Options[k], v)
				switch k {
				case "remote":
					src.Remotes = append(src.Remotes, v)
				case "revision":
					src.Revision = v
				case "ref":
					src.Ref = v
				case "branch":
					src.Branch = v
				case "tag":
					src.Tag = v
				case "glob":
					src.Glob = v
				case "submodules":
					src.Submodules = v == "true"
				}
			case indent == 4 && inSpecs:
				nm, ver, plat, err := parseSpecLine(line[4:])
				if err != "" {
					return nil, inputErr(name, n, nm, "cannot parse spec line %q: %s", line, err)
				}
				v, verr := ParseVersion(ver)
				if verr != nil {
					return nil, inputErr(name, n, nm, "cannot parse spec line %q: %v", line, verr)
				}
				spec = &Spec{Name: nm, Version: v, Platform: ParsePlatform(plat), Source: src, Line: n}
				if prev, dup := specsByFull[spec.FullName()]; dup {
					return nil, inputErr(name, n, nm, "%s is locked twice (also line %d)", spec.FullName(), prev.Line)
				}
				specsByFull[spec.FullName()] = spec
				src.Specs = append(src.Specs, spec)
				lf.Specs = append(lf.Specs, spec)
			case indent == 6 && spec != nil:
				nm, req, errMsg := parseDepLine(line[6:])
				if errMsg != "" {
					return nil, inputErr(name, n, spec.Name, "cannot parse dependency line %q: %s", line, errMsg)
				}
				spec.Deps = append(spec.Deps, Dep{Name: nm, Req: req, Line: n})
			default:
				return nil, inputErr(name, n, "", "cannot parse line %q in %s section: unexpected indentation", line, src.Kind)
			}
		case section == "PLATFORMS":
			p, ok := strings.CutPrefix(line, "  ")
			if !ok || strings.ContainsAny(strings.TrimSpace(p), " ") || strings.HasPrefix(p, " ") {
				return nil, inputErr(name, n, "", "cannot parse platform line %q", line)
			}
			lf.Platforms = append(lf.Platforms, ParsePlatform(strings.TrimSpace(p)))
		case section == "DEPENDENCIES":
			body, ok := strings.CutPrefix(line, "  ")
			if !ok || strings.HasPrefix(body, " ") {
				return nil, inputErr(name, n, "", "cannot parse dependency line %q", line)
			}
			m := nameParens(body)
			if m == nil || m[4] != "" || !reGemName.MatchString(m[1]) {
				return nil, inputErr(name, n, "", "cannot parse dependency line %q", line)
			}
			req, err := parseReqList(m[2])
			if err != nil {
				return nil, inputErr(name, n, m[1], "cannot parse dependency line %q: %v", line, err)
			}
			if sawDeps[m[1]] {
				return nil, inputErr(name, n, m[1], "listed twice in DEPENDENCIES")
			}
			sawDeps[m[1]] = true
			lf.Dependencies = append(lf.Dependencies, LockDep{Name: m[1], Req: req, Pinned: m[3] == "!", Line: n})
		case section == "CHECKSUMS":
			body, ok := strings.CutPrefix(line, "  ")
			if !ok || strings.HasPrefix(body, " ") {
				return nil, inputErr(name, n, "", "cannot parse checksum line %q", line)
			}
			m := nameParens(body)
			if m == nil || m[2] == "" || m[3] != "" || !reGemName.MatchString(m[1]) {
				return nil, inputErr(name, n, "", "cannot parse checksum line %q: want \"name (version[-platform]) sha256=HEX\"", line)
			}
			ver, plat, _ := strings.Cut(m[2], "-")
			v, err := ParseVersion(ver)
			if err != nil {
				return nil, inputErr(name, n, m[1], "cannot parse checksum line %q: %v", line, err)
			}
			full := (&Spec{Name: m[1], Version: v, Platform: ParsePlatform(plat)}).FullName()
			c := Checksum{Line: n}
			if m[4] != "" {
				for _, tok := range strings.Split(m[4], ",") {
					alg, digest, ok := strings.Cut(strings.TrimSpace(tok), "=")
					if !ok || alg == "" || digest == "" {
						return nil, inputErr(name, n, m[1], "cannot parse checksum %q: want algorithm=digest", tok)
					}
					if alg != "sha256" {
						continue // Bundler only writes sha256; others are not checked
					}
					h, err := sha256Hex(digest)
					if err != nil {
						return nil, inputErr(name, n, m[1], "checksum %q: %v", tok, err)
					}
					c.SHA256 = h
				}
			}
			lf.Checksums[full] = c
		case section == "RUBY VERSION":
			if lf.RubyVersion != "" {
				return nil, inputErr(name, n, "", "RUBY VERSION has more than one line")
			}
			lf.RubyVersion = strings.TrimSpace(line)
		case section == "BUNDLED WITH":
			if lf.BundledWith != "" {
				return nil, inputErr(name, n, "", "BUNDLED WITH has more than one line")
			}
			v := strings.TrimSpace(line)
			if _, err := ParseVersion(v); err != nil {
				return nil, inputErr(name, n, "", "BUNDLED WITH: %v", err)
			}
			lf.BundledWith = v
		default:
			// an unknown section's body, skipped as Bundler skips it
		}
	}
	for _, s := range lf.Sources {
		if !s.sawSpecs {
			return nil, inputErr(name, s.Line, "", "%s section has no \"  specs:\" line", s.Kind)
		}
	}
	return lf, nil
}

// nameParens splits Bundler's NAME_VERSION form
// "name[ (inside)][!][ extra]" into [whole, name, inside, "!", extra]; nil
// if s is not of that form.
func nameParens(s string) []string {
	m := make([]string, 5)
	m[0] = s
	i := strings.IndexAny(s, " !(")
	if i < 0 {
		m[1] = s
		return m
	}
	m[1], s = s[:i], s[i:]
	if m[1] == "" {
		return nil
	}
	if rest, ok := strings.CutPrefix(s, " ("); ok {
		j := strings.IndexByte(rest, ')')
		if j < 0 || strings.ContainsAny(rest[:j], "()") {
			return nil
		}
		m[2], s = rest[:j], rest[j+1:]
	}
	if rest, ok := strings.CutPrefix(s, "!"); ok {
		m[3], s = "!", rest
	}
	if rest, ok := strings.CutPrefix(s, " "); ok && rest != "" && !strings.ContainsAny(rest, " \t") {
		m[4], s = rest, ""
	}
	if s != "" {
		return nil
	}
	return m
}

// parseSpecLine reads "name (version[-platform])".
func parseSpecLine(s string) (name, version, platform, errMsg string) {
	m := nameParens(s)
	if m == nil || m[3] != "" || m[4] != "" {
		return "", "", "", "want \"name (version[-platform])\""
	}
	if !reGemName.MatchString(m[1]) {
		return m[1], "", "", "invalid gem name"
	}
	if m[2] == "" {
		return m[1], "", "", "no version"
	}
	version, platform, _ = strings.Cut(m[2], "-")
	return m[1], version, platform, ""
}

// parseDepLine reads "name" or "name (req, req)".
func parseDepLine(s string) (string, Requirement, string) {
	m := nameParens(s)
	if m == nil || m[3] != "" || m[4] != "" || !reGemName.MatchString(m[1]) {
		return "", nil, "want \"name (requirement, …)\""
	}
	req, err := parseReqList(m[2])
	if err != nil {
		return m[1], nil, err.Error()
	}
	return m[1], req, ""
}

func parseReqList(s string) (Requirement, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	return ParseRequirement(strings.Split(s, ",")...)
}

// sha256Hex accepts a hex or (URL-safe) base64 sha256, as
// Bundler::Checksum.to_hexdigest does, and returns lower-case hex.
func sha256Hex(d string) (string, error) {
	switch {
	case reSHA256Hex.MatchString(d):
		return strings.ToLower(d), nil
	case reSHA256B64.MatchString(d):
		d = strings.NewReplacer("-", "+", "_", "/").Replace(strings.TrimRight(d, "="))
		raw, err := base64.RawStdEncoding.DecodeString(d)
		if err != nil || len(raw) != 32 {
			return "", errNotSHA256
		}
		return hex.EncodeToString(raw), nil
	}
	return "", errNotSHA256
}

type constErr string

func (e constErr) Error() string { return string(e) }

const errNotSHA256 = constErr("not a sha256 hex or base64 digest")
