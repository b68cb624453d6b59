package yarn

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/deps/internal/jstest"
	"github.com/vmbuild/vmbuild/deps/npm"
	"github.com/vmbuild/vmbuild/errs"
)

// The v1 fixture is a real Yarn 1.22.22 lockfile: the npm fixture's
// project (debug, esbuild and its 26 optional platform packages, an npm:
// alias, a dev dependency, workspace packages/app) plus chokidar 3.6.0
// (optional fsevents).
const v1Fixture = "testdata/v1"

var v1Files = []string{"package.json", "yarn.lock", "packages/app/package.json"}

func TestV1(t *testing.T) {
	fsys := jstest.Tree(t, v1Fixture, nil)
	s, err := Resolve(context.Background(), fsys, "yarn.lock", npm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Manager != npm.ManagerYarnV1 || s.LockfileVersion != 1 || s.Registry != DefaultRegistry {
		t.Errorf("set: %+v", s)
	}
	have := map[string]deps.Package{}
	for _, p := range s.Packages {
		have[p.ID()] = p
		if !strings.HasPrefix(p.Integrity, "sha512-") {
			t.Errorf("%s: integrity %q", p.ID(), p.Integrity)
		}
		if strings.Contains(p.URL, "#") {
			t.Errorf("%s: URL keeps its fragment: %s", p.ID(), p.URL)
		}
	}
	for id, path := range map[string]string{
		"@esbuild/linux-x64@0.25.10":    "@esbuild-linux-x64-0.25.10.tgz",
		"@esbuild/darwin-arm64@0.25.10": "@esbuild-darwin-arm64-0.25.10.tgz", // v1 fetches every platform's
		"fsevents@2.3.3":                "fsevents-2.3.3.tgz",
		"string-width@4.2.3":            "string-width-4.2.3.tgz",
		"is-number@7.0.0":               "is-number-7.0.0.tgz",
		"is-number@6.0.0":               "is-number-6.0.0.tgz",
		"ms@2.1.3":                      "ms-2.1.3.tgz",
	} {
		if p, ok := have[id]; !ok || p.Path != path {
			t.Errorf("%s: %+v, want path %s", id, p, path)
		}
	}
	if u := have["@esbuild/linux-x64@0.25.10"].URL; u != "https://registry.yarnpkg.com/@esbuild/linux-x64/-/linux-x64-0.25.10.tgz" {
		t.Errorf("URL %s", u)
	}
	prod, err := Resolve(context.Background(), fsys, "yarn.lock", npm.Options{Production: true, Registry: "https://registry.npmjs.org/"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range prod.Packages {
		if !strings.HasPrefix(p.URL, "https://registry.npmjs.org/") {
			t.Errorf("registry not moved: %s", p.URL)
		}
	}
	// Production keeps the devDependencies: Yarn v1 may fetch them.
	if len(s.Packages) != 53 || len(prod.Packages) != 53 {
		t.Errorf("v1: %d packages, %d in production; want 53, 53", len(s.Packages), len(prod.Packages))
	}
	if _, err := Resolve(context.Background(), fsys, "yarn.lock", npm.Options{Workspaces: []string{"@fixture/app"}}); !errors.Is(err, errs.ErrDependency) {
		t.Errorf("workspaces with v1: %v", err)
	}
}

func TestV1MirrorName(t *testing.T) {
	for in, want := range map[string]string{
		"https://registry.yarnpkg.com/@babel/core/-/core-7.1.0.tgz":   "@babel-core-7.1.0.tgz",
		"https://registry.yarnpkg.com/@babel%2fcore/-/core-7.1.0.tgz": "@babel-core-7.1.0.tgz",
		"https://registry.yarnpkg.com/ms/-/ms-2.1.3.tgz":              "ms-2.1.3.tgz",
		"https://codeload.github.com/a/b/tar.gz/0123abc":              "0123abc",
	} {
		if got, err := V1MirrorName(in); err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", in, got, err, want)
		}
	}
}

func TestV1BadInput(t *testing.T) {
	lock := string(jstest.Tree(t, v1Fixture, nil)["yarn.lock"].Data)
	line := func(s string) string {
		for i, l := range strings.Split(lock, "\n") {
			if strings.HasPrefix(l, s) {
				return "yarn.lock:" + itoa(i+1) + ":"
			}
		}
		t.Fatalf("no line %q", s)
		return ""
	}
	for _, tc := range []struct {
		name, old, new string
		want           []string
	}{
		{"no resolved", `  resolved "https://registry.yarnpkg.com/ms/-/ms-2.1.3.tgz#574c8138ce1d2b5861f0b44579dbadd60c6615b2"` + "\n", "",
			[]string{line("ms@2.1.3, "), "package ms@2.1.3 (ms@2.1.3) has no resolved URL"}},
		{"git", `"https://registry.yarnpkg.com/ms/-/ms-2.1.3.tgz#574c8138ce1d2b5861f0b44579dbadd60c6615b2"`, `"git+https://github.com/vercel/ms.git#1304f150b38027e0f8a6a7c1e7bb2bd1a6b3b5d3"`,
			[]string{line("ms@2.1.3, "), "package ms@2.1.3 comes from git+https://github.com/vercel/ms.git", "vmbuild needs registry tarballs"}},
		{"missing", "wrappy@1:\n", "wrappy@2:\n", []string{"needs wrappy@1, which the lockfile has no entry for"}},
		{"syntax", "ms@2.1.3, ms@^2.1.3:\n", "ms@2.1.3, ms@^2.1.3\n", []string{line("ms@2.1.3, "), "does not end with ':'"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(lock, tc.old) {
				t.Fatalf("fixture lacks %q", tc.old)
			}
			fsys := jstest.Tree(t, v1Fixture, map[string]string{"yarn.lock": strings.Replace(lock, tc.old, tc.new, 1)})
			_, err := Resolve(context.Background(), fsys, "yarn.lock", npm.Options{})
			if !errors.Is(err, errs.ErrDependency) {
				t.Fatalf("want ErrDependency, got %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

// TestV1Offline is the proof for Yarn v1: yarn 1.22.22 (from the npm
// registry, run with node) installs with --frozen-lockfile --offline from
// a yarn-offline-mirror holding only the pinned tarballs — so none is
// missing — and reads every one of them (file access times), so none is
// extra.
func TestV1Offline(t *testing.T) {
	jstest.Integration(t)
	node := jstest.Node(t)
	fsys := jstest.Tree(t, v1Fixture, nil)
	cache := t.TempDir()
	tool, err := npm.ParsePackageManager("yarn@1.22.22+sha1.ac34549e6aa8e7ead463a7407e1c7390f61a6610", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := tool.Pin(context.Background(), &deps.Fetcher{CacheDir: cache}); err != nil {
		t.Fatal(err)
	}
	yarnJS := unpackTool(t, tool, cache)
	for _, tc := range []struct {
		name string
		opts npm.Options
		args []string
	}{
		{"all", npm.Options{}, nil},
		{"production", npm.Options{Production: true}, []string{"--production"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Platform = host
			s, err := Resolve(context.Background(), fsys, "yarn.lock", tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			pin(t, s, cache)
			dir := t.TempDir()
			mirror := filepath.Join(dir, "mirror")
			old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
			if err := os.MkdirAll(mirror, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, p := range s.Packages {
				b, err := os.ReadFile(filepath.Join(cache, "sha256", p.SHA256))
				if err != nil {
					t.Fatal(err)
				}
				f := filepath.Join(mirror, p.Path)
				if err := os.WriteFile(f, b, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Chtimes(f, old, time.Now()); err != nil {
					t.Fatal(err)
				}
			}
			proj := filepath.Join(dir, "project")
			jstest.WriteTree(t, fsys, proj, v1Files...)
			if err := os.WriteFile(filepath.Join(proj, ".yarnrc"), []byte("yarn-offline-mirror \""+mirror+"\"\nyarn-offline-mirror-pruning false\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{yarnJS, "install", "--frozen-lockfile", "--offline", "--ignore-scripts", "--non-interactive", "--no-progress",
				"--cache-folder", filepath.Join(dir, "yarn-cache")}, tc.args...)
			out := jstest.Run(t, proj, nil, node, args...)
			if _, err := os.Stat(filepath.Join(proj, "node_modules", "debug", "package.json")); err != nil {
				t.Errorf("not installed: %v\n%s", err, out)
			}
			// Every pinned tarball was read (relatime updates an access
			// time older than the modification time).
			if !atimeWorks(t, dir) {
				t.Logf("access times are not updated here: not checking that every tarball was read")
				return
			}
			if tc.opts.Production {
				// The set is a superset there: Yarn v1 reads some
				// devDependencies' tarballs with --production, not all.
				return
			}
			unread := 0
			for _, p := range s.Packages {
				fi, err := os.Stat(filepath.Join(mirror, p.Path))
				if err != nil {
					t.Fatal(err)
				}
				if atime(fi).Before(old.Add(time.Hour)) {
					t.Errorf("pinned but never read: %s", p.Path)
					unread++
				}
			}
			t.Logf("yarn v1 installed offline from %d tarballs (%d unread)", len(s.Packages), unread)
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// atimeWorks probes whether reading a file in dir updates its access time.
func atimeWorks(t *testing.T, dir string) bool {
	f := filepath.Join(dir, "atime-probe")
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(f, old, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(f); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(f)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(f)
	return atime(fi).After(old.Add(time.Hour))
}
