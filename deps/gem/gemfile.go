package gem

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/vmbuild/vmbuild/errs"
)

// Gemfile is what vmbuild reads from a Gemfile: the gems it names, with
// their groups, platforms and sources. The lockfile does not record
// groups, so they come from here.
//
// The Gemfile is Ruby; it is parsed, never run, and only this DSL is
// understood:
//
//	source "https://rubygems.org"          (and source "…" do … end)
//	ruby "3.3.0" / ruby ">= 3.3", "< 4" / ruby file: ".ruby-version"
//	gem "name", "req", …, key: value, …     (keys as Bundler's: group(s),
//	                                        platform(s), require, git,
//	                                        github/gitlab/gist/bitbucket
//	                                        and git_source names, branch,
//	                                        ref, tag, glob, submodules,
//	                                        path, source, force_ruby_platform,
//	                                        name)
//	group :a, :b, optional: true do … end
//	platforms :mri, :windows do … end      (and platform)
//	git "url", branch: "x" do … end        (and github "org/repo", path "dir")
//	gemspec path: ".", name: "x", development_group: :dev
//	git_source(:name) { |repo| "…#{repo}…" }
//	eval_gemfile "other/Gemfile"            (a literal path inside the tree)
//	comments, =begin/=end, __END__, strings, symbols, %w[] and %i[]
//	arrays, "key: value" and ":key => value" hashes, parentheses.
//
// Decisions:
//   - A git_source block is not evaluated: gems using it are git gems
//     whose URL is taken from the lockfile (it cannot be checked against
//     the Gemfile).
//   - The arguments of `ruby` are recorded when literal and otherwise
//     ignored: the directive only checks the Ruby that runs Bundler and
//     never changes which gems install.
//   - Everything else that needs Ruby to be run is refused with an error
//     naming the file and line: conditionals (if/unless/case and
//     statement modifiers), variables and constants (ENV, RUBY_VERSION,
//     File), method calls, string interpolation, install_if, env, plugin,
//     require. Treating them as no-ops is not safe: they usually choose
//     gems.
type Gemfile struct {
	Path string
	// Files are the Gemfile and every file it eval_gemfile's.
	Files []string
	// Sources are the global rubygems sources, normalized with a
	// trailing slash.
	Sources []string
	// Ruby holds the ruby directive's literal arguments.
	Ruby []string
	// Deps are the gem lines, in order (a gem named twice appears twice).
	Deps []*GemfileDep
	// Gemspecs are the gemspec directives.
	Gemspecs []GemspecDirective
	// OptionalGroups are groups declared with optional: true.
	OptionalGroups []string
	// GitSources are the names of git_source blocks (besides Bundler's
	// github, gitlab, gist and bitbucket).
	GitSources []string
}

// GemfileDep is one `gem` line.
type GemfileDep struct {
	Name   string
	Req    Requirement
	Groups []string // "default" when none
	// Platforms are Bundler platform names (mri, ruby_33, windows, jruby…).
	Platforms         []string
	ForceRubyPlatform bool
	// Source is nil for the global rubygems sources.
	Source *GemfileSource
	File   string
	Line   int
}

// GemfileSource is a source the Gemfile gives a gem: a rubygems server
// (source block or option), a git repository, or a path.
type GemfileSource struct {
	Kind SourceKind // SourceGem, SourceGit or SourcePath
	// URL is the rubygems or git URL, or the path (relative to the
	// Gemfile's directory). Empty for a git gem from a git_source block.
	URL string
	// GitSource is "github", "gitlab", … or a git_source name, and Repo
	// its argument, for git gems named that way.
	GitSource, Repo        string
	Branch, Ref, Tag, Glob string
	Submodules             bool
	Line                   int
}

func (s *GemfileSource) String() string {
	switch {
	case s == nil:
		return "the global rubygems sources"
	case s.Kind == SourceGem:
		return "rubygems repository " + s.URL
	case s.Kind == SourcePath:
		return "path " + s.URL
	case s.URL != "":
		return "git " + s.URL
	}
	return s.GitSource + ": " + s.Repo
}

