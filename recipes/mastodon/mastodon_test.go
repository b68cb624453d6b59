// Package mastodon_test checks the Mastodon recipes: that they (and every
// other recipe under recipes/) parse and make a graph, that their patches do
// what they claim on synthetic trees in the v4.1.2 and current-main layouts
// (and fail, by name, on the other one), and that the images a lock would pin
// for them are the ones expected. Nothing here needs a network or a daemon;
// git and /bin/sh must be installed.
package mastodon_test

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/testenv/detgit"
	"github.com/vmbuild/vmbuild/llb"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/patch"
	"github.com/vmbuild/vmbuild/recipe"
)

// The recipes of this directory.
const (
	recipe412       = "mastodon-4.1.2.yaml"
	recipeMain      = "mastodon.yaml"
	recipeNoHiredis = "mastodon-no-hiredis.yaml"
	recipeStreaming = "streaming.yaml"
)

// The v4.1.2 commit issue 7 names.
const commit412 = "3d8bd093b9197659563070d2c763988428063406"

// The operator's patch, as issue 7 records it.
const operatorScript = `sed -i '/gem '\''hiredis'\'', '\''~> 0.6'\''/d' ./Gemfile
sed -i '/hiredis/d' ./Gemfile.lock
sed -i '/hiredis/d' ./lib/mastodon/redis_config.rb
sed -i '/hiredis/d' ./lib/tasks/mastodon.rake
sed -i 's/, driver: :hiredis//g' ./app/lib/redis_configuration.rb
sed -i 's/, require: \['\''redis'\'', '\''redis\/connection\/hiredis'\''\]//' ./Gemfile
`

func load(t *testing.T, name string) *recipe.Recipe {
	t.Helper()
	r, err := recipe.Load(name)
	if err != nil {
		t.Fatalf("loading %s: %v", name, err)
	}
	return r
}

// placeholderLock stands in for a lock, like `vmbuild graph` does without
// one, plus a frontend pin in dockerfile mode (a lock of a Dockerfile with a
// `# syntax=` line has one).
func placeholderLock(r *recipe.Recipe) *lock.Lock {
	zero := "sha256:" + strings.Repeat("0", 64)
	l := lock.Skeleton(r)
	l.Upstream.Commit, l.Upstream.CommitTime = strings.Repeat("0", 40), time.Unix(1700000000, 0).UTC()
	if r.Base != "" {
		l.Base = &lock.ImagePin{Ref: lock.NormalizeImageRef(r.Base), Digest: zero}
	}
	if !r.Build.Native() {
		l.Frontend = &lock.ImagePin{Ref: "docker.io/docker/dockerfile:placeholder", Digest: "sha256:" + strings.Repeat("f", 64)}
	}
	// A Debian base and deps layers get one placeholder package each.
	pkg := func(name, path string) deps.Package {
		return deps.Package{Name: name, Version: "1", URL: "https://placeholder.invalid/" + path, SHA256: strings.Repeat("0", 64), Path: path}
	}
	if db := r.BaseDebian; db != nil {
		l.Debian = &lock.DebianPin{Mirror: db.Mirror, Suite: db.Suite, Components: db.Components, Architecture: "amd64",
			InRelease: lock.InReleasePin{URL: db.Mirror + "/dists/" + db.Suite + "/InRelease", SHA256: strings.Repeat("0", 64)}, Packages: 1}
		l.DepsLock = &lock.DepsLock{Version: lock.DepsVersion, Base: &lock.BasePackages{Packages: []deps.Package{pkg("libc6", "debs/libc6_1_amd64.deb")}}}
	}
	for _, lay := range r.Build.Layers {
		if lay.Deps == nil {
			continue
		}
		if l.DepsLock == nil {
			l.DepsLock = &lock.DepsLock{Version: lock.DepsVersion}
		}
		l.DepsLock.Layers = append(l.DepsLock.Layers, lock.LayerDeps{Layer: lay.Name, Manager: string(lay.Deps.Manager), Lockfile: lay.Deps.Lockfile,
			LockfileSHA256: strings.Repeat("0", 64), Packages: []lock.PackagePin{{Package: pkg("placeholder", "placeholder/-/placeholder-1.tgz")}}})
	}
	return l
}

