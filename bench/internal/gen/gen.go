// Package gen generates vmbuild's benchmark upstream: a Mastodon-shaped
// application repository, and the sequence of commits the benchmark builds
// one after another.
//
// The repository has what makes Mastodon's image builds slow and their
// caching interesting: a Gemfile and Gemfile.lock (about 40 gems), a
// package.json and yarn.lock (about 60 packages, Yarn 4 format), JavaScript
// sources under app/javascript, Ruby sources, translations under
// config/locales, and a Dockerfile shaped like Mastodon's official one.
// Mastodon's bundler, yarn and asset compiler are replaced by stand-ins
// (bin/bundle, bin/yarn, bin/rails: busybox sh and awk) that do
// deterministic CPU work proportional to their inputs and write
// deterministic outputs (/usr/local/bundle, node_modules, public/packs), so
// that step costs are realistic and the same on every run.
//
// Everything is a pure function of the Size: the same Size gives the same
// files, and (written with WriteGit) the same commit hashes on every machine.
package gen

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/vmbuild/vmbuild/internal/testenv/detgit"
)

// Size sets the amount of work the stand-in tools do. Work is counted in
// iterations of a Lehmer random number generator in busybox awk (about
// 1.1 µs each on a 2020s x86 core).
type Size struct {
	// Name is "full" or "quick".
	Name string
	// BundleRounds is the work per gem of bin/bundle install.
	BundleRounds int
	// YarnRounds is the work per package of bin/yarn install.
	YarnRounds int
	// AssetRoundsPerKB is the work per KiB of asset sources (JavaScript,
	// styles, translations) of bin/rails assets:precompile.
	AssetRoundsPerKB int
}

// Full is the size of a full benchmark run: each tool takes about 3 s on
// one core of the reference machine (see bench/RESULTS.md).
func Full() Size {
	return Size{Name: "full", BundleRounds: 70000, YarnRounds: 46000, AssetRoundsPerKB: 5000}
}

// Quick is the size of `bench/run --quick`: each tool takes about 0.2 s.
func Quick() Size {
	return Size{Name: "quick", BundleRounds: 3500, YarnRounds: 2300, AssetRoundsPerKB: 200}
}

// SizeByName returns Full or Quick.
func SizeByName(name string) (Size, error) {
	switch name {
	case "full":
		return Full(), nil
	case "quick":
		return Quick(), nil
	}
	return Size{}, fmt.Errorf("unknown size %q (full or quick)", name)
}

// File is one file of the tree.
type File struct {
	Content string
	// Mode is 0o644 or 0o755 (git records only these).
	Mode os.FileMode
}

// Tree maps slash-separated paths to files.
type Tree map[string]File