// GemspecDirective is a `gemspec` line.
type GemspecDirective struct {
	Path, Name, DevelopmentGroup string
	Line                         int
}

// LoadGemfile reads and parses the Gemfile at name in fsys (following
// eval_gemfile within fsys).
func LoadGemfile(fsys fs.FS, name string) (*Gemfile, error) {
	gf := &Gemfile{Path: name}
	p := &gemfileParser{fsys: fsys, gf: gf}
	if err := p.file(name, ctx{}, 0); err != nil {
		return nil, err
	}
	return gf, nil
}

// ParseGemfile parses Gemfile text; eval_gemfile is refused (there is no
// tree to read from).
func ParseGemfile(name string, data []byte) (*Gemfile, error) {
	gf := &Gemfile{Path: name}
	p := &gemfileParser{gf: gf}
	if err := p.parse(name, string(data), ctx{}, 0); err != nil {
		return nil, err
	}
	return gf, nil
}

type gemfileParser struct {
	fsys fs.FS
	gf   *Gemfile
	// per file
	cur  string
	toks []token
	i    int
}

// ctx is what enclosing blocks add to a gem.
type ctx struct {
	groups    []string
	platforms []string
	source    *GemfileSource
}

func (p *gemfileParser) file(name string, c ctx, depth int) error {
	if depth > 8 {
		return inputErr(name, 0, "", "eval_gemfile nests too deep")
	}
	data, err := fs.ReadFile(p.fsys, name)
	if err != nil {
		return fmt.Errorf("reading Gemfile %s: %w: %w", name, errs.ErrDependency, err)
	}
	return p.parse(name, string(data), c, depth)
}

func (p *gemfileParser) parse(name, src string, c ctx, depth int) error {
	toks, err := lexRuby(src)
	if err != nil {
		var le *lexError
		if errors.As(err, &le) {
			return inputErr(name, le.line, "", "%s", le.msg)
		}
		return err
	}
	saved := *p
	p.cur, p.toks, p.i = name, toks, 0
	p.gf.Files = append(p.gf.Files, name)
	err = p.statements(c, depth, "")
	p.cur, p.toks, p.i = saved.cur, saved.toks, saved.i
	return err
}

func (p *gemfileParser) peek() token { return p.toks[p.i] }
func (p *gemfileParser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *gemfileParser) errAt(t token, gem, format string, args ...any) error {
	return inputErr(p.cur, t.line, gem, format, args...)
}

func (p *gemfileParser) skipNewlines() {
	for p.peek().kind == tNewline {
		p.i++
	}
}

func isPunct(t token, s string) bool   { return t.kind == tPunct && t.text == s }
func isKeyword(t token, s string) bool { return t.kind == tIdent && t.text == s }

var conditionalWords = map[string]bool{"if": true, "unless": true, "case": true, "while": true, "until": true, "begin": true, "and": true, "or": true, "not": true, "rescue": true}

// statements parses until `end` (when closer is "end") or EOF.
func (p *gemfileParser) statements(c ctx, depth int, closer string) error {
	for {
		p.skipNewlines()
		t := p.peek()
		switch {
		case t.kind == tEOF:
			if closer != "" {
				return p.errAt(t, "", "missing `end`")
			}
			return nil
		case isKeyword(t, "end"):
			if closer != "end" {
				return p.errAt(t, "", "unexpected `end`")
			}
			p.next()
			return nil
		}
		if err := p.statement(c, depth); err != nil {
			return err
		}
		// a statement ends at a newline, `;`, `end` or EOF; anything else
		// (a modifier `if`, an operator) is refused
		t = p.peek()
		switch {
		case t.kind == tNewline, t.kind == tEOF, isKeyword(t, "end"):
		case t.kind == tIdent && conditionalWords[t.text]:
			return p.errAt(t, "", "conditional `%s` cannot be evaluated without running Ruby; vmbuild does not run the Gemfile", t.text)
		default:
			return p.errAt(t, "", "unexpected %s after statement", t)
		}
	}
}