// TestAllRecipesGraph loads every recipe under recipes/ and builds its
// graph with a placeholder lock: the DOT names every patch, and in
// dockerfile mode the frontend is the pinned one, not something a build
// arg chose.
func TestAllRecipesGraph(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "*", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.ToSlash(f))
	}
	for _, want := range []string{"../demo/demo.yaml", "../mastodon/" + recipe412, "../mastodon/" + recipeMain, "../mastodon/" + recipeNoHiredis, "../mastodon/" + recipeStreaming} {
		if !slices.Contains(names, want) {
			t.Errorf("recipe %s not found (found %v)", want, names)
		}
	}
	lockNames := map[string]string{}
	for _, f := range files {
		t.Run(filepath.ToSlash(f), func(t *testing.T) {
			r := load(t, f)
			if prev, dup := lockNames[r.LockPath()]; dup {
				t.Errorf("%s and %s share the lock file %s", prev, f, r.LockPath())
			}
			lockNames[r.LockPath()] = f
			l := placeholderLock(r)
			if err := lock.Check(r, l, "placeholder"); err != nil {
				t.Fatalf("placeholder lock does not match its recipe: %v", err)
			}
			g, err := llb.Build(r, l, llb.Options{})
			if err != nil {
				t.Fatalf("building graph: %v", err)
			}
			dot := g.DOT()
			if !strings.HasPrefix(dot, "digraph ") || !strings.HasSuffix(dot, "}\n") {
				t.Fatalf("not a DOT graph:\n%s", dot)
			}
			for i, p := range r.Patches {
				if want := fmt.Sprintf("patch %d: %s", i+1, p.Name); !strings.Contains(dot, want) {
					t.Errorf("DOT does not show %q:\n%s", want, dot)
				}
				if !strings.Contains(dot, p.SHA256[:12]) {
					t.Errorf("DOT does not show patch %s's sha256 %s:\n%s", p.Name, p.SHA256[:12], dot)
				}
			}
			if len(g.Patches) != len(r.Patches) {
				t.Errorf("graph has %d patch steps, recipe %d patches", len(g.Patches), len(r.Patches))
			}
			df := r.Build.Dockerfile
			if df == nil {
				return
			}
			if !strings.Contains(dot, "dockerfile "+df.Path) || !strings.Contains(dot, l.Frontend.Pinned()) {
				t.Errorf("DOT does not show the Dockerfile %s and frontend %s:\n%s", df.Path, l.Frontend.Pinned(), dot)
			}
			b := g.Dockerfile
			if b.Frontend != "gateway.v0" || b.FrontendOpt["source"] != l.Frontend.Pinned() {
				t.Errorf("frontend %s %q, want gateway.v0 with the pinned %s", b.Frontend, b.FrontendOpt["source"], l.Frontend.Pinned())
			}
			if b.FrontendOpt["filename"] != df.Path || b.FrontendOpt["target"] != df.Target {
				t.Errorf("frontend filename %q target %q, want %q %q", b.FrontendOpt["filename"], b.FrontendOpt["target"], df.Path, df.Target)
			}
			if b.FrontendOpt["build-arg:SOURCE_COMMIT"] != l.Upstream.Commit {
				t.Errorf("SOURCE_COMMIT is %q, want the locked commit", b.FrontendOpt["build-arg:SOURCE_COMMIT"])
			}
			for k := range df.Args {
				if strings.HasPrefix(k, "BUILDKIT_") {
					t.Errorf("build arg %s overrides BuildKit's behaviour (the frontend is pinned by the lock)", k)
				}
			}
			pol := llb.SourcePolicy(l)
			allowed := false
			for _, rule := range pol.Rules {
				if rule.Selector.Identifier == "docker-image://"+l.Frontend.Pinned() {
					allowed = true
				}
			}
			if !allowed {
				t.Errorf("source policy does not allow the pinned frontend %s", l.Frontend.Pinned())
			}
		})
	}
}

