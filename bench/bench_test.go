// Tests of the benchmark's generated upstream (bench/internal/gen): the
// repository's shape, the commit sequence, and the stand-in tools, which
// must be deterministic (run twice, byte-identical outputs) and follow
// their inputs. Unit level: no buildkitd, no registry; the tools run under
// busybox sh with only busybox's applets in $PATH, as in the base image.
package bench_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/vmbuild/vmbuild/bench/internal/gen"
	"github.com/vmbuild/vmbuild/internal/testenv/detgit"
)

const busybox = "/bin/busybox"

// testSize runs the real tool scripts with little work: what is tested is
// their outputs, not their cost.
var testSize = gen.Size{Name: "test", BundleRounds: 200, YarnRounds: 200, AssetRoundsPerKB: 20}

func TestRepositoryShape(t *testing.T) {
	u := gen.New(gen.Full())
	tree := u.Initial

	gems := regexp.MustCompile(`(?m)^    [A-Za-z0-9_.-]+ \([^)]+\)$`).FindAllString(tree["Gemfile.lock"].Content, -1)
	if n := len(gems); n < 35 || n > 45 {
		t.Errorf("Gemfile.lock locks %d gems, want about 40", n)
	}
	if n := strings.Count(tree["Gemfile"].Content, "\ngem '"); n != len(gems) {
		t.Errorf("Gemfile has %d gems, Gemfile.lock %d", n, len(gems))
	}
	deps := regexp.MustCompile(`(?m)^    "[^"]+": "\^[0-9.]+"`).FindAllString(tree["package.json"].Content, -1)
	if n := len(deps); n < 55 || n > 65 {
		t.Errorf("package.json has %d dependencies, want about 60", n)
	}
	locked := regexp.MustCompile(`(?m)^"[^"]+@npm:[^"]+":$`).FindAllString(tree["yarn.lock"].Content, -1)
	if len(locked) != len(deps) {
		t.Errorf("yarn.lock locks %d packages, package.json has %d", len(locked), len(deps))
	}

	count := func(prefix, suffix string) int {
		n := 0
		for p := range tree {
			if strings.HasPrefix(p, prefix) && strings.HasSuffix(p, suffix) {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		prefix, suffix string
		min            int
	}{
		{"app/javascript/", ".js", 30}, {"app/javascript/", ".jsx", 60}, {"app/javascript/", ".scss", 5},
		{"config/locales/", ".yml", 10}, {"app/models/", ".rb", 20}, {"app/controllers/", ".rb", 10},
	} {
		if n := count(c.prefix, c.suffix); n < c.min {
			t.Errorf("%d files %s*%s, want at least %d", n, c.prefix, c.suffix, c.min)
		}
	}
	for step, p := range gen.ToolPaths {
		f, ok := tree[p]
		if !ok {
			t.Fatalf("tool %s (%s) missing", p, step)
		}
		if f.Mode != 0o755 || !strings.HasPrefix(f.Content, "#!/bin/sh\n") {
			t.Errorf("tool %s: mode %o, want an executable sh script", p, f.Mode)
		}
	}

	// Upstream's Dockerfile is shaped like Mastodon's: gems from Gemfile*
	// first, then the whole tree, yarn install and precompile, then the
	// final stage.
	checkOrder(t, "Dockerfile", tree["Dockerfile"].Content,
		"COPY Gemfile* ", "RUN sh bin/bundle install", "FROM base AS precompiler", "COPY . .",
		"RUN sh bin/yarn install", "RUN sh bin/rails assets:precompile", "FROM base AS mastodon", "COPY . .")
	// The hand-tuned one copies only each step's inputs, and links the
	// final stage's layers.
	checkOrder(t, "hand-tuned Dockerfile", gen.TunedDockerfile,
		"COPY Gemfile Gemfile.lock ./", "RUN sh bin/bundle install",
		"COPY package.json yarn.lock ./", "RUN sh bin/yarn install",
		"COPY app/javascript app/javascript", "COPY --from=bundler", "COPY --from=yarn", "RUN sh bin/rails assets:precompile",
		"FROM base AS mastodon", "COPY --link . .", "COPY --link --from=precompiler")
	if strings.Contains(gen.TunedDockerfile, "COPY . .") {
		t.Error("the hand-tuned Dockerfile copies the whole tree before a RUN")
	}

	// The same size gives the same files; sizes differ only in the tools.
	if !reflect.DeepEqual(gen.New(gen.Full()), u) {
		t.Error("two generations of the full size differ")
	}
	q := gen.New(gen.Quick()).Initial
	for p, f := range tree {
		if q[p] != f && !strings.HasPrefix(p, "bin/") {
			t.Errorf("quick and full trees differ in %s", p)
		}
	}
}

func checkOrder(t *testing.T, name, text string, parts ...string) {
	t.Helper()
	at := 0
	for _, p := range parts {
		i := strings.Index(text[at:], p)
		if i < 0 {
			t.Errorf("%s: %q missing (or out of order)", name, p)
			return
		}
		at += i + len(p)
	}
}

func TestCommitSequence(t *testing.T) {
	u := gen.New(gen.Full())
	want := []struct {
		id    string
		files []string
	}{
		{"js", []string{gen.SourceFile}},
		{"i18n", []string{gen.TranslationFile}},
		{"models", []string{gen.ModelFile}},
		{"gemfile.lock", []string{"Gemfile.lock"}},
		{"yarn.lock", []string{"yarn.lock"}},
	}
	if len(u.Changes) != len(want) {
		t.Fatalf("%d changes, want %d", len(u.Changes), len(want))
	}
	for i, w := range want {
		c := u.Changes[i]
		if c.ID != w.id {
			t.Errorf("change %d is %s, want %s", i, c.ID, w.id)
		}
		prev, next := u.TreeAt(i), u.TreeAt(i+1)
		var changed []string
		for p, f := range next {
			if prev[p] != f {
				changed = append(changed, p)
			}
		}
		sort.Strings(changed)
		if !reflect.DeepEqual(changed, w.files) {
			t.Errorf("change %s touches %v, want %v", c.ID, changed, w.files)
		}
	}
	lock := u.TreeAt(4)["Gemfile.lock"].Content
	if !strings.Contains(lock, "    "+gen.BumpedGem+" (6.6.1)") {
		t.Errorf("the Gemfile.lock bump does not bump %s to 6.6.1", gen.BumpedGem)
	}
	if !strings.Contains(u.TreeAt(5)["yarn.lock"].Content, "  resolution: \""+gen.BumpedPackage+"@npm:1.8.4\"") {
		t.Errorf("the yarn.lock bump does not bump %s to 1.8.4", gen.BumpedPackage)
	}
}

// TestCommitsAreDeterministic writes the sequence twice: same hashes.
func TestCommitsAreDeterministic(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		skipOrFail(t, "git is not installed (make deps)")
	}
	ctx := context.Background()
	var shas [2][]string
	for i := range shas {
		d := t.TempDir()
		repo, err := detgit.Init(ctx, filepath.Join(d, "up.git"), filepath.Join(d, "wt"))
		if err != nil {
			t.Fatal(err)
		}
		commits, err := gen.New(gen.Quick()).WriteGit(ctx, repo)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range commits {
			shas[i] = append(shas[i], c.SHA)
		}
		// Each commit's tree is what TreeAt says.
		out, err := repo.Git(ctx, "show", commits[1].SHA+":"+gen.SourceFile)
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.TrimRight(gen.New(gen.Quick()).TreeAt(1)[gen.SourceFile].Content, "\n"); out != want {
			t.Error("commit 1 does not hold TreeAt(1)'s source file")
		}
	}
	if len(shas[0]) != 6 {
		t.Fatalf("%d commits, want 6 (import and 5 changes)", len(shas[0]))
	}
	if !reflect.DeepEqual(shas[0], shas[1]) {
		t.Errorf("commit hashes differ between two writes:\n%v\n%v", shas[0], shas[1])
	}
}

func skipOrFail(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("VMBUILD_INTEGRATION") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// applets makes a directory with a link to busybox for each of its applets:
// the tools then run with exactly the programs of the base image.
func applets(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(busybox); err != nil {
		skipOrFail(t, "busybox-static is not installed at "+busybox+" (make deps)")
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	dir := t.TempDir()
	for _, a := range strings.Fields(string(out)) {
		if err := os.Symlink(busybox, filepath.Join(dir, a)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type workspace struct {
	t      *testing.T
	path   string // $PATH: busybox applets only
	src    string // the tree (workdir)
	bundle string // BUNDLE_PATH
}

func newWorkspace(t *testing.T, path string, tree gen.Tree) *workspace {
	d := t.TempDir()
	w := &workspace{t: t, path: path, src: filepath.Join(d, "src"), bundle: filepath.Join(d, "bundle")}
	if err := gen.WriteTree(w.src, tree); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *workspace) run(step string) (string, error) {
	w.t.Helper()
	args := append([]string{"sh", gen.ToolPaths[step]}, gen.ToolArgs[step]...)
	cmd := exec.Command(filepath.Join(w.path, "sh"), args[1:]...)
	cmd.Dir = w.src
	cmd.Env = []string{"PATH=" + w.path, "BUNDLE_PATH=" + w.bundle, "HOME=/nonexistent"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (w *workspace) runAll() {
	w.t.Helper()
	for _, step := range gen.ToolOrder {
		if out, err := w.run(step); err != nil {
			w.t.Fatalf("%s: %v\n%s", gen.ToolPaths[step], err, out)
		}
	}
}

// outputs reads the tools' output trees: path → mode and content.
func (w *workspace) outputs() map[string]string {
	w.t.Helper()
	m := map[string]string{}
	for name, root := range map[string]string{
		"bundle":       w.bundle,
		"node_modules": filepath.Join(w.src, "node_modules"),
		"packs":        filepath.Join(w.src, "public", "packs"),
	} {
		if _, err := os.Stat(root); os.IsNotExist(err) {
			continue // that tool did not run
		}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			info, err := d.Info()
			if err != nil {
				return err
			}
			v := info.Mode().String()
			if d.Type().IsRegular() {
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				v += " " + string(b)
			}
			m[name+"/"+rel] = v
			return nil
		})
		if err != nil {
			w.t.Fatalf("reading outputs: %v", err)
		}
	}
	return m
}

func diffKeys(a, b map[string]string) []string {
	var d []string
	for k, v := range a {
		if b[k] != v {
			d = append(d, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, k)
		}
	}
	sort.Strings(d)
	return d
}

// TestTools runs the three tools as the builds do, under busybox sh with
// only busybox's applets: twice on the same tree, in two directories (every
// output byte and mode must be the same), then on each dependency commit
// (only what depends on the changed input may change).
func TestTools(t *testing.T) {
	path := applets(t)
	u := gen.New(testSize)
	a, b := newWorkspace(t, path, u.Initial), newWorkspace(t, path, u.Initial)
	a.runAll()
	b.runAll()
	before := a.outputs()
	if d := diffKeys(before, b.outputs()); len(d) > 0 {
		t.Fatalf("two runs of the tools differ in %d outputs, e.g. %v", len(d), d[:min(5, len(d))])
	}
	count := func(prefix, suffix string) int {
		n := 0
		for k := range before {
			if strings.HasPrefix(k, prefix) && strings.HasSuffix(k, suffix) {
				n++
			}
		}
		return n
	}
	if n := count("bundle/gems/", ".rb"); n != 40 {
		t.Errorf("bin/bundle installed %d gems, want 40", n)
	}
	if n := count("node_modules/", "/index.js"); n < 55 {
		t.Errorf("bin/yarn installed %d packages, want about 60", n)
	}
	if n := count("packs/js/", ".js"); n < 100 {
		t.Errorf("bin/rails compiled %d JavaScript packs, want one per source", n)
	}
	if n := count("packs/locales/", ".js"); n < 10 {
		t.Errorf("bin/rails compiled %d translation packs", n)
	}
	if _, ok := before["packs/manifest.json"]; !ok {
		t.Error("no packs/manifest.json")
	}

	// Each commit of the sequence, in workspace b: one JS file changes
	// only its pack (renamed: content-hashed) and the manifest.
	rerun := func(n int, step string) []string {
		t.Helper()
		prev := b.outputs()
		if err := gen.WriteTree(b.src, u.Changes[n-1].Files); err != nil {
			t.Fatal(err)
		}
		if out, err := b.run(step); err != nil {
			t.Fatalf("%s after %s: %v\n%s", step, u.Changes[n-1].ID, err, out)
		}
		return diffKeys(prev, b.outputs())
	}
	changed := rerun(1, "assets")
	if len(changed) != 3 || !strings.HasPrefix(changed[0], "packs/js/mastodon_components_status-") ||
		!strings.HasPrefix(changed[1], "packs/js/mastodon_components_status-") || changed[2] != "packs/manifest.json" {
		t.Errorf("a one-file JS change changed %v, want the file's pack (renamed) and the manifest", changed)
	}
	if changed := rerun(2, "assets"); !hasPrefix(changed, "packs/locales/fr-") {
		t.Errorf("the translation change changed %v, not the fr pack", changed)
	}
	if changed := rerun(4, "bundle"); !hasPrefix(changed, "bundle/gems/"+gen.BumpedGem+"-6.6.1/") {
		t.Errorf("the Gemfile.lock bump changed %v, not the bumped gem", changed)
	}
	if changed := rerun(5, "yarn"); !hasPrefix(changed, "node_modules/"+gen.BumpedPackage+"/") {
		t.Errorf("the yarn.lock bump changed %v, not the bumped package", changed)
	}

	// Precompile needs the gems and node_modules.
	alone := newWorkspace(t, path, u.Initial)
	if out, err := alone.run("assets"); err == nil || !strings.Contains(out, "bin/bundle install first") {
		t.Errorf("bin/rails without gems: err %v, output %q; want a failure naming bin/bundle", err, out)
	}
	if out, err := alone.run("bundle"); err != nil {
		t.Fatal(err, out)
	}
	if out, err := alone.run("assets"); err == nil || !strings.Contains(out, "bin/yarn install first") {
		t.Errorf("bin/rails without node_modules: err %v, output %q; want a failure naming bin/yarn", err, out)
	}
}

func hasPrefix(keys []string, prefix string) bool {
	for _, k := range keys {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// TestToolCostsScaleWithSize checks that the sizes set the tools' work.
func TestToolCostsScaleWithSize(t *testing.T) {
	full, quick := gen.Full(), gen.Quick()
	for _, c := range []struct {
		script   func(gen.Size) string
		variable string
		f, q     int
	}{
		{gen.BundleScript, "ROUNDS=", full.BundleRounds, quick.BundleRounds},
		{gen.YarnScript, "ROUNDS=", full.YarnRounds, quick.YarnRounds},
		{gen.RailsScript, "ROUNDS_PER_KB=", full.AssetRoundsPerKB, quick.AssetRoundsPerKB},
	} {
		if c.f < 10*c.q {
			t.Errorf("full work %d is not well above quick work %d", c.f, c.q)
		}
		for _, s := range []struct {
			size gen.Size
			n    int
		}{{full, c.f}, {quick, c.q}} {
			if !strings.Contains(c.script(s.size), "\n"+c.variable+strconv.Itoa(s.n)+"\n") {
				t.Errorf("%s script does not set %s%d", s.size.Name, c.variable, s.n)
			}
		}
	}
}