func (p *gemfileParser) statement(c ctx, depth int) error {
	t := p.next()
	if t.kind != tIdent {
		if t.kind == tConst {
			return p.errAt(t, "", "`%s` cannot be evaluated without running Ruby; vmbuild does not run the Gemfile", t.text)
		}
		return p.errAt(t, "", "unexpected %s", t)
	}
	if conditionalWords[t.text] {
		return p.errAt(t, "", "conditional `%s` cannot be evaluated without running Ruby; vmbuild does not run the Gemfile", t.text)
	}
	if nx := p.peek(); isPunct(nx, "=") || isPunct(nx, ".") || isPunct(nx, "&.") || isPunct(nx, "+=") || isPunct(nx, "||=") || isPunct(nx, "-=") {
		return p.errAt(t, "", "`%s%s` (variables and method calls) cannot be evaluated without running Ruby; vmbuild does not run the Gemfile", t.text, nx.text)
	}
	switch t.text {
	case "gem":
		return p.gem(t, c)
	case "source":
		return p.source(t, c, depth)
	case "ruby":
		p.gf.Ruby = append(p.gf.Ruby, p.skipStatement()...)
		return nil
	case "group":
		return p.group(t, c, depth)
	case "platforms", "platform":
		return p.platforms(t, c, depth)
	case "git", "github", "gitlab", "gist", "bitbucket", "path":
		return p.sourceBlock(t, c, depth)
	case "gemspec":
		return p.gemspec(t, c)
	case "git_source":
		return p.gitSource(t)
	case "eval_gemfile":
		return p.evalGemfile(t, c, depth)
	case "install_if", "env":
		return p.errAt(t, "", "`%s` makes gems conditional on Ruby code or the environment; vmbuild does not run the Gemfile", t.text)
	case "plugin":
		return p.errAt(t, "", "Bundler plugins are not supported (Bundler installs them from the network, outside Gemfile.lock)")
	}
	return p.errAt(t, "", "`%s` is not part of the Gemfile DSL vmbuild reads; vmbuild does not run the Gemfile", t.text)
}

// value is a literal argument.
type value struct {
	kind string // "str", "sym", "num", "bool", "nil", "array", "hash"
	s    string
	arr  []value
	hash []pair
	line int
}

type pair struct {
	key string
	val value
}

func (v value) strs() ([]string, bool) {
	switch v.kind {
	case "str", "sym":
		return []string{v.s}, true
	case "array":
		var out []string
		for _, e := range v.arr {
			if e.kind != "str" && e.kind != "sym" {
				return nil, false
			}
			out = append(out, e.s)
		}
		return out, true
	}
	return nil, false
}

// args parses a method's arguments: positional values then key/value
// pairs, with or without parentheses.
func (p *gemfileParser) args(method token, gem string) ([]value, []pair, error) {
	var pos []value
	var kw []pair
	paren := false
	if nx := p.peek(); isPunct(nx, "(") && !nx.space {
		p.next()
		paren = true
	}
	endOfArgs := func(t token) bool {
		if paren {
			return isPunct(t, ")")
		}
		return t.kind == tNewline || t.kind == tEOF || isKeyword(t, "do") || isPunct(t, "{") || isKeyword(t, "end") ||
			(t.kind == tIdent && conditionalWords[t.text])
	}
	if paren {
		p.skipNewlines()
	}
	for !endOfArgs(p.peek()) {
		t := p.peek()
		switch {
		case t.kind == tLabel:
			p.next()
			p.skipNewlines()
			v, err := p.value(gem)
			if err != nil {
				return nil, nil, err
			}
			kw = append(kw, pair{t.text, v})
		case isPunct(t, "*") || isPunct(t, "**") || isPunct(t, "&"):
			return nil, nil, p.errAt(t, gem, "splat arguments cannot be evaluated without running Ruby")
		default:
			v, err := p.value(gem)
			if err != nil {
				return nil, nil, err
			}
			if isPunct(p.peek(), "=>") {
				p.next()
				p.skipNewlines()
				if v.kind != "sym" && v.kind != "str" {
					return nil, nil, p.errAt(t, gem, "hash key %s is not a symbol or string", t)
				}
				val, err := p.value(gem)
				if err != nil {
					return nil, nil, err
				}
				kw = append(kw, pair{v.s, val})
				break
			}
			if len(kw) > 0 {
				return nil, nil, p.errAt(t, gem, "positional argument %s after options", t)
			}
			pos = append(pos, v)
		}
		nx := p.peek()
		if isPunct(nx, ",") {
			p.next()
			p.skipNewlines()
			continue
		}
		if paren {
			p.skipNewlines()
		}
		if !endOfArgs(p.peek()) {
			return nil, nil, p.errAt(p.peek(), gem, "unexpected %s in arguments of `%s`", p.peek(), method.text)
		}
	}
	if paren {
		p.next() // ")"
	}
	return pos, kw, nil
}

