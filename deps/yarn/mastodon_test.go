package yarn

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/deps/internal/jstest"
	"github.com/vmbuild/vmbuild/deps/npm"
)

// The real Mastodon tree (../shared/fixtures/mastodon from the repository
// root): its yarn.lock is Yarn 4.18's, 1,386 entries.
const bundle = "../../../shared/fixtures/mastodon/mastodon-main.bundle"

var mastodonFiles = []string{"yarn.lock", "package.json", ".yarnrc.yml", "streaming/package.json"}

var (
	mastodonOnce sync.Once
	mastodonFS   fstest.MapFS
	mastodonErr  string
)

// mastodon returns the files of the Mastodon tree a Yarn install reads, or
// skips (fails under VMBUILD_INTEGRATION=1) when the bundle is absent.
func mastodon(t testing.TB) fstest.MapFS {
	t.Helper()
	mastodonOnce.Do(func() {
		if _, err := os.Stat(bundle); err != nil {
			mastodonErr = "the Mastodon bundle is absent (" + bundle + "): " + err.Error()
			return
		}
		dir, err := os.MkdirTemp("", "vmbuild-mastodon-")
		if err != nil {
			mastodonErr = err.Error()
			return
		}
		defer os.RemoveAll(dir)
		git := filepath.Join(dir, "git")
		if out, err := exec.Command("git", "clone", "--bare", "--quiet", bundle, git).CombinedOutput(); err != nil {
			mastodonErr = "cloning the Mastodon bundle: " + err.Error() + ": " + string(out)
			return
		}
		fsys := fstest.MapFS{}
		for _, f := range mastodonFiles {
			out, err := exec.Command("git", "--git-dir", git, "show", "HEAD:"+f).Output()
			if err != nil {
				mastodonErr = "reading " + f + " from the bundle: " + err.Error()
				return
			}
			fsys[f] = &fstest.MapFile{Data: out, Mode: 0o644}
		}
		mastodonFS = fsys
	})
	if mastodonErr != "" {
		jstest.Need(t, "%s", mastodonErr)
	}
	return mastodonFS
}

var linuxAMD64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}

func streaming(t testing.TB) *npm.Set {
	t.Helper()
	s, err := Resolve(context.Background(), mastodon(t), "yarn.lock", npm.Options{Production: true, Workspaces: []string{"@mastodon/streaming"}, Platform: linuxAMD64})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMastodonStreamingFocus(t *testing.T) {
	s := streaming(t)
	if len(s.Packages) != 152 {
		t.Errorf("%d packages, want 152", len(s.Packages))
	}
	have := map[string]deps.Package{}
	for _, p := range s.Packages {
		have[p.ID()] = p
	}
	for _, want := range []string{"express@5.2.1", "pg@8.23.0", "ws@8.21.3", "jsdom@30.0.1", "ioredis@5.11.1"} {
		if _, ok := have[want]; !ok {
			t.Errorf("%s missing", want)
		}
	}
	// No devDependency of streaming, nor typescript in any form.
	for _, p := range s.Packages {
		for _, dev := range []string{"typescript", "@typescript/", "@types/", "@eslint/js", "globals", "pino-pretty", "typescript-eslint"} {
			if p.Name == dev || strings.HasPrefix(p.Name, dev) && strings.HasSuffix(dev, "/") {
				t.Errorf("dev package %s resolved", p.ID())
			}
		}
	}
	e := have["express@5.2.1"]
	if e.URL != "https://registry.yarnpkg.com/express/-/express-5.2.1.tgz" || e.Path != "express/-/express-5.2.1.tgz" {
		t.Errorf("express: %+v", e)
	}
	if s.Manager != npm.ManagerYarnBerry || s.LockfileVersion != 10 || s.Registry != DefaultRegistry {
		t.Errorf("set: %s %d %s", s.Manager, s.LockfileVersion, s.Registry)
	}
	if s.Tool == nil || s.Tool.Package.ID() != "@yarnpkg/cli-dist@4.18.0" || s.Tool.Entry != "package/bin/yarn.js" ||
		s.Tool.Package.URL != "https://registry.yarnpkg.com/@yarnpkg/cli-dist/-/cli-dist-4.18.0.tgz" {
		t.Errorf("tool: %+v", s.Tool)
	}
}

func TestMastodonOtherScopes(t *testing.T) {
	fsys := mastodon(t)
	count := func(opts npm.Options) int {
		t.Helper()
		s, err := Resolve(context.Background(), fsys, "yarn.lock", opts)
		if err != nil {
			t.Fatal(err)
		}
		return len(s.Packages)
	}
	prod := count(npm.Options{Production: true, Workspaces: []string{"streaming"}, Platform: linuxAMD64})
	dev := count(npm.Options{Workspaces: []string{"@mastodon/streaming"}, Platform: linuxAMD64})
	arm := count(npm.Options{Production: true, Workspaces: []string{"@mastodon/streaming"}, Platform: ocispec.Platform{OS: "linux", Architecture: "arm64"}})
	all := count(npm.Options{Platform: linuxAMD64})
	t.Logf("streaming: production %d, with dev %d, arm64 %d; whole project %d", prod, dev, arm, all)
	if prod != 152 || dev <= prod || arm != 152 || all <= dev {
		t.Errorf("scopes: prod %d dev %d arm %d all %d", prod, dev, arm, all)
	}
}

// BenchmarkMastodonResolve measures parse + resolve of Mastodon's
// yarn.lock for the streaming focus.
func BenchmarkMastodonResolve(b *testing.B) {
	fsys := mastodon(b)
	for b.Loop() {
		if _, err := Resolve(context.Background(), fsys, "yarn.lock", npm.Options{Production: true, Workspaces: []string{"@mastodon/streaming"}}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestMastodonResolveTime(t *testing.T) {
	fsys := mastodon(t)
	start := time.Now()
	const n = 5
	for range n {
		if _, err := Resolve(context.Background(), fsys, "yarn.lock", npm.Options{Production: true, Workspaces: []string{"@mastodon/streaming"}}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("parse + resolve of Mastodon's yarn.lock (%d bytes): %v each", len(fsys["yarn.lock"].Data), time.Since(start)/n)
}
