package yarn

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/deps/internal/jstest"
	"github.com/vmbuild/vmbuild/deps/npm"
	"github.com/vmbuild/vmbuild/errs"
)

func resolveFixture(t *testing.T, edits map[string]string, opts npm.Options) (*npm.Set, error) {
	t.Helper()
	return Resolve(context.Background(), jstest.Tree(t, berryFixture, edits), "yarn.lock", opts)
}

func has(s *npm.Set, id string) bool {
	for _, p := range s.Packages {
		if p.ID() == id {
			return true
		}
	}
	return false
}

// The counts are the ones TestBerryFixtureOffline proves against the real
// Yarn 4.18 on linux/amd64.
func TestBerryFixture(t *testing.T) {
	s, err := resolveFixture(t, nil, npm.Options{Production: true, Workspaces: []string{"@fixture/app"}, Platform: linuxAMD64})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Packages) != 32 {
		t.Errorf("%d packages, want 32", len(s.Packages))
	}
	for _, id := range []string{
		"once@1.4.0",                 // @fixture/lib, a workspace dependency
		"string-width@4.2.3",         // the npm: alias
		"@esbuild/linux-x64@0.25.10", // conditions match
		"fsevents@2.3.3",             // darwin-only, optional, but patched: Yarn fetches the patch's source
		"node-gyp@13.1.0",            // fsevents's dependency: fetched although fsevents is disabled
	} {
		if !has(s, id) {
			t.Errorf("%s missing", id)
		}
	}
	for _, id := range []string{"@esbuild/darwin-arm64@0.25.10", "is-odd@3.0.1", "is-number@7.0.0", "chokidar@3.6.0", "resolve@1.22.10"} {
		if has(s, id) {
			t.Errorf("%s resolved", id)
		}
	}
	all, err := resolveFixture(t, nil, npm.Options{Platform: linuxAMD64})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Packages) != 54 || !has(all, "resolve@1.22.10") || !has(all, "chokidar@3.6.0") || !has(all, "is-odd@3.0.1") {
		t.Errorf("all: %d packages", len(all.Packages))
	}
	arm, err := resolveFixture(t, nil, npm.Options{Production: true, Workspaces: []string{"packages/app"}, Platform: ocispec.Platform{OS: "linux", Architecture: "arm64"}})
	if err != nil {
		t.Fatal(err)
	}
	if !has(arm, "@esbuild/linux-arm64@0.25.10") || has(arm, "@esbuild/linux-x64@0.25.10") {
		t.Errorf("arm64: %v", arm.Packages)
	}
	// supportedArchitectures widens the set, "current" being the target.
	wide, err := resolveFixture(t, map[string]string{".yarnrc.yml": "nodeLinker: node-modules\nsupportedArchitectures:\n  os: [current, darwin]\n  cpu: [current, arm64]\n"},
		npm.Options{Production: true, Workspaces: []string{"@fixture/app"}, Platform: linuxAMD64})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"@esbuild/linux-x64@0.25.10", "@esbuild/linux-arm64@0.25.10", "@esbuild/darwin-arm64@0.25.10", "@esbuild/darwin-x64@0.25.10"} {
		if !has(wide, id) {
			t.Errorf("supportedArchitectures: %s missing", id)
		}
	}
	if has(wide, "@esbuild/win32-x64@0.25.10") {
		t.Error("supportedArchitectures: win32 resolved")
	}
}

func TestBerryRegistry(t *testing.T) {
	s, err := resolveFixture(t, map[string]string{".yarnrc.yml": `nodeLinker: node-modules
npmRegistryServer: "https://npm.example.com/"
npmAuthToken: SECRET-1
npmScopes:
  esbuild:
    npmRegistryServer: https://esbuild.example.com
    npmAuthToken: "${SECRET_TOKEN}"
`}, npm.Options{Production: true, Workspaces: []string{"@fixture/app"}, Platform: linuxAMD64})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(s)
	if strings.Contains(string(b), "SECRET") {
		t.Fatalf("credential leaked: %s", b)
	}
	if s.Registry != "https://npm.example.com" || s.Scopes["@esbuild"] != "https://esbuild.example.com" {
		t.Errorf("registry %s scopes %v", s.Registry, s.Scopes)
	}
	if strings.Join(s.Credentials, "|") != ".yarnrc.yml:3: npmAuthToken|.yarnrc.yml:7: npmScopes.esbuild.npmAuthToken" {
		t.Errorf("credentials %q", s.Credentials)
	}
	for _, p := range s.Packages {
		want := "https://npm.example.com/" + p.Path
		if strings.HasPrefix(p.Name, "@esbuild/") {
			want = "https://esbuild.example.com/" + p.Path
		}
		if p.URL != want {
			t.Errorf("%s: %s", p.ID(), p.URL)
		}
	}
	if s.Tool.Package.URL != "https://npm.example.com/@yarnpkg/cli-dist/-/cli-dist-4.18.0.tgz" {
		t.Errorf("tool %s", s.Tool.Package.URL)
	}
	o, err := resolveFixture(t, nil, npm.Options{Registry: "http://127.0.0.1:1234", Platform: linuxAMD64})
	if err != nil || o.Registry != "http://127.0.0.1:1234" || !strings.HasPrefix(o.Packages[0].URL, "http://127.0.0.1:1234/") {
		t.Errorf("override: %v %v", o, err)
	}
}