func (p *gemfileParser) value(gem string) (value, error) {
	t := p.next()
	switch t.kind {
	case tString:
		if t.interp {
			return value{}, p.errAt(t, gem, "string interpolation %s cannot be evaluated without running Ruby", t)
		}
		return value{kind: "str", s: t.text, line: t.line}, nil
	case tSymbol:
		if t.interp {
			return value{}, p.errAt(t, gem, "symbol interpolation cannot be evaluated without running Ruby")
		}
		return value{kind: "sym", s: t.text, line: t.line}, nil
	case tNumber:
		return value{kind: "num", s: t.text, line: t.line}, nil
	case tWords:
		v := value{kind: "array", line: t.line}
		for _, w := range t.words {
			k := "str"
			if t.symArr {
				k = "sym"
			}
			v.arr = append(v.arr, value{kind: k, s: w, line: t.line})
		}
		return v, nil
	case tIdent:
		switch t.text {
		case "true", "false":
			return value{kind: "bool", s: t.text, line: t.line}, nil
		case "nil":
			return value{kind: "nil", line: t.line}, nil
		}
	case tPunct:
		switch t.text {
		case "[":
			v := value{kind: "array", line: t.line}
			for {
				p.skipNewlines()
				if isPunct(p.peek(), "]") {
					p.next()
					return v, nil
				}
				e, err := p.value(gem)
				if err != nil {
					return value{}, err
				}
				v.arr = append(v.arr, e)
				p.skipNewlines()
				if isPunct(p.peek(), ",") {
					p.next()
					continue
				}
				if !isPunct(p.peek(), "]") {
					return value{}, p.errAt(p.peek(), gem, "unexpected %s in array", p.peek())
				}
			}
		case "{":
			v := value{kind: "hash", line: t.line}
			for {
				p.skipNewlines()
				if isPunct(p.peek(), "}") {
					p.next()
					return v, nil
				}
				k := p.next()
				var key string
				switch {
				case k.kind == tLabel:
					key = k.text
				case (k.kind == tSymbol || k.kind == tString) && !k.interp && isPunct(p.peek(), "=>"):
					p.next()
					key = k.text
				default:
					return value{}, p.errAt(k, gem, "unexpected %s in hash", k)
				}
				p.skipNewlines()
				e, err := p.value(gem)
				if err != nil {
					return value{}, err
				}
				v.hash = append(v.hash, pair{key, e})
				p.skipNewlines()
				if isPunct(p.peek(), ",") {
					p.next()
				}
			}
		case "->":
			return value{}, p.errAt(t, gem, "a lambda cannot be evaluated without running Ruby")
		}
	}
	if t.kind == tIdent || t.kind == tConst {
		return value{}, p.errAt(t, gem, "`%s` cannot be evaluated without running Ruby; vmbuild does not run the Gemfile", t.text)
	}
	return value{}, p.errAt(t, gem, "unexpected %s", t)
}

// block parses the `do … end` a block method needs; a missing block is
// an error.
func (p *gemfileParser) block(method token, c ctx, depth int) error {
	t := p.peek()
	if isPunct(t, "{") {
		return p.errAt(t, "", "use do … end for the block of `%s`", method.text)
	}
	if !isKeyword(t, "do") {
		return p.errAt(t, "", "`%s` needs a block (do … end)", method.text)
	}
	p.next()
	if isPunct(p.peek(), "|") {
		return p.errAt(p.peek(), "", "block parameters in `%s` cannot be evaluated", method.text)
	}
	return p.statements(c, depth, "end")
}

