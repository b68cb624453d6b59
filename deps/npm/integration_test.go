package npm

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/deps/internal/jstest"
	"github.com/vmbuild/vmbuild/errs"
)

var host = ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}

// TestNpmCIOffline is the proof that a resolved set is complete and exact:
// the host's npm, pointed at a loopback mirror that serves only the pinned
// tarballs, installs with `npm ci`, asks for every pinned tarball and for
// nothing else.
func TestNpmCIOffline(t *testing.T) {
	jstest.Integration(t)
	npmBin, err := exec.LookPath("npm")
	if err != nil {
		jstest.Need(t, "npm not found: %v", err)
	}
	cache := t.TempDir()
	f := &deps.Fetcher{CacheDir: cache}
	tree := jstest.Tree(t, fixture, nil)
	for _, tc := range []struct {
		name  string
		opts  Options
		args  []string
		check []string // installed
	}{
		{"omit dev", Options{Production: true}, []string{"--omit=dev"}, []string{"debug", "esbuild", "@esbuild/" + mustTarget(t).OS + "-" + mustTarget(t).CPU, "string-width-cjs", "ms", "@fixture/app"}},
		{"everything", Options{}, nil, []string{"is-number", "is-odd/node_modules/is-number"}},
		{"workspace omit dev", Options{Production: true, Workspaces: []string{"@fixture/app"}}, []string{"--omit=dev", "--workspace", "@fixture/app"}, []string{"ms", "once", "wrappy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Platform = host
			s := mustResolve(t, tree, tc.opts)
			start := time.Now()
			if err := s.Pin(context.Background(), f); err != nil {
				t.Fatal(err)
			}
			var size int64
			for _, p := range s.Packages {
				size += p.Size
			}
			t.Logf("pinned %d packages, %d bytes, in %v", len(s.Packages), size, time.Since(start).Round(time.Millisecond))
			m := jstest.NewMirror(t, cache, "", s.Packages)
			dir := t.TempDir()
			jstest.WriteTree(t, tree, dir, "package.json", "package-lock.json", "packages/app/package.json")
			if err := os.WriteFile(filepath.Join(dir, "empty.npmrc"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"ci", "--registry", m.URL + "/", "--ignore-scripts", "--no-audit", "--no-fund", "--no-update-notifier"}, tc.args...)
			out := jstest.Run(t, dir, []string{
				"npm_config_cache=" + filepath.Join(dir, ".npm-cache"),
				"npm_config_userconfig=" + filepath.Join(dir, "empty.npmrc"),
				"npm_config_fetch_retries=0",
			}, npmBin, args...)
			t.Logf("npm %s: %s", strings.Join(args, " "), strings.TrimSpace(out))
			m.CheckExact(t)
			for _, c := range tc.check {
				if _, err := os.Stat(filepath.Join(dir, "node_modules", c, "package.json")); err != nil {
					t.Errorf("not installed: %v", err)
				}
			}
		})
	}
}

func mustTarget(t *testing.T) Target {
	x, err := TargetOf(host, "")
	if err != nil {
		t.Skipf("host platform: %v", err)
	}
	return x
}

func TestPinBadDownloads(t *testing.T) {
	jstest.Integration(t)
	ctx := context.Background()
	// A version the registry does not have: 404, naming the package.
	tree := editLock(t, func(lk map[string]any) {
		e := entry(lk, "node_modules/ms")
		e["version"] = "2.1.99"
		e["resolved"] = "https://registry.npmjs.org/ms/-/ms-2.1.99.tgz"
	})
	s := mustResolve(t, tree, Options{Production: true, Workspaces: []string{"@fixture/app"}})
	err := s.Pin(ctx, &deps.Fetcher{})
	if !errors.Is(err, errs.ErrDependency) || !strings.Contains(err.Error(), "ms@2.1.99") || !strings.Contains(err.Error(), "404") {
		t.Errorf("404: %v", err)
	}
	// An integrity that is not the tarball's: a hash mismatch, naming the
	// package, the URL and both digests.
	tree = editLock(t, func(lk map[string]any) {
		entry(lk, "node_modules/ms")["integrity"] = entry(lk, "node_modules/wrappy")["integrity"]
	})
	s = mustResolve(t, tree, Options{Production: true, Workspaces: []string{"@fixture/app"}})
	err = s.Pin(ctx, &deps.Fetcher{})
	var he *deps.HashError
	if !errors.As(err, &he) || !errors.Is(err, errs.ErrHashMismatch) || he.Package != "ms@2.1.3" || !strings.Contains(err.Error(), "package-lock.json integrity (sha512)") {
		t.Errorf("integrity mismatch: %v", err)
	}
}