// TestRecipes checks what the Mastodon recipes must say.
func TestRecipes(t *testing.T) {
	const upstream = "https://github.com/mastodon/mastodon.git"
	r412 := load(t, recipe412)
	rMain := load(t, recipeMain)
	rNo := load(t, recipeNoHiredis)
	rStr := load(t, recipeStreaming)
	for _, r := range []*recipe.Recipe{r412, rMain, rNo, rStr} {
		if r.Upstream.Git != upstream {
			t.Errorf("%s: upstream %q, want %q", r.Path, r.Upstream.Git, upstream)
		}
		if r.Build.Native() {
			t.Errorf("%s: native build, want upstream's Dockerfile", r.Path)
		}
		if r.Platform == "" {
			t.Errorf("%s: no platform: the lock and digest would depend on the build host", r.Path)
		}
		if strings.Contains(string(r.Raw), "@sha256:") {
			t.Errorf("%s: names an image by digest; pins belong in the lock", r.Path)
		}
	}

	// v4.1.2: the tag, the six commands verbatim as a script patch, a
	// Debian base by tag for it.
	if r412.Upstream.Ref != "v4.1.2" {
		t.Errorf("%s: ref %q, want v4.1.2", r412.Path, r412.Upstream.Ref)
	}
	if !strings.Contains(string(r412.Raw), "--commit "+commit412) {
		t.Errorf("%s: does not say how to lock commit %s", r412.Path, commit412)
	}
	if len(r412.Patches) != 1 || r412.Patches[0].Kind != recipe.PatchScript {
		t.Fatalf("%s: want one script patch, have %+v", r412.Path, r412.Patches)
	}
	if got := string(r412.Patches[0].Content); got != operatorScript {
		t.Errorf("%s: the script is not the operator's six commands verbatim:\n%s", r412.Patches[0].File, got)
	}
	if !strings.HasPrefix(lock.NormalizeImageRef(r412.Base), "docker.io/library/debian:") {
		t.Errorf("%s: base %q, want a Debian image by tag", r412.Path, r412.Base)
	}
	if df := r412.Build.Dockerfile; df.Path != "Dockerfile" || df.Target != "" || len(df.Args) != 0 {
		t.Errorf("%s: dockerfile %+v, want upstream's Dockerfile, last stage, no args", r412.Path, df)
	}

	// main: target mastodon, CI's build args, no patch, no base.
	if rMain.Upstream.Ref != "main" || len(rMain.Patches) != 0 || rMain.Base != "" {
		t.Errorf("%s: ref %q, %d patches, base %q; want main, none, none", rMain.Path, rMain.Upstream.Ref, len(rMain.Patches), rMain.Base)
	}
	ciArgs := []string{"MASTODON_VERSION_METADATA", "MASTODON_VERSION_PRERELEASE"}
	if df := rMain.Build.Dockerfile; df.Path != "Dockerfile" || df.Target != "mastodon" || !slices.Equal(recipe.SortedKeys(df.Args), ciArgs) {
		t.Errorf("%s: dockerfile %+v, want Dockerfile, target mastodon, args %v", rMain.Path, df, ciArgs)
	}
	if !strings.Contains(string(rMain.Raw), "REDIS_DRIVER=ruby") {
		t.Errorf("%s: does not tell the deployment to set REDIS_DRIVER=ruby", rMain.Path)
	}

	// no-hiredis: mastodon.yaml plus the diff.
	if len(rNo.Patches) != 1 || rNo.Patches[0].Kind != recipe.PatchDiff || rNo.Patches[0].File != "patches/main-drop-hiredis-client.patch" {
		t.Fatalf("%s: want the one diff patch, have %+v", rNo.Path, rNo.Patches)
	}
	if !rNo.Patches[0].Offset || rNo.Patches[0].Optional {
		t.Errorf("%s: the context-free diff needs offset: true, and must not be optional", rNo.Path)
	}
	if rNo.Upstream != rMain.Upstream || rNo.Platform != rMain.Platform || rNo.Base != rMain.Base {
		t.Errorf("%s drifted from %s: upstream, platform or base differ", rNo.Path, rMain.Path)
	}
	dn, dm := rNo.Build.Dockerfile, rMain.Build.Dockerfile
	if dn.Path != dm.Path || dn.Target != dm.Target || dn.SourceDateEpochArg != dm.SourceDateEpochArg ||
		!slices.Equal(recipe.SortedKeys(dn.Args), recipe.SortedKeys(dm.Args)) ||
		dn.Args["MASTODON_VERSION_PRERELEASE"] != dm.Args["MASTODON_VERSION_PRERELEASE"] {
		t.Errorf("%s drifted from %s: dockerfile %+v vs %+v", rNo.Path, rMain.Path, dn, dm)
	}
	if dn.Args["MASTODON_VERSION_METADATA"] == dm.Args["MASTODON_VERSION_METADATA"] {
		t.Errorf("%s: the version metadata should tell the patched image from stock main", rNo.Path)
	}

	// streaming: streaming/Dockerfile with the repository root as context.
	if rStr.Upstream.Ref != "main" || len(rStr.Patches) != 0 {
		t.Errorf("%s: ref %q, %d patches", rStr.Path, rStr.Upstream.Ref, len(rStr.Patches))
	}
	if df := rStr.Build.Dockerfile; df.Path != "streaming/Dockerfile" || !slices.Equal(recipe.SortedKeys(df.Args), ciArgs) {
		t.Errorf("%s: dockerfile %+v, want streaming/Dockerfile with args %v", rStr.Path, df, ciArgs)
	}
}

// upstreamRepo is a git repository with the v4.1.2 layout tagged v4.1.2 and
// the main layout on main, like upstream's history.
type upstreamRepo struct {
	t    *testing.T
	repo *detgit.Repo
	// Commits of the two layouts.
	v412, main string
}

func requireTools(t *testing.T) {
	t.Helper()
	for _, prog := range []string{"git", "/bin/sh", "sed"} {
		if _, err := exec.LookPath(prog); err != nil {
			if os.Getenv("VMBUILD_INTEGRATION") == "1" {
				t.Fatalf("%s is not installed", prog)
			}
			t.Skipf("%s is not installed", prog)
		}
	}
}