// skipStatement skips to the end of the statement (balanced brackets)
// and returns the literal strings it skipped, with their labels
// ("file: .ruby-version").
func (p *gemfileParser) skipStatement() []string {
	depth := 0
	var strs []string
	label := ""
	for {
		t := p.peek()
		switch {
		case t.kind == tEOF:
			return strs
		case t.kind == tNewline && depth == 0:
			return strs
		case isKeyword(t, "end") && depth == 0:
			return strs
		case t.kind == tLabel:
			label = t.text + ": "
		case t.kind == tString && !t.interp:
			strs = append(strs, label+t.text)
			label = ""
		case isPunct(t, "(") || isPunct(t, "[") || isPunct(t, "{"):
			depth++
		case isPunct(t, ")") || isPunct(t, "]") || isPunct(t, "}"):
			depth--
		}
		p.next()
	}
}

var validPlatform = regexp.MustCompile(`^(ruby|mri|rbx|truffleruby|jruby|windows|mswin|mswin64|mingw|x64_mingw)(_\d\d)?$`)

var gemKeys = map[string]bool{"group": true, "groups": true, "git": true, "path": true, "glob": true, "name": true,
	"branch": true, "ref": true, "tag": true, "require": true, "submodules": true, "platform": true, "platforms": true,
	"source": true, "install_if": true, "force_ruby_platform": true}

var builtinGitSources = []string{"github", "gitlab", "gist", "bitbucket"}

func (p *gemfileParser) gem(t token, c ctx) error {
	// name the gem in argument errors
	hint := ""
	if j := p.i; j < len(p.toks) {
		if isPunct(p.toks[j], "(") && j+1 < len(p.toks) {
			j++
		}
		if p.toks[j].kind == tString {
			hint = p.toks[j].text
		}
	}
	pos, kw, err := p.args(t, hint)
	if err != nil {
		return err
	}
	if len(pos) == 0 || pos[0].kind != "str" {
		return p.errAt(t, "", "gem needs a name (a string)")
	}
	name := pos[0].s
	if !reGemName.MatchString(name) {
		return p.errAt(t, name, "%q is not a valid gem name", name)
	}
	d := &GemfileDep{Name: name, File: p.cur, Line: t.line, Source: c.source}
	var reqs []string
	for _, v := range pos[1:] {
		ss, ok := v.strs()
		if !ok || v.kind == "sym" {
			return p.errAt(t, name, "version requirements must be strings")
		}
		reqs = append(reqs, ss...)
	}
	if d.Req, err = ParseRequirement(reqs...); err != nil {
		return p.errAt(t, name, "%v", err)
	}
	groups := slices.Clone(c.groups)
	platforms := slices.Clone(c.platforms)
	var git *GemfileSource
	gitNames := uniq(append(slices.Clone(builtinGitSources), p.gf.GitSources...))
	str := func(pr pair) (string, error) {
		if pr.val.kind != "str" && pr.val.kind != "sym" {
			return "", p.errAt(t, name, "option %s: want a string", pr.key)
		}
		return pr.val.s, nil
	}
	for _, pr := range kw {
		if !gemKeys[pr.key] && !slices.Contains(gitNames, pr.key) {
			return p.errAt(t, name, "unknown option %s: (Bundler's options are %s, and git sources %s)", pr.key, strings.Join(sortedKeys(gemKeys), ", "), strings.Join(gitNames, ", "))
		}
	}
	for _, pr := range kw {
		switch pr.key {
		case "group", "groups":
			ss, ok := pr.val.strs()
			if !ok {
				return p.errAt(t, name, "option %s: want symbols", pr.key)
			}
			groups = append(groups, ss...)
		case "platform", "platforms":
			ss, ok := pr.val.strs()
			if !ok {
				return p.errAt(t, name, "option %s: want symbols", pr.key)
			}
			platforms = append(platforms, ss...)
		case "require", "name":
			// not relevant to what installs
		case "install_if":
			return p.errAt(t, name, "install_if makes the gem conditional on Ruby code; vmbuild does not run the Gemfile")
		case "force_ruby_platform":
			d.ForceRubyPlatform = pr.val.kind == "bool" && pr.val.s == "true"
		case "source":
			u, err := str(pr)
			if err != nil {
				return err
			}
			d.Source = &GemfileSource{Kind: SourceGem, URL: normalizeRemote(u), Line: t.line}
		case "path":
			u, err := str(pr)
			if err != nil {
				return err
			}
			d.Source = &GemfileSource{Kind: SourcePath, URL: cleanRel(u), Line: t.line}
		case "git":
			u, err := str(pr)
			if err != nil {
				return err
			}
			git = &GemfileSource{Kind: SourceGit, URL: u, Line: t.line}
		default:
			if slices.Contains(gitNames, pr.key) {
				repo, err := str(pr)
				if err != nil {
					return err
				}
				git = p.gitSourceURL(pr.key, repo)
				git.Line = t.line
			}
		}
	}
	if git != nil {
		for _, pr := range kw {
			switch pr.key {
			case "branch", "ref", "tag", "glob":
				s, err := str(pr)
				if err != nil {
					return err
				}
				switch pr.key {
				case "branch":
					git.Branch = s
				case "ref":
					if git.Ref != "" && git.Ref != s {
						return p.errAt(t, name, "the ref option conflicts with %s: %s", git.GitSource, git.Repo)
					}
					git.Ref = s
				case "tag":
					git.Tag = s
				case "glob":
					git.Glob = s
				}
			case "submodules":
				git.Submodules = pr.val.kind == "bool" && pr.val.s == "true"
			}
		}
		d.Source = git
	} else {
		for _, pr := range kw {
			if pr.key == "branch" || pr.key == "ref" || pr.key == "tag" || pr.key == "submodules" {
				if c.source == nil || c.source.Kind != SourceGit {
					return p.errAt(t, name, "option %s: is only allowed for gems with a git source", pr.key)
				}
			}
		}
	}
	for _, pl := range platforms {
		if !validPlatform.MatchString(pl) {
			return p.errAt(t, name, "`%s` is not a valid platform", pl)
		}
	}
	if len(groups) == 0 {
		groups = []string{"default"}
	}
	d.Groups = uniq(groups)
	d.Platforms = uniq(platforms)
	p.gf.Deps = append(p.gf.Deps, d)
	return nil
}

