package gem

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/errs"
)

// The real-gems test builds tiny gems with the host's Ruby, locks them
// with the host's Bundler, resolves and hashes them from a loopback gem
// source, and proves the pins complete by installing them offline, both
// all at once (vendor/cache + bundle install --local) and one gem at a
// time (gem install --ignore-dependencies in dependency order, each step
// seeing only its dependencies' installs).

// testGem is a gem source written by the test.
type testGem struct {
	name, version string
	files         map[string]string
	spec          string // extra gemspec lines
}

var testGems = []testGem{
	{name: "tinydep", version: "1.0.0", files: map[string]string{
		"lib/tinydep.rb": "module Tinydep\n  def self.mark = \"TINYDEP_OK\"\nend\n",
	}},
	{name: "cext", version: "0.2.0", spec: `  s.extensions = ["ext/cext/extconf.rb"]
  s.add_dependency "tinydep", "~> 1.0"
`, files: map[string]string{
		// extconf.rb needs its dependency installed: the per-gem install
		// must have tinydep present when cext compiles
		"ext/cext/extconf.rb": "require \"mkmf\"\nrequire \"tinydep\"\n$defs << %(-DCEXT_MARK=\\\\\"#{Tinydep.mark}\\\\\")\ncreate_makefile(\"cext/cext\")\n",
		"ext/cext/cext.c":     "#include <ruby.h>\nstatic VALUE hello(VALUE self) { return rb_str_new_cstr(CEXT_MARK); }\nvoid Init_cext(void) {\n  VALUE m = rb_define_module(\"Cext\");\n  rb_define_singleton_method(m, \"hello\", hello, 0);\n}\n",
		"lib/cext.rb":         "require \"cext/cext\"\n",
	}},
	{name: "middle", version: "1.0.0", spec: "  s.add_dependency \"cext\", \">= 0.2\"\n  s.add_dependency \"platgem\"\n", files: map[string]string{
		"lib/middle.rb": "require \"cext\"\nrequire \"platgem\"\nmodule Middle\n  def self.run = \"#{Cext.hello} #{Platgem::VARIANT}\"\nend\n",
	}},
	{name: "devonly", version: "1.0.0", files: map[string]string{"lib/devonly.rb": "module Devonly; end\n"}},
}

func requireRuby(t *testing.T) {
	t.Helper()
	if testing.Short() && !integration() {
		t.Skip("builds and installs gems; skipped with -short")
	}
	for _, tool := range []string{"ruby", "gem", "bundle", "cc", "make", "git", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, "%s not installed (apt-get install -y ruby ruby-dev bundler build-essential): %v", tool, err)
		}
	}
}