func newUpstream(t *testing.T) *upstreamRepo {
	t.Helper()
	requireTools(t)
	ctx := context.Background()
	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	repo, err := detgit.Init(ctx, filepath.Join(dir, "mastodon.git"), work)
	if err != nil {
		t.Fatal(err)
	}
	u := &upstreamRepo{t: t, repo: repo}
	commit := func(files map[string]string, msg string, when int64) string {
		entries, _ := os.ReadDir(work)
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(work, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
		writeTree(t, work, files)
		sha, err := repo.Commit(ctx, msg, time.Unix(when, 0))
		if err != nil {
			t.Fatal(err)
		}
		return sha
	}
	u.v412 = commit(layout412, "Bump version to v4.1.2", 1680566400)
	u.git("tag", "v4.1.2", u.v412)
	u.main = commit(layoutMain, "Bump version to v4.7.0-alpha.1", 1787270400)
	return u
}

func (u *upstreamRepo) git(args ...string) string {
	u.t.Helper()
	out, err := u.repo.Git(context.Background(), args...)
	if err != nil {
		u.t.Fatal(err)
	}
	return out
}

// checkout extracts the tree of rev with git archive (as vmbuild sends a
// local upstream to BuildKit) into a new directory.
func (u *upstreamRepo) checkout(rev string) string {
	u.t.Helper()
	dir := u.t.TempDir()
	tarball := filepath.Join(u.t.TempDir(), "src.tar")
	u.git("archive", "--format=tar", "-o", tarball, u.git("rev-parse", rev+"^{commit}"))
	f, err := os.Open(tarball)
	if err != nil {
		u.t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			u.t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			u.t.Fatal(err)
		}
		writeTree(u.t, dir, map[string]string{h.Name: string(b)})
	}
	return dir
}

func writeTree(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func read(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// grepTree lists the files under dir that contain s.
func grepTree(t *testing.T, dir, s string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), s) {
			rel, _ := filepath.Rel(dir, p)
			hits = append(hits, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(hits)
	return hits
}

// runScript runs a recipe's script patch as the helper does, with the
// machine's /bin/sh in place of the base image's, and returns the report
// and its error as the build would show it for the tree's commit.
func runScript(t *testing.T, r *recipe.Recipe, p recipe.Patch, tree, commit string) (*patch.Report, error) {
	t.Helper()
	rep, err := patch.RunScript(context.Background(), tree, filepath.Join(r.Dir, filepath.FromSlash(p.File)),
		patch.WithShell("/bin/sh"), patch.WithName(p.Name), patch.WithOptional(p.Optional))
	if err != nil {
		t.Fatalf("running %s: %v", p.Name, err)
	}
	return rep, rep.Err(commit)
}

// applyDiff applies a recipe's diff patch with the recipe's options, like
// runScript.
func applyDiff(t *testing.T, p recipe.Patch, tree, commit string) (*patch.Report, error) {
	t.Helper()
	rep, err := patch.ApplyDiff(context.Background(), tree, p.Name, p.Content,
		patch.WithOffset(p.Offset), patch.WithFuzz(p.Fuzz), patch.WithOptional(p.Optional))
	if err != nil {
		t.Fatalf("applying %s: %v", p.Name, err)
	}
	return rep, rep.Err(commit)
}

func reportFiles(rep *patch.Report) []string {
	var out []string
	for _, f := range rep.Files {
		out = append(out, f.Path)
	}
	return out
}

// bundleCheck reports how a Gemfile and its Gemfile.lock disagree, as
// `bundle install --frozen` would refuse them: every gem of the Gemfile is
// in DEPENDENCIES and the other way round, and every dependency names a
// locked spec. (Only the subset of the formats the fixtures use.)
func bundleCheck(gemfile, lockfile string) []string {
	var problems []string
	gems := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s*gem '([^']+)'`).FindAllStringSubmatch(gemfile, -1) {
		gems[m[1]] = true
	}
	specs, deps := map[string]bool{}, map[string]bool{}
	section := ""
	for _, line := range strings.Split(lockfile, "\n") {
		switch {
		case line != "" && line[0] != ' ':
			section = line
		case section == "GEM" && strings.HasPrefix(line, "    ") && !strings.HasPrefix(line, "     "):
			specs[strings.Fields(line)[0]] = true
		case section == "DEPENDENCIES" && strings.HasPrefix(line, "  "):
			deps[strings.Fields(line)[0]] = true
		}
	}
	section = ""
	for _, line := range strings.Split(lockfile, "\n") {
		if line != "" && line[0] != ' ' {
			section = line
		}
		if section == "GEM" && strings.HasPrefix(line, "      ") && !strings.HasPrefix(line, "       ") {
			if name := strings.Fields(line)[0]; !specs[name] {
				problems = append(problems, fmt.Sprintf("Gemfile.lock: dependency %s is not a locked spec", name))
			}
		}
	}
	for g := range gems {
		if !deps[g] {
			problems = append(problems, fmt.Sprintf("Gemfile has gem %s, Gemfile.lock's DEPENDENCIES do not", g))
		}
	}
	for d := range deps {
		if !gems[d] {
			problems = append(problems, fmt.Sprintf("Gemfile.lock's DEPENDENCIES have %s, the Gemfile does not", d))
		}
		if !specs[d] {
			problems = append(problems, fmt.Sprintf("Gemfile.lock: dependency %s is not a locked spec", d))
		}
	}
	sort.Strings(problems)
	return problems
}