// gitSourceURL expands Bundler's built-in git sources; a git_source of
// the Gemfile's own (also one redefining a built-in) is left unexpanded.
func (p *gemfileParser) gitSourceURL(kind, repo string) *GemfileSource {
	s := &GemfileSource{Kind: SourceGit, GitSource: kind, Repo: repo}
	if slices.Contains(p.gf.GitSources, kind) {
		return s
	}
	switch kind {
	case "github", "gitlab":
		host := kind + ".com"
		if m := regexp.MustCompile(`\Ahttps://` + regexp.QuoteMeta(host) + `/([A-Za-z0-9_\-./]+)/(?:pull|-/merge_requests)/(\d+)\z`).FindStringSubmatch(repo); m != nil {
			s.URL = "https://" + host + "/" + m[1] + ".git"
			if kind == "github" {
				s.Ref = "refs/pull/" + m[2] + "/head"
			} else {
				s.Ref = "refs/merge-requests/" + m[2] + "/head"
			}
			return s
		}
		if !strings.Contains(repo, "/") {
			repo = repo + "/" + repo
		}
		s.URL = "https://" + host + "/" + repo + ".git"
	case "gist":
		s.URL = "https://gist.github.com/" + repo + ".git"
	case "bitbucket":
		user, r, ok := strings.Cut(repo, "/")
		if !ok {
			r = user
		}
		s.URL = "https://" + user + "@bitbucket.org/" + user + "/" + r + ".git"
	}
	return s
}

