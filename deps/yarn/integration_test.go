package yarn

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/deps/internal/jstest"
	"github.com/vmbuild/vmbuild/deps/npm"
)

var host = ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}

// pin hashes a set (and its tool) into cache, logging the time.
func pin(t *testing.T, s *npm.Set, cache string) {
	t.Helper()
	start := time.Now()
	if err := s.Pin(context.Background(), &deps.Fetcher{CacheDir: cache}); err != nil {
		t.Fatal(err)
	}
	var size int64
	for _, p := range s.Packages {
		size += p.Size
	}
	t.Logf("hashed %d packages, %d bytes (%.1f MB), in %v", len(s.Packages), size, float64(size)/1e6, time.Since(start).Round(time.Millisecond))
}

// unpackTool unpacks the pinned package manager and returns its entry
// script.
func unpackTool(t *testing.T, tool *npm.Tool, cache string) string {
	t.Helper()
	dir := t.TempDir()
	jstest.Untar(t, filepath.Join(cache, "sha256", tool.Package.SHA256), dir)
	entry := filepath.Join(dir, filepath.FromSlash(tool.Entry))
	if _, err := os.Stat(entry); err != nil {
		t.Fatalf("tool entry: %v", err)
	}
	return entry
}

// proveBerry is the proof that a Berry set is complete and exact: the real
// Yarn (the pinned @yarnpkg/cli-dist, run with node) installs from a
// loopback mirror that serves only the pinned tarballs, asks for every one
// of them and for nothing else.
func proveBerry(t *testing.T, fsys fs.FS, files []string, s *npm.Set, args ...string) string {
	t.Helper()
	node := jstest.Node(t)
	cache := t.TempDir()
	pin(t, s, cache)
	if s.Tool == nil {
		t.Fatal("no packageManager")
	}
	yarnJS := unpackTool(t, s.Tool, cache)
	m := jstest.NewMirror(t, cache, "", s.Packages)
	dir := t.TempDir()
	jstest.WriteTree(t, fsys, dir, files...)
	start := time.Now()
	out := jstest.Run(t, dir, []string{
		"YARN_NPM_REGISTRY_SERVER=" + m.URL,
		"YARN_UNSAFE_HTTP_WHITELIST=127.0.0.1",
		"YARN_ENABLE_GLOBAL_CACHE=0",
		"YARN_ENABLE_TELEMETRY=0",
		"YARN_ENABLE_INLINE_BUILDS=0",
	}, node, append([]string{yarnJS}, args...)...)
	t.Logf("yarn %s: %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	m.CheckExact(t)
	if t.Failed() {
		t.Logf("yarn output:\n%s", out)
	}
	return dir
}

func TestMastodonStreamingOffline(t *testing.T) {
	jstest.Integration(t)
	fsys := mastodon(t)
	s := streaming(t)
	dir := proveBerry(t, fsys, mastodonFiles, s, "workspaces", "focus", "--production", "@mastodon/streaming")
	for _, p := range []string{"express", "pg", "ws", "ioredis", "jsdom"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", p, "package.json")); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "typescript")); err == nil {
		t.Error("typescript installed")
	}
}

// The small Berry fixture is a real Yarn 4.18 lockfile: workspaces (root,
// @fixture/app → @fixture/lib via workspace:^), builtin compat patches
// (resolve; fsevents, optional and darwin-only, through chokidar and
// directly), esbuild's platform packages (conditions), an npm: alias and
// devDependencies.
const berryFixture = "testdata/berry"

var berryFiles = []string{"package.json", "yarn.lock", ".yarnrc.yml", "packages/app/package.json", "packages/lib/package.json"}

func TestBerryFixtureOffline(t *testing.T) {
	jstest.Integration(t)
	fsys := jstest.Tree(t, berryFixture, nil)
	for _, tc := range []struct {
		name string
		opts npm.Options
		args []string
	}{
		{"focus app production", npm.Options{Production: true, Workspaces: []string{"@fixture/app"}}, []string{"workspaces", "focus", "--production", "@fixture/app"}},
		{"focus all", npm.Options{}, []string{"workspaces", "focus", "--all"}},
		{"install", npm.Options{}, []string{"install", "--immutable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Platform = host
			s, err := Resolve(context.Background(), fsys, "yarn.lock", tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			proveBerry(t, fsys, berryFiles, s, tc.args...)
		})
	}
}