func TestFixturesAreConsistent(t *testing.T) {
	for name, l := range map[string]map[string]string{"4.1.2": layout412, "main": layoutMain} {
		if p := bundleCheck(l["Gemfile"], l["Gemfile.lock"]); len(p) > 0 {
			t.Errorf("%s layout: %v", name, p)
		}
	}
	// The checker can fail.
	want := []string{
		"Gemfile has gem a, Gemfile.lock's DEPENDENCIES do not",
		"Gemfile.lock's DEPENDENCIES have b, the Gemfile does not",
		"Gemfile.lock: dependency c is not a locked spec",
	}
	if p := bundleCheck("gem 'a'\n", "GEM\n  specs:\n    b (1)\n      c\n\nDEPENDENCIES\n  b\n"); !slices.Equal(p, want) {
		t.Errorf("bundleCheck found %q, want %q", p, want)
	}
}

// TestScript412 applies the operator's script to the v4.1.2 layout.
func TestScript412(t *testing.T) {
	u := newUpstream(t)
	r := load(t, recipe412)
	tree := u.checkout("v4.1.2")
	rep, err := runScript(t, r, r.Patches[0], tree, u.v412)
	if err != nil {
		t.Fatalf("script on v4.1.2: %v\n%s", err, rep.Failure.Output)
	}
	if rep.Status != patch.StatusApplied {
		t.Errorf("status %s", rep.Status)
	}
	want := []string{"Gemfile", "Gemfile.lock", "app/lib/redis_configuration.rb", "lib/mastodon/redis_config.rb", "lib/tasks/mastodon.rake"}
	if got := reportFiles(rep); !slices.Equal(got, want) {
		t.Errorf("changed %v, want %v", got, want)
	}
	if hits := grepTree(t, tree, "hiredis"); len(hits) > 0 {
		t.Errorf("hiredis still in %v", hits)
	}
	gemfile := read(t, tree, "Gemfile")
	if !strings.Contains(gemfile, "\ngem 'redis', '~> 4.5'\n") {
		t.Errorf("the redis gem line is not plain `gem 'redis', '~> 4.5'`:\n%s", gemfile)
	}
	if p := bundleCheck(gemfile, read(t, tree, "Gemfile.lock")); len(p) > 0 {
		t.Errorf("after the script, Gemfile and Gemfile.lock disagree: %v", p)
	}
	if got := read(t, tree, "app/lib/redis_configuration.rb"); !strings.Contains(got, "Redis.new(url: url)\n") {
		t.Errorf("app/lib/redis_configuration.rb:\n%s", got)
	}
}

// TestScript412OnMain: on main the script stops at the first file it does
// not find, and says which.
func TestScript412OnMain(t *testing.T) {
	u := newUpstream(t)
	r := load(t, recipe412)
	tree := u.checkout("main")
	rep, err := runScript(t, r, r.Patches[0], tree, u.main)
	if err == nil {
		t.Fatalf("the v4.1.2 script applied to main: %+v", rep)
	}
	if !errors.Is(err, errs.ErrPatchFailed) {
		t.Errorf("error %v is not ErrPatchFailed", err)
	}
	if rep.Failure == nil || rep.Failure.Reason != patch.ReasonScript {
		t.Fatalf("failure %+v, want reason script", rep.Failure)
	}
	const missing = "lib/mastodon/redis_config.rb"
	if !strings.Contains(err.Error(), missing) || !strings.Contains(rep.Failure.Command, missing) {
		t.Errorf("the error does not name %s:\n%v\ncommand %q", missing, err, rep.Failure.Command)
	}
	if !strings.Contains(rep.Failure.Output, missing) {
		t.Errorf("the output does not show sed's complaint about %s:\n%s", missing, rep.Failure.Output)
	}
	t.Logf("as the build would report it: %v", err)
}