func (p *gemfileParser) source(t token, c ctx, depth int) error {
	pos, kw, err := p.args(t, "")
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0].kind != "str" {
		if len(pos) == 1 && pos[0].kind == "sym" {
			return p.errAt(t, "", "source :%s is no longer allowed by Bundler; use \"https://rubygems.org\"", pos[0].s)
		}
		return p.errAt(t, "", "source needs one URL (a string)")
	}
	for _, pr := range kw {
		if pr.key == "type" {
			return p.errAt(t, "", "plugin sources (source … type: %s) are not supported", pr.val.s)
		}
		return p.errAt(t, "", "unknown option %s: for source", pr.key)
	}
	u := normalizeRemote(pos[0].s)
	if isKeyword(p.peek(), "do") {
		c.source = &GemfileSource{Kind: SourceGem, URL: u, Line: t.line}
		return p.block(t, c, depth)
	}
	if c.source != nil || len(c.groups) > 0 || len(c.platforms) > 0 {
		return p.errAt(t, "", "a global source inside a block is not supported")
	}
	if !slices.Contains(p.gf.Sources, u) {
		p.gf.Sources = append(p.gf.Sources, u)
	}
	return nil
}

func (p *gemfileParser) group(t token, c ctx, depth int) error {
	pos, kw, err := p.args(t, "")
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return p.errAt(t, "", "group needs at least one name")
	}
	var names []string
	for _, v := range pos {
		if v.kind != "sym" && v.kind != "str" {
			return p.errAt(t, "", "group names must be symbols or strings")
		}
		names = append(names, v.s)
	}
	for _, pr := range kw {
		if pr.key != "optional" {
			return p.errAt(t, "", "unknown option %s: for group (only optional:)", pr.key)
		}
		if pr.val.kind != "bool" {
			return p.errAt(t, "", "group option optional: must be true or false")
		}
		if pr.val.s == "true" {
			for _, n := range names {
				if !slices.Contains(p.gf.OptionalGroups, n) {
					p.gf.OptionalGroups = append(p.gf.OptionalGroups, n)
				}
			}
		}
	}
	c.groups = append(slices.Clone(c.groups), names...)
	return p.block(t, c, depth)
}

func (p *gemfileParser) platforms(t token, c ctx, depth int) error {
	pos, kw, err := p.args(t, "")
	if err != nil {
		return err
	}
	if len(kw) > 0 || len(pos) == 0 {
		return p.errAt(t, "", "%s takes platform names only", t.text)
	}
	var names []string
	for _, v := range pos {
		ss, ok := v.strs()
		if !ok {
			return p.errAt(t, "", "platform names must be symbols")
		}
		for _, s := range ss {
			if !validPlatform.MatchString(s) {
				return p.errAt(t, "", "`%s` is not a valid platform", s)
			}
		}
		names = append(names, ss...)
	}
	c.platforms = append(slices.Clone(c.platforms), names...)
	return p.block(t, c, depth)
}

// sourceBlock is git/github/…/path with a block.
func (p *gemfileParser) sourceBlock(t token, c ctx, depth int) error {
	pos, kw, err := p.args(t, "")
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0].kind != "str" {
		return p.errAt(t, "", "%s needs one argument (a string)", t.text)
	}
	var s *GemfileSource
	switch t.text {
	case "path":
		s = &GemfileSource{Kind: SourcePath, URL: cleanRel(pos[0].s)}
	case "git":
		s = &GemfileSource{Kind: SourceGit, URL: pos[0].s}
	default:
		s = p.gitSourceURL(t.text, pos[0].s)
	}
	s.Line = t.line
	for _, pr := range kw {
		v := pr.val.s
		switch pr.key {
		case "branch":
			s.Branch = v
		case "ref":
			s.Ref = v
		case "tag":
			s.Tag = v
		case "glob":
			s.Glob = v
		case "submodules":
			s.Submodules = v == "true"
		case "name":
		default:
			return p.errAt(t, "", "unknown option %s: for %s", pr.key, t.text)
		}
	}
	if !isKeyword(p.peek(), "do") {
		if t.text == "path" {
			return p.errAt(t, "", "a global path source (path without a block) is not supported")
		}
		return p.errAt(t, "", "`%s` needs a block (do … end)", t.text)
	}
	c.source = s
	return p.block(t, c, depth)
}