// Paths returns the tree's paths, sorted.
func (t Tree) Paths() []string {
	ps := make([]string, 0, len(t))
	for p := range t {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// Clone copies the tree.
func (t Tree) Clone() Tree {
	c := make(Tree, len(t))
	for p, f := range t {
		c[p] = f
	}
	return c
}

// Kind classifies a commit of the sequence by what it touches.
type Kind string

const (
	KindImport      Kind = "import"      // the initial tree
	KindSource      Kind = "source"      // one JavaScript file
	KindTranslation Kind = "translation" // one config/locales file
	KindModels      Kind = "models"      // Ruby models only
	KindGemfileLock Kind = "gemfile-lock"
	KindYarnLock    Kind = "yarn-lock"
)

// Change is one commit of the sequence.
type Change struct {
	// ID names the commit in results: "js", "i18n", "models",
	// "gemfile.lock", "yarn.lock".
	ID      string
	Kind    Kind
	Title   string // for tables: "one JS file", …
	Message string // the commit message
	// Files are the files this commit writes (new content).
	Files Tree
}

// Upstream is the generated repository: an initial tree and the changes
// committed on top of it, in order.
type Upstream struct {
	Size    Size
	Initial Tree
	Changes []Change
}

// T0 is the time of the import commit; commit n is T0 + n hours.
var T0 = time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)

// CommitTime is the author and committer time of commit n (0 = import).
func CommitTime(n int) time.Time { return T0.Add(time.Duration(n) * time.Hour) }

// Names of files the sequence changes.
const (
	SourceFile      = "app/javascript/mastodon/components/status.jsx"
	TranslationFile = "config/locales/fr.yml"
	ModelFile       = "app/models/status.rb"
	BumpedGem       = "puma"
	BumpedPackage   = "axios"
)

// New generates the upstream for size.
func New(size Size) *Upstream {
	u := &Upstream{Size: size, Initial: initialTree(size)}
	u.Changes = changes(u.Initial)
	return u
}

// TreeAt returns the tree at commit n (0 = import, n = after Changes[n-1]).
func (u *Upstream) TreeAt(n int) Tree {
	t := u.Initial.Clone()
	for i := 0; i < n && i < len(u.Changes); i++ {
		for p, f := range u.Changes[i].Files {
			t[p] = f
		}
	}
	return t
}

// Commit is a commit written by WriteGit.
type Commit struct {
	// ID is "import" or the Change's ID.
	ID   string
	Kind Kind
	SHA  string
	Time time.Time
}

// WriteGit commits the import and every change to repo (a detgit
// repository: fixed identities, so the hashes are the same everywhere) and
// returns the commits in order.
func (u *Upstream) WriteGit(ctx context.Context, repo *detgit.Repo) ([]Commit, error) {
	if err := writeTree(repo.WorkTree, u.Initial); err != nil {
		return nil, err
	}
	sha, err := repo.Commit(ctx, "Import Mastodon-shaped benchmark application", CommitTime(0))
	if err != nil {
		return nil, fmt.Errorf("committing import: %w", err)
	}
	out := []Commit{{ID: "import", Kind: KindImport, SHA: sha, Time: CommitTime(0)}}
	for i, c := range u.Changes {
		if err := writeTree(repo.WorkTree, c.Files); err != nil {
			return nil, err
		}
		when := CommitTime(i + 1)
		sha, err := repo.Commit(ctx, c.Message, when)
		if err != nil {
			return nil, fmt.Errorf("committing %s: %w", c.ID, err)
		}
		out = append(out, Commit{ID: c.ID, Kind: c.Kind, SHA: sha, Time: when})
	}
	return out, nil
}

// WriteTree writes the files of t under dir.
func WriteTree(dir string, t Tree) error { return writeTree(dir, t) }

func writeTree(dir string, t Tree) error {
	for _, p := range t.Paths() {
		f := t[p]
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		_ = os.Remove(full)
		if err := os.WriteFile(full, []byte(f.Content), mode); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
		if err := os.Chmod(full, mode); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	return nil
}

// ---- the initial tree ----

func initialTree(size Size) Tree {
	t := Tree{}
	put := func(p, c string) { t[p] = File{Content: c, Mode: 0o644} }
	exe := func(p, c string) { t[p] = File{Content: c, Mode: 0o755} }

	gems := gemList()
	pkgs := packageList()
	put("Gemfile", gemfile(gems))
	put("Gemfile.lock", gemfileLock(gems))
	put("package.json", packageJSON(pkgs))
	put("yarn.lock", yarnLock(pkgs))
	put(".ruby-version", "3.4.1\n")
	put(".nvmrc", "22.11\n")
	put(".dockerignore", dockerignore)
	put("Dockerfile", Dockerfile)
	put("README.md", readme)
	put("Rakefile", "require_relative 'config/application'\n\nRails.application.load_tasks\n")
	put("config.ru", "require_relative 'config/environment'\n\nrun Rails.application\n")
	put("config/webpacker.yml", webpackerYML)
	exe("bin/bundle", BundleScript(size))
	exe("bin/yarn", YarnScript(size))
	exe("bin/rails", RailsScript(size))

	for i, name := range jsComponents {
		put("app/javascript/mastodon/components/"+name+".jsx", jsComponent("components/"+name, i))
	}
	for i, name := range jsFeatures {
		put("app/javascript/mastodon/features/"+name+"/index.jsx", jsComponent("features/"+name, 100+i))
	}
	for i, name := range jsReducers {
		put("app/javascript/mastodon/reducers/"+name+".js", jsModule("reducers/"+name, 200+i))
		put("app/javascript/mastodon/actions/"+name+".js", jsModule("actions/"+name, 300+i))
	}
	put("app/javascript/entrypoints/application.js", jsEntrypoint())
	for i, name := range styleFiles {
		put("app/javascript/styles/mastodon/"+name+".scss", scss(name, 400+i))
	}
	for i, lang := range locales {
		put("config/locales/"+lang+".yml", localeYML(lang, 500+i))
	}
	for i, name := range models {
		put("app/models/"+name+".rb", rubyClass(name, "ApplicationRecord", 600+i))
	}
	for i, name := range controllers {
		put("app/controllers/"+name+"_controller.rb", rubyClass(name+"_controller", "ApplicationController", 700+i))
	}
	for i, name := range services {
		put("app/services/"+name+"_service.rb", rubyClass(name+"_service", "BaseService", 800+i))
	}
	for i, name := range []string{"version", "redis_configuration", "snowflake", "migration_helpers", "cli_base"} {
		put("lib/mastodon/"+name+".rb", rubyClass(name, "Object", 900+i))
	}
	put("config/application.rb", rubyClass("application", "Rails::Application", 950))
	put("config/routes.rb", rubyClass("routes", "Object", 951))
	put("config/environments/production.rb", rubyClass("production", "Object", 952))
	for i, name := range []string{"cors", "content_security_policy", "rack_attack", "sidekiq", "paperclip"} {
		put("config/initializers/"+name+".rb", rubyClass(name, "Object", 960+i))
	}
	return t
}

// ---- the commit sequence ----

func changes(t Tree) []Change {
	var out []Change

	js := t[SourceFile].Content
	js = strings.Replace(js, "render () {", "handleBenchmarkEdit = () => {\n    const { status } = this.props;\n    return status && status.get('id');\n  };\n\n  render () {", 1)
	out = append(out, Change{ID: "js", Kind: KindSource, Title: "one JS file", Message: "Fix status component edit handler",
		Files: Tree{SourceFile: {Content: js, Mode: 0o644}}})

	fr := t[TranslationFile].Content
	fr = strings.Replace(fr, "\nfr:\n", "\nfr:\n  benchmark_update: \"Traductions mises à jour\"\n", 1)
	out = append(out, Change{ID: "i18n", Kind: KindTranslation, Title: "translation only", Message: "New Crowdin translations",
		Files: Tree{TranslationFile: {Content: fr, Mode: 0o644}}})

	model := t[ModelFile].Content
	model = strings.Replace(model, "\nend\n", "\n\n  def benchmark_edited?\n    edited_at.present?\n  end\nend\n", 1)
	out = append(out, Change{ID: "models", Kind: KindModels, Title: "models only", Message: "Add Status#benchmark_edited?",
		Files: Tree{ModelFile: {Content: model, Mode: 0o644}}})

	gems := gemList()
	for i := range gems {
		if gems[i].name == BumpedGem {
			gems[i].version = bumpPatch(gems[i].version)
		}
	}
	out = append(out, Change{ID: "gemfile.lock", Kind: KindGemfileLock, Title: "Gemfile.lock bump", Message: "Bump " + BumpedGem + " to " + gemVersion(gems, BumpedGem),
		Files: Tree{"Gemfile.lock": {Content: gemfileLock(gems), Mode: 0o644}}})

	pkgs := packageList()
	for i := range pkgs {
		if pkgs[i].name == BumpedPackage {
			pkgs[i].version = bumpPatch(pkgs[i].version)
		}
	}
	out = append(out, Change{ID: "yarn.lock", Kind: KindYarnLock, Title: "yarn.lock bump", Message: "Bump " + BumpedPackage + " to " + pkgVersion(pkgs, BumpedPackage),
		Files: Tree{"yarn.lock": {Content: yarnLock(pkgs), Mode: 0o644}}})
	return out
}

func bumpPatch(v string) string {
	parts := strings.Split(v, ".")
	n := 0
	fmt.Sscanf(parts[len(parts)-1], "%d", &n)
	parts[len(parts)-1] = fmt.Sprint(n + 1)
	return strings.Join(parts, ".")
}

func gemVersion(gems []dep, name string) string {
	for _, g := range gems {
		if g.name == name {
			return g.version
		}
	}
	return ""
}

func pkgVersion(pkgs []dep, name string) string { return gemVersion(pkgs, name) }