// TestSedOnMainLockfile shows why main needs a diff: the old sed on
// Gemfile.lock leaves hiredis-client's dependency line behind, and with
// the Gemfile untouched the two no longer agree.
func TestSedOnMainLockfile(t *testing.T) {
	u := newUpstream(t)
	r := load(t, recipe412)
	tree := u.checkout("main")
	lines := strings.SplitAfter(string(r.Patches[0].Content), "\n")
	script := filepath.Join(t.TempDir(), "first-two.sh")
	if err := os.WriteFile(script, []byte(lines[0]+lines[1]), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := patch.RunScript(context.Background(), tree, script, patch.WithShell("/bin/sh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(""); err != nil {
		t.Fatal(err)
	}
	lockfile := read(t, tree, "Gemfile.lock")
	if !strings.Contains(lockfile, "\n      redis-client (= 0.30.1)\n") || strings.Contains(lockfile, "hiredis-client (0.30.1)") {
		t.Errorf("expected the orphaned dependency line:\n%s", lockfile)
	}
	if p := bundleCheck(read(t, tree, "Gemfile"), lockfile); !slices.Contains(p, "Gemfile has gem hiredis-client, Gemfile.lock's DEPENDENCIES do not") {
		t.Errorf("bundleCheck: %v", p)
	}
}

// TestDiffMain applies main-drop-hiredis-client.patch to the main layout.
func TestDiffMain(t *testing.T) {
	u := newUpstream(t)
	r := load(t, recipeNoHiredis)
	p := r.Patches[0]
	tree := u.checkout("main")
	rep, err := applyDiff(t, p, tree, u.main)
	if err != nil {
		t.Fatalf("diff on main: %v", err)
	}
	want := []string{"Gemfile", "Gemfile.lock", "lib/mastodon/redis_configuration.rb", "lib/tasks/mastodon.rake"}
	if got := reportFiles(rep); !slices.Equal(got, want) {
		t.Errorf("changed %v, want %v", got, want)
	}
	if rep.Added != 2 || rep.Removed != 6 {
		t.Errorf("+%d -%d, want +2 -6", rep.Added, rep.Removed)
	}
	if hits := grepTree(t, tree, "hiredis"); len(hits) > 0 {
		t.Errorf("hiredis still in %v", hits)
	}
	gemfile, lockfile := read(t, tree, "Gemfile"), read(t, tree, "Gemfile.lock")
	if p := bundleCheck(gemfile, lockfile); len(p) > 0 {
		t.Errorf("after the diff, Gemfile and Gemfile.lock disagree: %v", p)
	}
	// redis 5 still needs redis-client, so its spec stays; only the line
	// that hung under hiredis-client goes.
	for _, keep := range []string{"\n    redis-client (0.30.1)\n      connection_pool\n", "\n    redis (5.4.1)\n      redis-client (>= 0.22.0)\n", "\n  redis (~> 5)\n"} {
		if !strings.Contains(lockfile, keep) {
			t.Errorf("Gemfile.lock lost %q:\n%s", keep, lockfile)
		}
	}
	if strings.Contains(lockfile, "(= 0.30.1)") {
		t.Errorf("hiredis-client's dependency line is still there:\n%s", lockfile)
	}
	if got := read(t, tree, "lib/mastodon/redis_configuration.rb"); !strings.Contains(got, "  def driver\n    :ruby\n  end\n") {
		t.Errorf("the driver is not :ruby:\n%s", got)
	}
	if got := read(t, tree, "lib/tasks/mastodon.rake"); !strings.Contains(got, "          driver: :ruby,\n") {
		t.Errorf("mastodon:setup does not use :ruby:\n%s", got)
	}
	// Everything else is as it was.
	orig := u.checkout("main")
	for name := range layoutMain {
		if !slices.Contains(want, name) && read(t, tree, name) != read(t, orig, name) {
			t.Errorf("%s changed", name)
		}
	}
}

// TestDiffMainMoved: main moves under the diff; with the recipe's offset
// it still applies where the lines are now, and a changed line fails it
// by hunk.
func TestDiffMainMoved(t *testing.T) {
	r := load(t, recipeNoHiredis)
	p := r.Patches[0]
	moved := map[string]string{}
	for k, v := range layoutMain {
		moved[k] = v
	}
	moved["Gemfile"] = strings.Replace(moved["Gemfile"], "gem 'fastimage'\n", "gem 'fastimage'\ngem 'faraday', '~> 2.13'\ngem 'flatware'\n", 1)
	moved["Gemfile.lock"] = strings.Replace(strings.Replace(moved["Gemfile.lock"],
		"    fastimage (2.4.0)\n", "    faraday (2.13.4)\n      logger\n    fastimage (2.4.0)\n    flatware (2.3.4)\n", 1),
		"  fastimage\n", "  faraday (~> 2.13)\n  fastimage\n  flatware\n", 1)
	moved["lib/mastodon/redis_configuration.rb"] = strings.Replace(moved["lib/mastodon/redis_configuration.rb"],
		"  private\n", "  private\n\n  def namespace\n    ENV.fetch('REDIS_NAMESPACE', nil)\n  end\n", 1)
	if p := bundleCheck(moved["Gemfile"], moved["Gemfile.lock"]); len(p) > 0 {
		t.Fatalf("moved fixture is inconsistent: %v", p)
	}

	tree := t.TempDir()
	writeTree(t, tree, moved)
	if _, err := applyDiff(t, p, tree, ""); err != nil {
		t.Fatalf("diff on a moved main: %v", err)
	}
	if hits := grepTree(t, tree, "hiredis"); len(hits) > 0 {
		t.Errorf("hiredis still in %v", hits)
	}
	if p := bundleCheck(read(t, tree, "Gemfile"), read(t, tree, "Gemfile.lock")); len(p) > 0 {
		t.Errorf("after the diff: %v", p)
	}

	// Without offset, as a recipe that forgot it would: the moved hunks
	// fail and nothing is written.
	tree = t.TempDir()
	writeTree(t, tree, moved)
	strict := p
	strict.Offset = false
	if rep, err := applyDiff(t, strict, tree, ""); err == nil || rep.Failure.Reason != patch.ReasonHunk {
		t.Errorf("without offset the moved main patched: %v", err)
	}
	if read(t, tree, "Gemfile") != moved["Gemfile"] {
		t.Error("a failed diff wrote the Gemfile")
	}

	// A hiredis-client upgrade changes the removed lines: the hunk fails,
	// by name.
	bumped := map[string]string{}
	for k, v := range layoutMain {
		bumped[k] = strings.ReplaceAll(v, "0.30.1", "0.31.0")
	}
	tree = t.TempDir()
	writeTree(t, tree, bumped)
	rep, err := applyDiff(t, p, tree, "")
	if err == nil {
		t.Fatal("diff applied to a main with hiredis-client 0.31.0")
	}
	if f := rep.Failure; f.Reason != patch.ReasonHunk || f.File != "Gemfile.lock" || !strings.HasPrefix(f.Hunk, "@@ -9,2 ") {
		t.Errorf("failure %+v, want the first Gemfile.lock hunk", f)
	}
	if !strings.Contains(err.Error(), "Gemfile.lock") || !strings.Contains(err.Error(), "@@ -9,2 +8,0 @@") {
		t.Errorf("error does not name the file and hunk: %v", err)
	}
	if read(t, tree, "Gemfile") != bumped["Gemfile"] {
		t.Error("a failed diff wrote the Gemfile")
	}
	t.Logf("as the build would report it: %v", err)
}

// TestDiff412 applies the main diff to v4.1.2: it fails at its first hunk,
// which it names, and changes nothing.
func TestDiff412(t *testing.T) {
	u := newUpstream(t)
	r := load(t, recipeNoHiredis)
	tree := u.checkout("v4.1.2")
	rep, err := applyDiff(t, r.Patches[0], tree, u.v412)
	if err == nil {
		t.Fatalf("the main diff applied to v4.1.2: %+v", rep)
	}
	if !errors.Is(err, errs.ErrPatchFailed) {
		t.Errorf("error %v is not ErrPatchFailed", err)
	}
	f := rep.Failure
	if f == nil || f.Reason != patch.ReasonHunk || f.File != "Gemfile" || f.Hunk == "" {
		t.Fatalf("failure %+v, want a hunk of Gemfile", f)
	}
	if !strings.Contains(err.Error(), "@@ -14 +13,0 @@") || !strings.Contains(err.Error(), "Gemfile") || !strings.Contains(err.Error(), r.Patches[0].Name) {
		t.Errorf("error does not name the patch, hunk and file: %v", err)
	}
	if hits := grepTree(t, tree, "hiredis"); !slices.Equal(hits, []string{"Gemfile", "Gemfile.lock", "app/lib/redis_configuration.rb", "lib/mastodon/redis_config.rb", "lib/tasks/mastodon.rake"}) {
		t.Errorf("the tree changed: hiredis now only in %v", hits)
	}
	t.Logf("as the build would report it: %v", err)
}

// scanDockerfile is lock.ScanDockerfile, with a panic turned into an error
// (it panicked on any COPY from the build context until lock/dockerfile.go
// stopped passing llb.Scratch() as the main context).
func scanDockerfile(content, target string, args map[string]string) (in *lock.DockerfileInputs, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("lock.ScanDockerfile panicked: %v", p)
		}
	}()
	return lock.ScanDockerfile(context.Background(), []byte(content), target, args, ocispec.Platform{OS: "linux", Architecture: "amd64"})
}

