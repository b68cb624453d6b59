package lock

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/recipe"
)

// registry is a loopback npm registry serving generated tarballs, which
// counts the downloads.
type registry struct {
	*httptest.Server
	mu    sync.Mutex
	files map[string][]byte
	gets  atomic.Int64
}

func newRegistry(t *testing.T) *registry {
	r := &registry{files: map[string][]byte{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		b, ok := r.files[req.URL.Path]
		r.mu.Unlock()
		if !ok {
			http.NotFound(w, req)
			return
		}
		r.gets.Add(1)
		_, _ = w.Write(b)
	}))
	t.Cleanup(r.Close)
	return r
}

// add serves a tarball for name@version and returns its lockfile entry.
func (r *registry) add(name, version, content string) string {
	b := []byte(fmt.Sprintf("tarball of %s@%s: %s", name, version, content))
	p := fmt.Sprintf("/%s/-/%s-%s.tgz", name, name, version)
	r.mu.Lock()
	r.files[p] = b
	r.mu.Unlock()
	sum := sha512.Sum512(b)
	return fmt.Sprintf(`"node_modules/%s": {"version": %q, "resolved": "%s%s", "integrity": "sha512-%s"}`,
		name, version, r.URL, p, base64.StdEncoding.EncodeToString(sum[:]))
}

func packageLock(entries ...string) string {
	var root []string
	for _, e := range entries {
		name := strings.TrimPrefix(e[:strings.Index(e, `":`)], `"node_modules/`)
		version := strings.Split(strings.SplitN(e, `"version": "`, 2)[1], `"`)[0]
		root = append(root, fmt.Sprintf("%q: %q", name, version))
	}
	return `{"name": "app", "lockfileVersion": 3, "requires": true, "packages": {
  "": {"name": "app", "dependencies": {` + strings.Join(root, ", ") + `}},
  ` + strings.Join(entries, ",\n  ") + "\n}}\n"
}

func commitFiles(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	run := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if _, err := os.Stat(filepath.Join(dir, ".git")); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		run("init", "-q", "-b", "main")
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run("add", "-A")
	run("commit", "-q", "-m", "change")
	return run("rev-parse", "HEAD")
}

const depsRecipe = `apiVersion: vmbuild/v1
name: app
upstream: {git: ./up, ref: main}
base: oci-layout://./base:latest
platform: linux/amd64
%s
build:
  layers:
    - name: modules
      inputs: [package.json, package-lock.json]
      deps: {manager: npm, production: true}
      run: npm ci --omit=dev
      outputs: [/app/node_modules]
`