// rubyEnv is an environment with a private HOME, so that gem and bundle
// touch nothing outside the test's directories.
func rubyEnv(home string, extra ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LANG=C.UTF-8", "BUNDLE_SILENCE_ROOT_WARNING=1", "BUNDLE_IGNORE_CONFIG=1"}
	return append(env, extra...)
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s (in %s): %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// buildGem writes a gem's source and builds it into out; platform "" is
// the ruby platform.
func buildGem(t *testing.T, work, out string, g testGem, platform string, env []string) string {
	t.Helper()
	src := filepath.Join(work, "src", g.name+"-"+g.version+"-"+platform)
	var files []string
	for f := range g.files {
		files = append(files, f)
	}
	slices.Sort(files)
	spec := fmt.Sprintf("Gem::Specification.new do |s|\n  s.name = %q\n  s.version = %q\n  s.summary = \"test gem\"\n  s.authors = [\"vmbuild\"]\n  s.license = \"MIT\"\n  s.homepage = \"https://example.com\"\n  s.files = %s\n%s", g.name, g.version, rubyArray(files), g.spec)
	if platform != "" {
		spec += fmt.Sprintf("  s.platform = %q\n", platform)
	}
	spec += "end\n"
	writeFiles(t, src, g.files)
	writeFiles(t, src, map[string]string{g.name + ".gemspec": spec})
	run(t, src, env, "gem", "build", "--silent", g.name+".gemspec")
	file := g.name + "-" + g.version
	if platform != "" {
		file += "-" + platform
	}
	file += ".gem"
	if err := os.Rename(filepath.Join(src, file), filepath.Join(out, file)); err != nil {
		t.Fatal(err)
	}
	return file
}

func rubyArray(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyTree copies files, symlinks and directories (keeping modes) from
// src into dst, refusing to overwrite a file.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case info.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		default:
			if _, err := os.Lstat(target); err == nil {
				return fmt.Errorf("%s: two layers write the same file", rel)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, info.Mode().Perm())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// snapshot maps every regular file and symlink under dir to its content
// digest.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.Type()&fs.ModeSymlink != 0 {
			l, _ := os.Readlink(p)
			out[rel] = "link:" + l
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s := sha256.Sum256(b)
		out[rel] = hex.EncodeToString(s[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRealGems(t *testing.T) {
	requireRuby(t)
	ctx := context.Background()
	work := t.TempDir()
	home := filepath.Join(work, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	env := rubyEnv(home)
	hostPlatform := strings.TrimSpace(run(t, work, env, "ruby", "-e", "print Gem::Platform.local.to_s"))
	rubyABI := strings.TrimSpace(run(t, work, env, "ruby", "-e", "print RbConfig::CONFIG['ruby_version']"))
	bundlerVersion := strings.TrimSpace(run(t, work, env, "bundle", "--version"))
	t.Logf("host: Ruby platform %s, ABI %s, %s", hostPlatform, rubyABI, bundlerVersion)

	// the gems: platgem has a ruby variant (depending on tinydep) and a
	// precompiled one for the host platform
	built := filepath.Join(work, "built")
	if err := os.MkdirAll(built, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, g := range testGems {
		buildGem(t, work, built, g, "", env)
	}
	plat := testGem{name: "platgem", version: "3.1.4", spec: "  s.add_dependency \"tinydep\"\n",
		files: map[string]string{"lib/platgem.rb": "module Platgem; VARIANT = \"ruby\"; end\n"}}
	buildGem(t, work, built, plat, "", env)
	plat.spec = ""
	plat.files = map[string]string{"lib/platgem.rb": "module Platgem; VARIANT = \"precompiled\"; end\n"}
	buildGem(t, work, built, plat, hostPlatform, env)
	gemFiles := map[string][]byte{}
	entries, _ := os.ReadDir(built)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(built, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		gemFiles[e.Name()] = b
	}

	// a gem from git (depending on tinydep), in a local repository that
	// is moved away once locked: installs must not need it
	gitRepo := filepath.Join(work, "gitgem")
	writeFiles(t, gitRepo, map[string]string{
		"gitgem.gemspec": "Gem::Specification.new do |s|\n  s.name = \"gitgem\"\n  s.version = \"0.5.0\"\n  s.summary = \"git gem\"\n  s.authors = [\"vmbuild\"]\n  s.license = \"MIT\"\n  s.files = [\"lib/gitgem.rb\"]\n  s.add_dependency \"tinydep\"\nend\n",
		"lib/gitgem.rb":  "module Gitgem; OK = \"GIT_OK\"; end\n",
	})
	gitEnv := append(slices.Clone(env), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	run(t, gitRepo, gitEnv, "git", "init", "-q")
	run(t, gitRepo, gitEnv, "git", "add", "-A")
	run(t, gitRepo, gitEnv, "git", "commit", "-q", "-m", "gitgem 0.5.0")
	gitRev := strings.TrimSpace(run(t, gitRepo, gitEnv, "git", "rev-parse", "HEAD"))
	gitMirror := filepath.Join(work, "gitgem-mirror.git") // stands in for BuildKit's git source
	run(t, work, gitEnv, "git", "clone", "--bare", "-q", gitRepo, gitMirror)

	// the app, locked by the real Bundler from a vendor/cache
	app := filepath.Join(work, "app")
	gemfile := "source \"https://rubygems.org\"\n\ngem \"middle\", \"~> 1.0\"\ngem \"gitgem\", git: \"file://" + gitRepo + "\"\n\ngroup :development do\n  gem \"devonly\"\nend\n"
	writeFiles(t, app, map[string]string{"Gemfile": gemfile})
	for name := range gemFiles {
		copyFile(t, filepath.Join(built, name), filepath.Join(app, "vendor", "cache", name))
	}
	run(t, app, rubyEnv(home, "BUNDLE_PATH="+filepath.Join(work, "lockpath")), "bundle", "install", "--local")
	lockBytes, err := os.ReadFile(filepath.Join(app, "Gemfile.lock"))
	if err != nil {
		t.Fatal(err)
	}
	lock := string(lockBytes)
	t.Logf("Gemfile.lock by %s:\n%s", bundlerVersion, lock)
	// Bundler 2.3 locks only the host variant of platgem; the ruby
	// variant is added by hand, as `bundle lock --add-platform ruby`
	// writes it with a Bundler that sees the remote index.
	hostSpec := "    platgem (3.1.4-" + hostPlatform + ")\n"
	if !strings.Contains(lock, hostSpec) {
		t.Fatalf("lockfile has no %q", hostSpec)
	}
	lock = strings.Replace(lock, hostSpec, "    platgem (3.1.4)\n      tinydep\n"+hostSpec, 1)
	if !strings.Contains(lock, "PLATFORMS\n  ruby\n") {
		lock = strings.Replace(lock, "PLATFORMS\n", "PLATFORMS\n  ruby\n", 1)
	}
	if err := os.RemoveAll(filepath.Join(app, "vendor")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(gitRepo, gitRepo+".gone"); err != nil {
		t.Fatal(err)
	}
	// gitTree extracts the git gem's tree at the locked revision (what
	// BuildKit's git source gives: files, no .git) into dir.
	gitTree := func(g GitGem, dir string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		archive := exec.Command("git", "--git-dir", gitMirror, "archive", g.Revision)
		archive.Env = env
		tarx := exec.Command("tar", "-x", "-C", dir)
		tarx.Stdin, _ = archive.StdoutPipe()
		if err := tarx.Start(); err != nil {
			t.Fatal(err)
		}
		if err := archive.Run(); err != nil {
			t.Fatal(err)
		}
		if err := tarx.Wait(); err != nil {
			t.Fatal(err)
		}
	}

	// a loopback gem source, named as a mirror of rubygems.org in the
	// tree's .bundle/config
	var mu sync.Mutex
	var hits []string
	nhits := func() int { mu.Lock(); defer mu.Unlock(); return len(hits) }
	files := func() map[string][]byte { mu.Lock(); defer mu.Unlock(); return maps.Clone(gemFiles) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits = append(hits, r.URL.Path)
		name, ok := strings.CutPrefix(r.URL.Path, "/gems/")
		b, found := gemFiles[name]
		mu.Unlock()
		if !ok || !found {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}))
	defer srv.Close()
	tree := filepath.Join(work, "tree")
	writeFiles(t, tree, map[string]string{
		"Gemfile":        gemfile,
		"Gemfile.lock":   lock,
		".bundle/config": "---\nBUNDLE_MIRROR__HTTPS://RUBYGEMS__ORG/: \"" + srv.URL + "\"\n",
	})

	target := ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
	set, err := Resolve(ctx, os.DirFS(tree), "Gemfile.lock", Without("development"), WithPlatform(target, Glibc))
	if err != nil {
		t.Fatal(err)
	}
	if set.Platform.String() != hostPlatform {
		t.Fatalf("target %s, host Ruby reports %s", set.Platform, hostPlatform)
	}
	want := "cext-0.2.0 middle-1.0.0 platgem-3.1.4-" + hostPlatform + " tinydep-1.0.0"
	if got := gemIDs(set); got != want {
		t.Fatalf("gems = %s, want %s", got, want)
	}
	for _, g := range set.Gems {
		if g.URL != srv.URL+"/gems/"+g.Path || g.Remote != "https://rubygems.org/" {
			t.Errorf("%s: URL %s, remote %s", g.Name, g.URL, g.Remote)
		}
	}
	if len(set.Git) != 1 || set.Git[0].Name != "gitgem" || set.Git[0].Revision != gitRev || set.Git[0].Remote != "file://"+gitRepo ||
		set.Git[0].CacheDir() != "gitgem-"+gitRev[:12] || !slices.Equal(set.Git[0].Deps, []string{"tinydep"}) {
		t.Fatalf("git gems = %+v", set.Git)
	}
	fetcher := &deps.Fetcher{CacheDir: filepath.Join(work, "fetch-cache")}
	if err := set.Pin(ctx, fetcher, PinUnhashed); err != nil {
		t.Fatal(err)
	}
	if err := set.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, g := range set.Gems {
		if g.SHA256 != sha(gemFiles[g.Path]) || g.Size != int64(len(gemFiles[g.Path])) {
			t.Errorf("%s: sha256 %s size %d", g.Path, g.SHA256, g.Size)
		}
	}
	var order []string
	for _, st := range set.Order() {
		order = append(order, strings.Join(st.Gems, "+")+"("+strings.Join(st.Deps, ",")+")")
	}
	if got := strings.Join(order, " "); got != "platgem() tinydep() cext(tinydep) gitgem(tinydep) middle(cext,platgem,tinydep)" {
		t.Errorf("order = %s", got)
	}

	// download the pins as the build does: by URL, checked against sha256
	download := func(g Gem) []byte {
		resp, err := http.Get(g.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || sha(b) != g.SHA256 {
			t.Fatalf("download %s: %v %s", g.URL, err, resp.Status)
		}
		return b
	}
	fresh := func(name string) string {
		dir := filepath.Join(work, name)
		writeFiles(t, dir, map[string]string{"Gemfile": gemfile, "Gemfile.lock": lock})
		return dir
	}
	installEnv := func(bundlePath string, extra ...string) []string {
		return rubyEnv(home, append([]string{"BUNDLE_FROZEN=true", "BUNDLE_WITHOUT=development", "BUNDLE_PATH=" + bundlePath}, extra...)...)
	}

	t.Run("all at once: vendor/cache and bundle install --local", func(t *testing.T) {
		dir := fresh("install-all")
		for _, g := range set.Gems {
			writeFiles(t, filepath.Join(dir, "vendor", "cache"), map[string]string{g.Path: string(download(g))})
		}
		// a git gem: its tree at the revision in vendor/cache/<CacheDir>
		gitTree(set.Git[0], filepath.Join(dir, "vendor", "cache", set.Git[0].CacheDir()))
		bp := filepath.Join(work, "bp-all")
		out := run(t, dir, installEnv(bp), "bundle", "install", "--local")
		t.Logf("bundle install --local:\n%s", out)
		got := run(t, dir, installEnv(bp), "bundle", "exec", "ruby", "-e", "require 'middle'; require 'gitgem'; print Middle.run, ' ', Gitgem::OK")
		if got != "TINYDEP_OK precompiled GIT_OK" {
			t.Errorf("bundle exec: %q", got)
		}
		if strings.Contains(out, "devonly") {
			t.Error("devonly installed")
		}
	})

	t.Run("per gem: gem install --ignore-dependencies in order", func(t *testing.T) {
		// Each step runs in the same GEM_HOME path holding only the
		// installs of its transitive dependencies (as a BuildKit step
		// with those layers mounted); what it adds is its layer.
		gemHome := filepath.Join(work, "per-gem", "gemhome")
		layers := map[string]string{}
		byName := map[string]Gem{}
		for _, g := range set.Gems {
			byName[g.Name] = g
		}
		files := filepath.Join(work, "per-gem", "files")
		for _, st := range set.Order() {
			if len(st.Gems) != 1 {
				t.Fatalf("cycle %v", st.Gems)
			}
			if st.Gems[0] == "gitgem" {
				// a git gem is not a .gem: Bundler keeps its tree in
				// bundler/gems/<CacheDir> under its GEM_HOME
				g := set.Git[0]
				layer := filepath.Join(work, "per-gem", "layers", g.Name)
				gitTree(g, filepath.Join(layer, "bundler", "gems", g.CacheDir()))
				layers[g.Name] = layer
				continue
			}
			g := byName[st.Gems[0]]
			writeFiles(t, files, map[string]string{g.Path: string(download(g))})
			if err := os.RemoveAll(gemHome); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(gemHome, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, d := range st.Deps {
				copyTree(t, layers[d], gemHome)
			}
			before := snapshot(t, gemHome)
			out := run(t, work, rubyEnv(home, "GEM_HOME="+gemHome, "GEM_PATH="+gemHome),
				"gem", "install", "--local", "--ignore-dependencies", "--no-document", "--install-dir", gemHome, filepath.Join(files, g.Path))
			t.Logf("%s: %s", g.Path, strings.TrimSpace(out))
			after := snapshot(t, gemHome)
			for p, h := range before {
				if after[p] != h {
					t.Errorf("installing %s changed %s, which a dependency installed", g.Path, p)
				}
			}
			layer := filepath.Join(work, "per-gem", "layers", g.Name)
			for p := range after {
				if _, ok := before[p]; ok {
					continue
				}
				if err := os.MkdirAll(filepath.Dir(filepath.Join(layer, p)), 0o755); err != nil {
					t.Fatal(err)
				}
				src := filepath.Join(gemHome, p)
				info, _ := os.Lstat(src)
				if info.Mode()&fs.ModeSymlink != 0 {
					l, _ := os.Readlink(src)
					if err := os.Symlink(l, filepath.Join(layer, p)); err != nil {
						t.Fatal(err)
					}
					continue
				}
				b, _ := os.ReadFile(src)
				if err := os.WriteFile(filepath.Join(layer, p), b, info.Mode().Perm()); err != nil {
					t.Fatal(err)
				}
			}
			layers[g.Name] = layer
		}
		// the extension needs its dependency at build time: without
		// tinydep present, cext does not compile
		empty := filepath.Join(work, "per-gem", "empty")
		cmd := exec.Command("gem", "install", "--local", "--ignore-dependencies", "--no-document", "--install-dir", empty, filepath.Join(files, "cext-0.2.0.gem"))
		cmd.Env = rubyEnv(home, "GEM_HOME="+empty, "GEM_PATH="+empty)
		if out, err := cmd.CombinedOutput(); err == nil || !bytes.Contains(out, []byte("extconf failed")) {
			t.Errorf("cext compiled without tinydep: %v\n%s", err, out)
		}

		// the layers merged into Bundler's GEM_HOME under BUNDLE_PATH:
		// bundle install --local finds every gem installed
		bp := filepath.Join(work, "bp-per-gem")
		for _, st := range set.Order() {
			copyTree(t, layers[st.Gems[0]], filepath.Join(bp, "ruby", rubyABI))
		}
		if !strings.Contains(run(t, work, env, "ls", filepath.Join(bp, "ruby", rubyABI, "bundler", "gems")), set.Git[0].CacheDir()) {
			t.Error("git gem not in bundler/gems")
		}
		dir := fresh("install-per-gem")
		out := run(t, dir, installEnv(bp), "bundle", "install", "--local")
		t.Logf("bundle install --local over the merged layers:\n%s", out)
		if strings.Contains(out, "Installing") {
			t.Errorf("bundle install installed something:\n%s", out)
		}
		for _, g := range set.Gems {
			if !strings.Contains(out, "Using "+g.Name+" "+g.Version) {
				t.Errorf("bundle install did not use %s", g.FullName())
			}
		}
		if !strings.Contains(out, "Using gitgem 0.5.0 from file://"+gitRepo) {
			t.Error("bundle install did not use gitgem")
		}
		got := run(t, dir, installEnv(bp), "bundle", "exec", "ruby", "-e", "require 'middle'; require 'gitgem'; print Middle.run, ' ', Gitgem::OK")
		if got != "TINYDEP_OK precompiled GIT_OK" {
			t.Errorf("bundle exec: %q", got)
		}
	})

	t.Run("Gemfile changed: Bundler --frozen and Resolve both refuse", func(t *testing.T) {
		for _, c := range []struct{ name, gemfile, gem string }{
			{"added", gemfile + "gem \"tinydep\", \"~> 1.0\"\n", "tinydep"},
			{"requirement", strings.Replace(gemfile, "\"~> 1.0\"", "\"~> 1.0.0\"", 1), "middle"},
			{"deleted", strings.Replace(gemfile, "gem \"middle\", \"~> 1.0\"\n", "", 1), "middle"},
		} {
			dir := filepath.Join(work, "changed-"+c.name)
			writeFiles(t, dir, map[string]string{"Gemfile": c.gemfile, "Gemfile.lock": lock})
			for _, g := range set.Gems {
				writeFiles(t, filepath.Join(dir, "vendor", "cache"), map[string]string{g.Path: string(download(g))})
			}
			gitTree(set.Git[0], filepath.Join(dir, "vendor", "cache", set.Git[0].CacheDir()))
			cmd := exec.Command("bundle", "install", "--local")
			cmd.Dir, cmd.Env = dir, installEnv(filepath.Join(work, "bp-changed"))
			out, err := cmd.CombinedOutput()
			if err == nil || !bytes.Contains(out, []byte(c.gem)) {
				t.Errorf("%s: bundle install --frozen: %v\n%s", c.name, err, out)
			}
			_, err = Resolve(ctx, os.DirFS(dir), "Gemfile.lock", Without("development"))
			var me *MismatchError
			if !errors.As(err, &me) || me.Mismatches[0].Gem != c.gem {
				t.Errorf("%s: Resolve: %v", c.name, err)
			}
			t.Logf("%s:\nBundler: %s\nResolve: %v", c.name, bytes.TrimSpace(out), err)
		}
	})

	t.Run("force_ruby_platform", func(t *testing.T) {
		s, err := Resolve(ctx, os.DirFS(tree), "Gemfile.lock", Without("development"), WithForceRubyPlatform(true))
		if err != nil {
			t.Fatal(err)
		}
		if got := gemIDs(s); got != "cext-0.2.0 middle-1.0.0 platgem-3.1.4 tinydep-1.0.0" {
			t.Fatalf("gems = %s", got)
		}
		if err := s.Pin(ctx, fetcher, PinUnhashed); err != nil {
			t.Fatal(err)
		}
		dir := fresh("install-ruby-platform")
		for _, g := range s.Gems {
			writeFiles(t, filepath.Join(dir, "vendor", "cache"), map[string]string{g.Path: string(download(g))})
		}
		gitTree(s.Git[0], filepath.Join(dir, "vendor", "cache", s.Git[0].CacheDir()))
		bp := filepath.Join(work, "bp-ruby-platform")
		run(t, dir, installEnv(bp, "BUNDLE_FORCE_RUBY_PLATFORM=true"), "bundle", "install", "--local")
		got := run(t, dir, installEnv(bp, "BUNDLE_FORCE_RUBY_PLATFORM=true"), "bundle", "exec", "ruby", "-e", "require 'middle'; print Middle.run")
		if got != "TINYDEP_OK ruby" {
			t.Errorf("bundle exec: %q", got)
		}
	})

	t.Run("CHECKSUMS", func(t *testing.T) {
		// The section Bundler ≥ 2.5 writes (sorted by full name, one
		// sha256 per .gem), added by hand: the host's Bundler predates it.
		var lines []string
		for file, b := range files() {
			full := strings.TrimSuffix(file, ".gem")
			for _, n := range []string{"tinydep", "cext", "middle", "devonly", "platgem"} {
				if rest, ok := strings.CutPrefix(full, n+"-"); ok {
					lines = append(lines, fmt.Sprintf("  %s (%s) sha256=%s", n, rest, sha(b)))
				}
			}
		}
		slices.Sort(lines)
		withSums := strings.Replace(lock, "\nBUNDLED WITH\n", "\nCHECKSUMS\n"+strings.Join(lines, "\n")+"\n\nBUNDLED WITH\n", 1)
		writeFiles(t, tree, map[string]string{"Gemfile.lock": withSums})
		defer writeFiles(t, tree, map[string]string{"Gemfile.lock": lock})
		t.Logf("CHECKSUMS:\n%s", strings.Join(lines, "\n"))
		s, err := Resolve(ctx, os.DirFS(tree), "Gemfile.lock", Without("development"))
		if err != nil {
			t.Fatal(err)
		}
		if !s.Lockfile.HasChecksums || len(s.Unhashed()) != 0 {
			t.Fatalf("unhashed with CHECKSUMS: %v", s.Unhashed())
		}
		n := nhits()
		if err := s.Pin(ctx, &deps.Fetcher{}, PinUnhashed); err != nil || nhits() != n {
			t.Errorf("PinUnhashed downloaded %d (%v)", nhits()-n, err)
		}
		if err := s.Pin(ctx, &deps.Fetcher{}, PinAll); err != nil || nhits() != n+4 {
			t.Errorf("PinAll: %v, %d downloads", err, nhits()-n)
		}
		// the host's Bundler accepts the lockfile (it skips the section)
		dir := filepath.Join(work, "install-checksums")
		writeFiles(t, dir, map[string]string{"Gemfile": gemfile, "Gemfile.lock": withSums})
		for _, g := range s.Gems {
			writeFiles(t, filepath.Join(dir, "vendor", "cache"), map[string]string{g.Path: string(download(g))})
		}
		gitTree(s.Git[0], filepath.Join(dir, "vendor", "cache", s.Git[0].CacheDir()))
		run(t, dir, installEnv(filepath.Join(work, "bp-checksums")), "bundle", "install", "--local")

		// a checksum the download does not match
		cextSum := sha(gemFiles["cext-0.2.0.gem"])
		bad := strings.Replace(withSums, cextSum, sha([]byte("tampered")), 1)
		writeFiles(t, tree, map[string]string{"Gemfile.lock": bad})
		s, err = Resolve(ctx, os.DirFS(tree), "Gemfile.lock", Without("development"))
		if err != nil {
			t.Fatal(err)
		}
		err = s.Pin(ctx, &deps.Fetcher{}, PinAll)
		var he *deps.HashError
		if !errors.As(err, &he) || he.Package != "cext@0.2.0" || !errors.Is(err, errs.ErrHashMismatch) {
			t.Errorf("tampered CHECKSUMS: %v", err)
		}
	})

	t.Run("404", func(t *testing.T) {
		mu.Lock()
		delete(gemFiles, "tinydep-1.0.0.gem")
		mu.Unlock()
		s, err := Resolve(ctx, os.DirFS(tree), "Gemfile.lock", Without("development"))
		if err != nil {
			t.Fatal(err)
		}
		err = s.Pin(ctx, &deps.Fetcher{}, PinUnhashed)
		if !errors.Is(err, errs.ErrDependency) || !strings.Contains(err.Error(), "package tinydep@1.0.0") || !strings.Contains(err.Error(), "404 Not Found") {
			t.Errorf("404: %v", err)
		}
	})
}