// TestScanDockerfiles: what `vmbuild lock` would pin for each recipe,
// reading the Dockerfile at the recipe's path in the synthetic tree and
// passing the recipe's args plus SOURCE_COMMIT, as the lock does: the
// `# syntax=` frontend and the base images, by tag.
func TestScanDockerfiles(t *testing.T) {
	u := newUpstream(t)
	for _, c := range []struct {
		recipe, rev string
		syntax      string
		images      []string
	}{
		{recipeMain, "main", "docker/dockerfile:1.18", []string{"docker.io/library/node:22-bookworm-slim", "docker.io/library/ruby:3.4.5-slim-bookworm"}},
		{recipeNoHiredis, "main", "docker/dockerfile:1.18", []string{"docker.io/library/node:22-bookworm-slim", "docker.io/library/ruby:3.4.5-slim-bookworm"}},
		{recipeStreaming, "main", "docker/dockerfile:1.18", []string{"docker.io/library/node:22-bookworm-slim"}},
		{recipe412, "v4.1.2", "docker/dockerfile:1.4", []string{"docker.io/library/node:16.19-bullseye-slim", "ghcr.io/moritzheiber/ruby-jemalloc:3.0.6-slim"}},
	} {
		t.Run(c.recipe, func(t *testing.T) {
			r := load(t, c.recipe)
			df := r.Build.Dockerfile
			tree := u.checkout(c.rev)
			content := read(t, tree, df.Path)
			args := map[string]string{"SOURCE_COMMIT": u.git("rev-parse", c.rev+"^{commit}")}
			for k, v := range df.Args {
				args[k] = v
				if !regexp.MustCompile(`(?m)^ARG ` + regexp.QuoteMeta(k) + `\b`).MatchString(content) {
					t.Errorf("build arg %s is not an ARG of %s (a misspelt arg is silently ignored)", k, df.Path)
				}
			}
			got, err := scanDockerfile(content, df.Target, args)
			if err != nil {
				t.Fatalf("scanning %s: %v", df.Path, err)
			}
			if got.Syntax != c.syntax {
				t.Errorf("syntax %q, want %q", got.Syntax, c.syntax)
			}
			if !slices.Equal(got.Images, c.images) {
				t.Errorf("images %v, want %v", got.Images, c.images)
			}
			for _, im := range append([]string{got.Syntax}, got.Images...) {
				if strings.Contains(im, "@") {
					t.Errorf("%s is already pinned; the test means tag-only references the lock pins", im)
				}
			}
			if fe := lock.NormalizeImageRef(got.Syntax); fe != "docker.io/"+c.syntax {
				t.Errorf("frontend normalizes to %s", fe)
			}
			// The target is a stage of the Dockerfile: a wrong one fails.
			if df.Target != "" {
				if _, err := scanDockerfile(content, df.Target+"-nonexistent", args); err == nil {
					t.Errorf("a missing target %s-nonexistent was accepted", df.Target)
				}
			}
		})
	}
}