// writeDepsRecipe writes the recipe (with patches) into dir.
func writeDepsRecipe(t *testing.T, dir, patches string, patchFiles map[string]string) *recipe.Recipe {
	t.Helper()
	for name, content := range patchFiles {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(p, []byte(fmt.Sprintf(depsRecipe, patches)), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := recipe.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestLockDeps: the lock pins every package of the layer's scope from the
// lockfile at the commit, checked against its integrity; re-locking after
// a one-package bump downloads that package only, and says so.
func TestLockDeps(t *testing.T) {
	reg := newRegistry(t)
	dir := t.TempDir()
	a, b := reg.add("left-pad", "1.3.0", "a"), reg.add("ms", "2.1.3", "b")
	commitFiles(t, filepath.Join(dir, "up"), map[string]string{
		"package.json":      `{"name": "app", "dependencies": {"left-pad": "1.3.0", "ms": "2.1.3"}}`,
		"package-lock.json": packageLock(a, b),
	})
	r := writeDepsRecipe(t, dir, "", nil)
	f := &deps.Fetcher{Known: nil}
	res := Resolver{Git: GitCLI{}, Images: noImages{}, Fetcher: f}
	ctx := context.Background()
	l, err := res.Resolve(ctx, r, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ld, ok := l.DepsLock.LayerDeps("modules")
	if !ok || ld.Manager != "npm" || len(ld.Packages) != 2 || ld.Tool != nil {
		t.Fatalf("layer deps %+v", ld)
	}
	if got := reg.gets.Load(); got != 2 {
		t.Errorf("first lock downloaded %d packages from the loopback registry, want 2", got)
	}
	if err := Write(r.LockPath(), l); err != nil {
		t.Fatal(err)
	}
	back, err := Read(r.LockPath())
	if err != nil {
		t.Fatal(err)
	}
	if back.DepsLock.Count() != 2 || back.Deps.Packages != 2 {
		t.Fatalf("read back %d pins (deps pin says %d)", back.DepsLock.Count(), back.Deps.Packages)
	}
	raw, _ := os.ReadFile(DepsPath(r.LockPath()))
	if !strings.Contains(string(raw), "\n        {\"name\":\"left-pad\",\"version\":\"1.3.0\"") {
		t.Errorf("a package is not one line of the dependency lock:\n%s", raw)
	}
	if err := Check(r, back, r.LockPath()); err != nil {
		t.Errorf("fresh lock is stale: %v", err)
	}

	// Bump ms only: one download; the diff names it.
	c := reg.add("ms", "2.1.4", "c")
	commitFiles(t, filepath.Join(dir, "up"), map[string]string{
		"package.json":      `{"name": "app", "dependencies": {"left-pad": "1.3.0", "ms": "2.1.4"}}`,
		"package-lock.json": packageLock(a, c),
	})
	before := reg.gets.Load()
	l2, err := res.Resolve(ctx, r, back, Options{Update: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := reg.gets.Load() - before; got != 1 {
		t.Errorf("re-lock after a one-package bump downloaded %d packages, want 1", got)
	}
	diff := strings.Join(DiffDeps(back.DepsLock, l2.DepsLock), "\n")
	if diff != "layer modules: ms 2.1.3 → 2.1.4" {
		t.Errorf("diff:\n%s", diff)
	}

	// An edited dependency lock no longer matches the main lock's pin.
	if err := os.WriteFile(DepsPath(r.LockPath()), append(raw, ' '), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(r.LockPath()); !errors.Is(err, errs.ErrInvalidLock) || !strings.Contains(err.Error(), "was edited") {
		t.Errorf("edited dependency lock: %v", err)
	}
}

// TestLockDepsAfterPatches: the lockfile is read after the recipe's
// patches; a patch that makes it invalid fails the lock, naming what.
func TestLockDepsAfterPatches(t *testing.T) {
	reg := newRegistry(t)
	dir := t.TempDir()
	a, b := reg.add("left-pad", "1.3.0", "a"), reg.add("ms", "2.1.3", "b")
	lockA := packageLock(a)
	commitFiles(t, filepath.Join(dir, "up"), map[string]string{
		"package.json":      `{"name": "app", "dependencies": {"left-pad": "1.3.0"}}`,
		"package-lock.json": lockA,
	})
	res := Resolver{Git: GitCLI{}, Images: noImages{}, Fetcher: &deps.Fetcher{}}
	ctx := context.Background()

	// A patch adding ms to the lockfile: ms is pinned.
	addMs := unifiedDiff("package-lock.json", lockA, packageLock(a, b))
	r := writeDepsRecipe(t, dir, "patches:\n  - file: add-ms.patch", map[string]string{"add-ms.patch": addMs})
	l, err := res.Resolve(ctx, r, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ld, _ := l.DepsLock.LayerDeps("modules")
	if len(ld.Packages) != 2 {
		t.Fatalf("after the patch: %d packages, want 2", len(ld.Packages))
	}
	patched := sha256.Sum256([]byte(packageLock(a, b)))
	if ld.LockfileSHA256 != hex.EncodeToString(patched[:]) {
		t.Errorf("lockfile sha256 is not the patched file's")
	}

	// A patch that breaks the lockfile: the lock fails naming it.
	bad := unifiedDiff("package-lock.json", lockA, strings.Replace(lockA, `"lockfileVersion": 3`, `"lockfileVersion": 3,,`, 1))
	r = writeDepsRecipe(t, dir, "patches:\n  - file: bad.patch", map[string]string{"bad.patch": bad})
	_, err = res.Resolve(ctx, r, nil, Options{})
	if !errors.Is(err, errs.ErrDependency) || !strings.Contains(err.Error(), "package-lock.json") || !strings.Contains(err.Error(), "layer modules") {
		t.Errorf("a patch that breaks the lockfile: %v", err)
	}

	// A patch that does not apply stops the lock like the build.
	wrong := unifiedDiff("package-lock.json", "something else\n", "other\n")
	r = writeDepsRecipe(t, dir, "patches:\n  - file: wrong.patch", map[string]string{"wrong.patch": wrong})
	_, err = res.Resolve(ctx, r, nil, Options{})
	if !errors.Is(err, errs.ErrPatchFailed) || !strings.Contains(err.Error(), "wrong.patch") {
		t.Errorf("a patch that does not apply: %v", err)
	}
}

// TestLockDepsBadDownloads: a registry 404 and a download that does not
// match the lockfile's integrity are named by package and URL.
func TestLockDepsBadDownloads(t *testing.T) {
	reg := newRegistry(t)
	dir := t.TempDir()
	a := reg.add("left-pad", "1.3.0", "a")
	missing := strings.Replace(a, "left-pad-1.3.0", "left-pad-9.9.9", 1)
	missing = strings.Replace(missing, `"version": "1.3.0"`, `"version": "9.9.9"`, 1)
	commitFiles(t, filepath.Join(dir, "up"), map[string]string{"package.json": `{"name": "app"}`, "package-lock.json": packageLock(missing)})
	r := writeDepsRecipe(t, dir, "", nil)
	res := Resolver{Git: GitCLI{}, Images: noImages{}, Fetcher: &deps.Fetcher{}}
	_, err := res.Resolve(context.Background(), r, nil, Options{})
	if !errors.Is(err, errs.ErrDependency) || !strings.Contains(err.Error(), "left-pad@9.9.9") || !strings.Contains(err.Error(), "404") {
		t.Errorf("registry 404: %v", err)
	}

	other := sha512.Sum512([]byte("not the tarball"))
	tampered := a[:strings.Index(a, `"integrity": "`)] + `"integrity": "sha512-` + base64.StdEncoding.EncodeToString(other[:]) + `"}`
	commitFiles(t, filepath.Join(dir, "up"), map[string]string{"package-lock.json": packageLock(tampered)})
	_, err = res.Resolve(context.Background(), r, nil, Options{Update: true})
	var he *deps.HashError
	if !errors.As(err, &he) || he.Package != "left-pad@1.3.0" || !strings.Contains(he.URL, "/left-pad/-/left-pad-1.3.0.tgz") || he.Expected == he.Actual {
		t.Errorf("integrity mismatch: %v", err)
	}
}

// unifiedDiff is a one-hunk diff replacing a whole file.
func unifiedDiff(name, from, to string) string {
	lines := func(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }
	a, b := lines(from), lines(to)
	var sb strings.Builder
	fmt.Fprintf(&sb, "--- a/%s\n+++ b/%s\n@@ -1,%d +1,%d @@\n", name, name, len(a), len(b))
	for _, l := range a {
		sb.WriteString("-" + l + "\n")
	}
	for _, l := range b {
		sb.WriteString("+" + l + "\n")
	}
	return sb.String()
}