func (p *gemfileParser) gemspec(t token, c ctx) error {
	pos, kw, err := p.args(t, "")
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return p.errAt(t, "", "gemspec takes options only")
	}
	g := GemspecDirective{Path: ".", DevelopmentGroup: "development", Line: t.line}
	for _, pr := range kw {
		if pr.val.kind != "str" && pr.val.kind != "sym" {
			return p.errAt(t, "", "gemspec option %s: want a string", pr.key)
		}
		switch pr.key {
		case "path":
			g.Path = cleanRel(pr.val.s)
		case "name":
			g.Name = pr.val.s
		case "development_group":
			g.DevelopmentGroup = pr.val.s
		case "glob":
		default:
			return p.errAt(t, "", "unknown option %s: for gemspec", pr.key)
		}
	}
	if c.source != nil || len(c.groups) > 0 || len(c.platforms) > 0 {
		return p.errAt(t, "", "gemspec inside a block is not supported")
	}
	p.gf.Gemspecs = append(p.gf.Gemspecs, g)
	return nil
}

// gitSource records the name of `git_source(:name) { |repo| … }` and
// skips its block unevaluated.
func (p *gemfileParser) gitSource(t token) error {
	paren := isPunct(p.peek(), "(")
	if paren {
		p.next()
	}
	nt := p.next()
	if nt.kind != tSymbol && nt.kind != tString {
		return p.errAt(t, "", "git_source needs a name (a symbol)")
	}
	if paren && !isPunct(p.next(), ")") {
		return p.errAt(t, "", "git_source takes one name")
	}
	if gemKeys[nt.text] {
		return p.errAt(t, "", "git_source %s: is a reserved option name", nt.text)
	}
	open := p.next()
	var closer string
	switch {
	case isPunct(open, "{"):
		closer = "}"
	case isKeyword(open, "do"):
		closer = "end"
	default:
		return p.errAt(t, "", "git_source needs a block")
	}
	depth := 1
	lineStart := false
	for depth > 0 {
		tk := p.next()
		switch {
		case tk.kind == tEOF:
			return p.errAt(t, "", "unterminated git_source block")
		case closer == "}" && isPunct(tk, "{"):
			depth++
		case closer == "}" && isPunct(tk, "}"):
			depth--
		case closer == "end" && (isKeyword(tk, "do") || isKeyword(tk, "begin") || isKeyword(tk, "case") || isKeyword(tk, "def") ||
			lineStart && (isKeyword(tk, "if") || isKeyword(tk, "unless") || isKeyword(tk, "while") || isKeyword(tk, "until"))):
			depth++
		case closer == "end" && isKeyword(tk, "end"):
			depth--
		}
		lineStart = tk.kind == tNewline
	}
	if !slices.Contains(p.gf.GitSources, nt.text) {
		p.gf.GitSources = append(p.gf.GitSources, nt.text)
	}
	return nil
}

func (p *gemfileParser) evalGemfile(t token, c ctx, depth int) error {
	pos, kw, err := p.args(t, "")
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0].kind != "str" || len(kw) > 0 {
		return p.errAt(t, "", "eval_gemfile needs one literal path")
	}
	if p.fsys == nil {
		return p.errAt(t, "", "eval_gemfile %q: no tree to read it from", pos[0].s)
	}
	target := pos[0].s
	if path.IsAbs(target) {
		return p.errAt(t, "", "eval_gemfile %q: an absolute path is outside the tree", target)
	}
	full := path.Join(path.Dir(p.cur), target)
	if !fs.ValidPath(full) {
		return p.errAt(t, "", "eval_gemfile %q: the path leaves the tree", target)
	}
	if _, err := fs.Stat(p.fsys, full); err != nil {
		return p.errAt(t, "", "eval_gemfile %q: %v", target, err)
	}
	return p.file(full, c, depth+1)
}

func normalizeRemote(u string) string {
	if !strings.HasSuffix(u, "/") {
		u += "/"
	}
	return u
}

func cleanRel(p string) string {
	return path.Clean(strings.TrimSuffix(p, "/"))
}

func uniq(ss []string) []string {
	var out []string
	for _, s := range ss {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