// TestCheckoutMatchesLayout guards the helpers: git archive of each ref
// gives back exactly the layout committed.
func TestCheckoutMatchesLayout(t *testing.T) {
	u := newUpstream(t)
	for rev, l := range map[string]map[string]string{"v4.1.2": layout412, "main": layoutMain} {
		tree := u.checkout(rev)
		var got []string
		filepath.WalkDir(tree, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				rel, _ := filepath.Rel(tree, p)
				got = append(got, path.Clean(filepath.ToSlash(rel)))
			}
			return err
		})
		var want []string
		for name, content := range l {
			want = append(want, name)
			if read(t, tree, name) != content {
				t.Errorf("%s:%s differs", rev, name)
			}
		}
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: files %v, want %v", rev, got, want)
		}
	}
	if u.git("rev-parse", "v4.1.2^{commit}") != u.v412 || u.git("rev-parse", "main") != u.main {
		t.Error("refs do not point to the layouts' commits")
	}
}

// TestDocs: docs/mastodon.md covers every recipe here and the commands of
// the walkthrough.
func TestDocs(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "mastodon.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	recipes, err := filepath.Glob("*.yaml")
	if err != nil || len(recipes) == 0 {
		t.Fatalf("no recipes: %v", err)
	}
	for _, r := range recipes {
		if !strings.Contains(doc, "recipes/mastodon/"+r) {
			t.Errorf("docs/mastodon.md never uses recipes/mastodon/%s", r)
		}
	}
	for _, want := range []string{
		"vmbuild keygen",
		"vmbuild graph ",
		"vmbuild lock recipes/mastodon/mastodon.yaml --update",
		"--commit 3d8bd093b9197659563070d2c763988428063406",
		"vmbuild build recipes/mastodon/mastodon-4.1.2.yaml \\\n  --push REG/REPO:v4.1.2 --key cosign.key",
		"vmbuild verify REG/REPO@sha256:",
		"--key cosign.pub --policy policy.yaml",
		"vmbuild track recipes/mastodon/mastodon.yaml --push REG/REPO --key cosign.key --interval 10m",
		"vmbuild patch check recipes/mastodon/mastodon-no-hiredis.yaml --last 20",
		"REDIS_DRIVER=ruby",
		// The failure the doc quotes is the one the script gives on main.
		`sed: can't read ./lib/mastodon/redis_config.rb: No such file or directory`,
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/mastodon.md does not contain %q", want)
		}
	}
}
