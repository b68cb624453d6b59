package npm

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/deps/internal/jstest"
	"github.com/vmbuild/vmbuild/errs"
)

// The testdata lockfile is real: npm 11 (`npm install
// --omit-lockfile-registry-resolved=false`) for a root with debug, esbuild
// (26 platform packages, all optional), an alias (string-width-cjs →
// string-width) and a dev dependency, plus workspace packages/app
// (@fixture/app: ms, once; dev: is-odd, which nests is-number@6).
const fixture = "testdata/workspace"

func ids(s *Set) []string {
	var out []string
	for _, p := range s.Packages {
		out = append(out, p.ID())
	}
	return out
}

func mustResolve(t *testing.T, fsys fstest.MapFS, opts Options) *Set {
	t.Helper()
	s, err := Resolve(context.Background(), fsys, "package-lock.json", opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestResolveScopes(t *testing.T) {
	tree := jstest.Tree(t, fixture, nil)
	all := []string{"@esbuild/linux-x64@0.25.10", "ansi-regex@5.0.1", "debug@4.4.1", "emoji-regex@8.0.0", "esbuild@0.25.10",
		"is-fullwidth-code-point@3.0.0", "is-number@6.0.0", "is-number@7.0.0", "is-odd@3.0.1", "ms@2.1.3", "once@1.4.0",
		"string-width@4.2.3", "strip-ansi@6.0.1", "wrappy@1.0.2"}
	prod := []string{"@esbuild/linux-x64@0.25.10", "ansi-regex@5.0.1", "debug@4.4.1", "emoji-regex@8.0.0", "esbuild@0.25.10",
		"is-fullwidth-code-point@3.0.0", "ms@2.1.3", "once@1.4.0", "string-width@4.2.3", "strip-ansi@6.0.1", "wrappy@1.0.2"}
	for _, tc := range []struct {
		name string
		opts Options
		want []string
	}{
		{"all", Options{}, all},
		{"production", Options{Production: true}, prod},
		{"workspace by name", Options{Production: true, Workspaces: []string{"@fixture/app"}}, []string{"ms@2.1.3", "once@1.4.0", "wrappy@1.0.2"}},
		{"workspace by path, dev", Options{Workspaces: []string{"packages/app"}}, []string{"is-number@6.0.0", "is-odd@3.0.1", "ms@2.1.3", "once@1.4.0", "wrappy@1.0.2"}},
		{"linux/arm64", Options{Production: true, Platform: ocispec.Platform{OS: "linux", Architecture: "arm64"}},
			append([]string{"@esbuild/linux-arm64@0.25.10"}, prod[1:]...)},
		{"darwin/arm64", Options{Production: true, Platform: ocispec.Platform{OS: "darwin", Architecture: "arm64"}},
			append([]string{"@esbuild/darwin-arm64@0.25.10"}, prod[1:]...)},
		{"windows/386", Options{Production: true, Platform: ocispec.Platform{OS: "windows", Architecture: "386"}},
			append([]string{"@esbuild/win32-ia32@0.25.10"}, prod[1:]...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustResolve(t, tree, tc.opts)
			got := ids(s)
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
			if s.Manager != ManagerNPM || s.LockfileVersion != 3 || s.Registry != DefaultRegistry || s.Tool != nil {
				t.Errorf("set header: %+v", s)
			}
		})
	}
}

func TestResolveFields(t *testing.T) {
	s := mustResolve(t, jstest.Tree(t, fixture, nil), Options{Production: true})
	var sw, ex deps.Package
	for _, p := range s.Packages {
		switch p.Name {
		case "string-width":
			sw = p
		case "@esbuild/linux-x64":
			ex = p
		}
		if p.Integrity == "" || !strings.HasPrefix(p.Integrity, "sha512-") {
			t.Errorf("%s: integrity %q", p.ID(), p.Integrity)
		}
	}
	if sw.URL != "https://registry.npmjs.org/string-width/-/string-width-4.2.3.tgz" || sw.Path != "string-width/-/string-width-4.2.3.tgz" {
		t.Errorf("alias resolved to %+v", sw)
	}
	if ex.Path != "@esbuild/linux-x64/-/linux-x64-0.25.10.tgz" || ex.URL != "https://registry.npmjs.org/@esbuild/linux-x64/-/linux-x64-0.25.10.tgz" {
		t.Errorf("scoped package %+v", ex)
	}
}

// editLock rewrites the fixture's lockfile through f.
func editLock(t *testing.T, f func(lk map[string]any)) fstest.MapFS {
	t.Helper()
	tree := jstest.Tree(t, fixture, nil)
	var lk map[string]any
	if err := json.Unmarshal(tree["package-lock.json"].Data, &lk); err != nil {
		t.Fatal(err)
	}
	f(lk)
	b, err := json.MarshalIndent(lk, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	tree["package-lock.json"] = &fstest.MapFile{Data: b}
	return tree
}

func entry(lk map[string]any, loc string) map[string]any {
	return lk["packages"].(map[string]any)[loc].(map[string]any)
}

func TestRegistry(t *testing.T) {
	// Override: registry.npmjs.org URLs move; credentials in .npmrc are
	// reported by name only.
	tree := jstest.Tree(t, fixture, map[string]string{
		".npmrc": "registry=https://npm.example.com/repo/\n@esbuild:registry=https://esbuild.example.com\n//npm.example.com/repo/:_authToken=SECRET-TOKEN\n_auth=SECRET2\n",
	})
	s := mustResolve(t, tree, Options{Production: true})
	b, _ := json.Marshal(s)
	if strings.Contains(string(b), "SECRET") {
		t.Fatalf("a credential leaked into the set: %s", b)
	}
	if s.Registry != "https://npm.example.com/repo" || s.Scopes["@esbuild"] != "https://esbuild.example.com" {
		t.Errorf("registry %q scopes %v", s.Registry, s.Scopes)
	}
	if len(s.Credentials) != 2 || s.Credentials[0] != ".npmrc:3: //npm.example.com/repo/:_authToken" || s.Credentials[1] != ".npmrc:4: _auth" {
		t.Errorf("credentials %q", s.Credentials)
	}
	for _, p := range s.Packages {
		want := "https://npm.example.com/repo/" + p.Path
		if p.Name == "@esbuild/linux-x64" {
			want = "https://esbuild.example.com/" + p.Path
		}
		if p.URL != want {
			t.Errorf("%s: URL %s, want %s", p.ID(), p.URL, want)
		}
	}
	// Options.Registry wins over .npmrc.
	s = mustResolve(t, tree, Options{Production: true, Registry: "http://127.0.0.1:9/"})
	if s.Registry != "http://127.0.0.1:9" || s.Packages[1].URL != "http://127.0.0.1:9/"+s.Packages[1].Path {
		t.Errorf("override: %s %s", s.Registry, s.Packages[1].URL)
	}
	// An environment variable in the registry is refused.
	_, err := Resolve(context.Background(), jstest.Tree(t, fixture, map[string]string{".npmrc": "# mirror\nregistry=${NPM_REGISTRY}\n"}), "package-lock.json", Options{})
	if !errors.Is(err, errs.ErrDependency) || !strings.Contains(err.Error(), ".npmrc:2") {
		t.Errorf("env registry: %v", err)
	}
}

func TestNoResolvedUsesRegistry(t *testing.T) {
	// npm's omit-lockfile-registry-resolved writes no "resolved"; npm then
	// fetches from the registry by name and version, and so does vmbuild.
	tree := editLock(t, func(lk map[string]any) {
		for _, e := range lk["packages"].(map[string]any) {
			delete(e.(map[string]any), "resolved")
		}
		entry(lk, "node_modules/@fixture/app")["resolved"] = "packages/app"
	})
	s := mustResolve(t, tree, Options{Production: true, Registry: "https://mirror.example/npm"})
	for _, p := range s.Packages {
		if p.URL != "https://mirror.example/npm/"+p.Path {
			t.Errorf("%s: %s", p.ID(), p.URL)
		}
	}
	if len(s.Packages) != 11 {
		t.Errorf("%d packages", len(s.Packages))
	}
}

func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(lk map[string]any)
		opts Options
		want []string
	}{
		{"no URL", func(lk map[string]any) {
			e := entry(lk, "node_modules/debug")
			delete(e, "resolved")
			delete(e, "version")
		}, Options{}, []string{"package-lock.json:", "package debug (node_modules/debug) has no resolved URL"}},
		{"git", func(lk map[string]any) {
			e := entry(lk, "node_modules/ms")
			e["resolved"] = "git+ssh://git@github.com/vercel/ms.git#1304f150b38027e0f8a6a7c1e7bb2bd1a6b3b5d3"
			e["version"] = "2.1.3"
		}, Options{}, []string{"package ms@2.1.3 (node_modules/ms) comes from git+ssh://github.com/vercel/ms.git", "vmbuild needs registry tarballs"}},
		{"github shorthand", func(lk map[string]any) {
			entry(lk, "node_modules/once")["resolved"] = "github:isaacs/once"
		}, Options{}, []string{"package once@1.4.0 (node_modules/once) comes from github:isaacs/once"}},
		{"file", func(lk map[string]any) {
			entry(lk, "node_modules/wrappy")["resolved"] = "file:../wrappy-1.0.2.tgz"
		}, Options{}, []string{"package wrappy@1.0.2 (node_modules/wrappy) comes from file:"}},
		{"credentials in URL", func(lk map[string]any) {
			entry(lk, "node_modules/ms")["resolved"] = "https://user:pw@registry.npmjs.org/ms/-/ms-2.1.3.tgz"
		}, Options{}, []string{"ms@2.1.3", "carries credentials"}},
		{"v1", func(lk map[string]any) {
			lk["lockfileVersion"] = 1
		}, Options{}, []string{"lockfileVersion 1", "--lockfile-version 3"}},
		{"required for another platform", func(lk map[string]any) {
			delete(entry(lk, "node_modules/@esbuild/darwin-arm64"), "optional")
			entry(lk, "node_modules/esbuild")["dependencies"] = map[string]any{"@esbuild/darwin-arm64": "0.25.10"}
		}, Options{}, []string{"package @esbuild/darwin-arm64@0.25.10 (node_modules/@esbuild/darwin-arm64) is required but does not run on linux/x64 (glibc)"}},
		{"missing dependency", func(lk map[string]any) {
			delete(lk["packages"].(map[string]any), "node_modules/ms")
		}, Options{}, []string{"package @fixture/app@1.0.0 (packages/app) depends on ms, which the lockfile does not have"}},
		{"unknown workspace", func(map[string]any) {}, Options{Workspaces: []string{"nope"}}, []string{`no workspace "nope" (workspaces: @fixture/app (packages/app))`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Resolve(context.Background(), editLock(t, tc.edit), "package-lock.json", tc.opts)
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
	// The line of the entry is named.
	tree := jstest.Tree(t, fixture, nil)
	tree["package-lock.json"].Data = []byte(strings.Replace(string(tree["package-lock.json"].Data),
		`"resolved": "https://registry.npmjs.org/ms/-/ms-2.1.3.tgz"`, `"resolved": "git+https://github.com/vercel/ms.git"`, 1))
	_, err := Resolve(context.Background(), tree, "package-lock.json", Options{})
	line := 0
	for i, l := range strings.Split(string(tree["package-lock.json"].Data), "\n") {
		if strings.Contains(l, `"node_modules/ms": {`) {
			line = i + 1
		}
	}
	if err == nil || !strings.Contains(err.Error(), "package-lock.json:"+itoa(line)+":") {
		t.Errorf("want line %d in %v", line, err)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestTarget(t *testing.T) {
	lin, _ := TargetOf(ocispec.Platform{OS: "linux", Architecture: "arm64"}, "")
	musl, _ := TargetOf(ocispec.Platform{OS: "linux", Architecture: "amd64"}, "musl")
	mac, _ := TargetOf(ocispec.Platform{OS: "darwin", Architecture: "amd64"}, "")
	for _, tc := range []struct {
		t             Target
		os, cpu, libc []string
		want          bool
	}{
		{lin, []string{"linux"}, []string{"arm64"}, nil, true},
		{lin, []string{"linux"}, []string{"x64"}, nil, false},
		{lin, []string{"!win32"}, nil, nil, true},
		{lin, []string{"!linux"}, nil, nil, false},
		{lin, []string{"any"}, []string{"any"}, nil, true},
		{lin, nil, nil, []string{"glibc"}, true},
		{lin, nil, nil, []string{"musl"}, false},
		{musl, nil, []string{"x64"}, []string{"musl"}, true},
		{mac, []string{"darwin"}, []string{"x64"}, []string{"glibc"}, false},
		{mac, []string{"darwin"}, []string{"x64"}, nil, true},
	} {
		if got := tc.t.Matches(tc.os, tc.cpu, tc.libc); got != tc.want {
			t.Errorf("%v matches os %v cpu %v libc %v = %v", tc.t, tc.os, tc.cpu, tc.libc, got)
		}
	}
	if _, err := TargetOf(ocispec.Platform{OS: "plan9", Architecture: "amd64"}, ""); err == nil {
		t.Error("plan9 mapped")
	}
	if x, _ := TargetOf(ocispec.Platform{OS: "linux", Architecture: "ppc64le"}, ""); x.CPU != "ppc64" {
		t.Errorf("ppc64le → %s", x.CPU)
	}
}