func TestBerryBadInput(t *testing.T) {
	lock := string(jstest.Tree(t, berryFixture, nil)["yarn.lock"].Data)
	lineOf := func(prefix string) string {
		for i, l := range strings.Split(lock, "\n") {
			if strings.HasPrefix(l, prefix) {
				return "yarn.lock:" + itoa(i+1) + ":"
			}
		}
		t.Fatalf("no line %q", prefix)
		return ""
	}
	for _, tc := range []struct {
		name, old, new string
		edits          map[string]string
		opts           npm.Options
		want           []string
	}{
		{name: "git", old: `resolution: "once@npm:1.4.0"`, new: `resolution: "once@https://github.com/isaacs/once.git#commit=0e614d9f5a7e6f0305c625f6b581f6d80b33b8a6"`,
			want: []string{lineOf(`"once@npm:1.4.0"`), "package once comes from https://github.com/isaacs/once.git", "vmbuild needs registry tarballs"}},
		{name: "file", old: `resolution: "wrappy@npm:1.0.2"`, new: `resolution: "wrappy@file:../wrappy.tgz::locator=%40fixture%2Flib%40workspace%3Apackages%2Flib"`,
			want: []string{lineOf(`"wrappy@npm:1`), "package wrappy comes from file:../wrappy.tgz", "(file: protocol)"}},
		{name: "exec", old: `resolution: "wrappy@npm:1.0.2"`, new: `resolution: "wrappy@exec:./gen.js"`,
			want: []string{"package wrappy comes from exec:./gen.js"}},
		{name: "link out of tree", old: `resolution: "wrappy@npm:1.0.2"`, new: `resolution: "wrappy@link:../../../wrappy::locator=%40fixture%2Flib%40workspace%3Apackages%2Flib"`,
			want: []string{"package wrappy@link:../../../wrappy", "outside the tree"}},
		{name: "missing entry", old: `"once@npm:1.4.0":`, new: `"once@npm:1.4.1":`,
			want: []string{lineOf(`"@fixture/lib@workspace`), "@fixture/lib@workspace:packages/lib depends on once@npm:1.4.0, which the lockfile has no entry for"}},
		{name: "old lockfile", old: "  version: 10\n", new: "  version: 3\n", want: []string{"lockfile version 3"}},
		{name: "manifest ahead of the lock", edits: map[string]string{"packages/lib/package.json": `{"name": "@fixture/lib", "dependencies": {"once": "1.4.0", "left-pad": "1.3.0"}}`},
			want: []string{"workspace @fixture/lib: packages/lib/package.json lists left-pad, but the lockfile does not"}},
		{name: "unknown workspace", opts: npm.Options{Workspaces: []string{"@fixture/nope"}}, want: []string{`no workspace "@fixture/nope"`, "@fixture/app (packages/app)"}},
		{name: "yaml", old: "__metadata:\n", new: "__metadata:\n :\n\t- x\n", want: []string{"parsing yarn.lock"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			edits := map[string]string{}
			for k, v := range tc.edits {
				edits[k] = v
			}
			if tc.old != "" {
				if !strings.Contains(lock, tc.old) {
					t.Fatalf("fixture lacks %q", tc.old)
				}
				edits["yarn.lock"] = strings.Replace(lock, tc.old, tc.new, 1)
			}
			tc.opts.Platform = linuxAMD64
			_, err := resolveFixture(t, edits, tc.opts)
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

func TestConditions(t *testing.T) {
	a := archs{"os": {"linux"}, "cpu": {"x64"}, "libc": {"glibc"}}
	for expr, want := range map[string]bool{
		"os=linux":                           true,
		"os=linux & cpu=x64 & libc=glibc":    true,
		"os=linux & cpu=x64 & libc=musl":     false,
		"os=darwin":                          false,
		"os=darwin | os=linux":               true,
		"(os=darwin | os=linux) & cpu=arm64": false,
		"os=linux & !cpu=arm64":              true,
		"abi=whatever":                       true,
	} {
		got, err := evalConditions(expr, a)
		if err != nil || got != want {
			t.Errorf("%s = %v %v, want %v", expr, got, err, want)
		}
	}
	for _, bad := range []string{"os", "os=linux &", "(os=linux", "os=linux)"} {
		if _, err := evalConditions(bad, a); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	// Off linux, Yarn has no libc: libc conditions pass.
	if ok, _ := evalConditions("os=darwin & libc=glibc", archs{"os": {"darwin"}, "cpu": {"arm64"}}); !ok {
		t.Error("libc off linux")
	}
}

func TestDetect(t *testing.T) {
	if Detect([]byte("# THIS IS AN AUTOGENERATED FILE.\n# yarn lockfile v1\n\n\nms@2:\n")) != npm.ManagerYarnV1 {
		t.Error("v1")
	}
	if Detect([]byte("# This file is generated\n\n__metadata:\n  version: 8\n")) != npm.ManagerYarnBerry {
		t.Error("berry")
	}
	_, err := Resolve(context.Background(), jstest.Tree(t, berryFixture, map[string]string{"yarn.lock": "{}\n"}), "yarn.lock", npm.Options{})
	if !errors.Is(err, errs.ErrDependency) {
		t.Errorf("neither: %v", err)
	}
}
