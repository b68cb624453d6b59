package recipe

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/vmbuild/vmbuild/errs"
)

const nativeRecipe = `apiVersion: vmbuild/v1
name: demo
upstream:
  git: git://127.0.0.1/demo.git
  ref: main
base: registry.example/busybox:1@sha256:0000000000000000000000000000000000000000000000000000000000000000
platform: linux/amd64
patches:
  - file: patches/one.patch
    fuzz: 1
    offset: true
  - script: patches/two.sh
    name: sed-edits
    optional: true
build:
  layers:
    - name: bundle
      inputs: [Gemfile, Gemfile.lock]
      run: bundle install
      outputs: [/usr/local/bundle]
      network: host
      env: {BUNDLE_JOBS: 4}
      cache: [/root/.cache]
    - name: assets
      inputs: ["app/javascript/**", package.json]
      run: yarn build
      outputs: [/app/public/packs]
      needs: [bundle]
      sourceDateEpoch: true
image:
  workdir: /app
  user: "991"
  env: {RAILS_ENV: production, PORT: 3000}
  entrypoint: [/bin/sh, -c]
  cmd: [rails s]
  expose: [3000, 4000/tcp]
  labels: {a: b}
`

func writeRecipe(t *testing.T, body string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "recipe.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var patchFiles = map[string]string{"patches/one.patch": "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n", "patches/two.sh": "sed -i s/a/b/ x\n"}

func TestLoadNative(t *testing.T) {
	r, err := Load(writeRecipe(t, nativeRecipe, patchFiles))
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "demo" || r.Upstream.Ref != "main" || !r.Build.Native() || len(r.Build.Layers) != 2 {
		t.Fatalf("unexpected recipe: %+v", r)
	}
	if got := r.Patches[0]; got.Kind != PatchDiff || got.Name != "one.patch" || got.Fuzz != 1 || !got.Offset || got.SHA256 == "" {
		t.Errorf("patch 0: %+v", got)
	}
	if got := r.Patches[1]; got.Kind != PatchScript || got.Name != "sed-edits" || !got.Optional {
		t.Errorf("patch 1: %+v", got)
	}
	if r.Build.Layers[0].Env["BUNDLE_JOBS"] != "4" || r.Build.Layers[0].Network != NetworkHost {
		t.Errorf("layer 0: %+v", r.Build.Layers[0])
	}
	if r.Build.Layers[1].Network != NetworkNone {
		t.Errorf("default network: %q", r.Build.Layers[1].Network)
	}
	if r.Image.Expose[0] != "3000" || r.Image.Env["PORT"] != "3000" || r.Image.User != "991" {
		t.Errorf("image: %+v", r.Image)
	}
	if filepath.Base(r.LockPath()) != "demo.lock.json" {
		t.Errorf("lock path %s", r.LockPath())
	}
}

func TestLoadDockerfileDefaults(t *testing.T) {
	r, err := Load(writeRecipe(t, "apiVersion: vmbuild/v1\nname: m\nupstream: {git: https://github.com/mastodon/mastodon.git, ref: main}\nbuild:\n  dockerfile:\n", nil))
	if err != nil {
		t.Fatal(err)
	}
	if r.Build.Native() || r.Build.Dockerfile.Path != "Dockerfile" || r.NeedsBase() {
		t.Fatalf("%+v", r.Build.Dockerfile)
	}
}

// TestErrors checks that each kind of bad input is reported with the file,
// the line and the field.
func TestErrors(t *testing.T) {
	cases := []struct {
		name string
		edit func(string) string
		want []string // substrings of the error
	}{
		{"unknown top-level field", func(s string) string { return s + "extra: 1\n" }, []string{"recipe.yaml:38:1:", `extra: unknown field`}},
		{"typo suggests", func(s string) string { return strings.Replace(s, "  ref: main", "  reff: main", 1) }, []string{"recipe.yaml:5:", "upstream.reff: unknown field", `did you mean "ref"`, "upstream.ref: missing required field"}},
		{"duplicate key", func(s string) string { return strings.Replace(s, "name: demo\n", "name: demo\nname: again\n", 1) }, []string{"recipe.yaml:3:", "name: duplicate key (first defined on line 2)"}},
		{"wrong type", func(s string) string {
			return strings.Replace(s, "outputs: [/usr/local/bundle]", "outputs: /usr/local/bundle", 1)
		}, []string{"recipe.yaml:20:16:", "build.layers[0].outputs: must be a list, not a string"}},
		{"relative output", func(s string) string { return strings.Replace(s, "[/usr/local/bundle]", "[usr/local/bundle]", 1) }, []string{"recipe.yaml:20:17:", "build.layers[0].outputs[0]", "must be an absolute path"}},
		{"missing run", func(s string) string { return strings.Replace(s, "      run: bundle install\n", "", 1) }, []string{"recipe.yaml:17:7:", "build.layers[0].run: missing required field"}},
		{"bad network", func(s string) string { return strings.Replace(s, "network: host", "network: bridge", 1) }, []string{"recipe.yaml:21:16:", "build.layers[0].network: must be none or host"}},
		{"unknown need", func(s string) string { return strings.Replace(s, "needs: [bundle]", "needs: [bundel]", 1) }, []string{"recipe.yaml:28:", `build.layers[1].needs[0]: no layer named "bundel"`}},
		{"cycle", func(s string) string {
			return strings.Replace(s, "      cache: [/root/.cache]\n", "      cache: [/root/.cache]\n      needs: [assets]\n", 1)
		}, []string{"cycle"}},
		{"both build modes", func(s string) string { return strings.Replace(s, "build:\n", "build:\n  dockerfile: {}\n", 1) }, []string{"recipe.yaml:16:3:", "exactly one of dockerfile or layers"}},
		{"missing patch file", func(s string) string { return strings.Replace(s, "patches/one.patch", "patches/nope.patch", 1) }, []string{"recipe.yaml:9:", "patches[0]", "nope.patch does not exist"}},
		{"patch path escapes", func(s string) string { return strings.Replace(s, "patches/one.patch", "../one.patch", 1) }, []string{"recipe.yaml:9:", "must not contain '..'"}},
		{"fuzz range", func(s string) string { return strings.Replace(s, "fuzz: 1", "fuzz: 9", 1) }, []string{"recipe.yaml:10:", "patches[0].fuzz: must be between 0 and 3"}},
		{"fuzz type", func(s string) string { return strings.Replace(s, "fuzz: 1", "fuzz: lots", 1) }, []string{"recipe.yaml:10:", "patches[0].fuzz: must be an integer, not a string"}},
		{"bad base", func(s string) string {
			return strings.Replace(s, "base: registry.example/busybox:1@sha256:0000000000000000000000000000000000000000000000000000000000000000", "base: busybox:bad tag!", 1)
		}, []string{"recipe.yaml:6:", "base:", "not a valid image reference"}},
		{"missing base", func(s string) string {
			return strings.Replace(s, "base: registry.example/busybox:1@sha256:0000000000000000000000000000000000000000000000000000000000000000\n", "", 1)
		}, []string{"base: missing required field (native builds run their layers on it)"}},
		{"bad api version", func(s string) string { return strings.Replace(s, "vmbuild/v1", "vmbuild/v2", 1) }, []string{"recipe.yaml:1:", `unsupported apiVersion "vmbuild/v2"`}},
		{"bad git url", func(s string) string { return strings.Replace(s, "git://127.0.0.1/demo.git", "ftp://x/y", 1) }, []string{"recipe.yaml:4:", `unsupported git URL scheme "ftp"`}},
		{"bad glob", func(s string) string { return strings.Replace(s, `"app/javascript/**"`, `"app/[javascript"`, 1) }, []string{"recipe.yaml:", `"app/[javascript" is not a valid pattern`}},
		{"second document", func(s string) string { return s + "---\nupstream: {git: git://evil/x.git, ref: main}\n" }, []string{"second YAML document", "a recipe is exactly one document"}},
		{"token in git url query", func(s string) string {
			return strings.Replace(s, "git://127.0.0.1/demo.git", "https://host/app.git?private_token=SECRET", 1)
		}, []string{"recipe.yaml:4:", "upstream.git: the URL carries a query string", "(https://host/app.git)", "credential helper"}},
		{"password in git url", func(s string) string {
			return strings.Replace(s, "git://127.0.0.1/demo.git", "https://user:p@ss-SECRET@host/app.git", 1)
		}, []string{"recipe.yaml:4:", "a password in the user info", "(https://host/app.git)"}},
		{"malformed yaml", func(s string) string { return strings.Replace(s, "ref: main", "ref: [main", 1) }, []string{"recipe.yaml:", "malformed YAML"}},
		{"source commit arg", func(string) string {
			return "apiVersion: vmbuild/v1\nname: m\nupstream: {git: ./u, ref: main}\nbuild:\n  dockerfile:\n    args: {SOURCE_COMMIT: x}\n"
		}, []string{"recipe.yaml:6:", "build.dockerfile.args.SOURCE_COMMIT: is set from the lock"}},
		{"script with fuzz", func(s string) string {
			return strings.Replace(s, "    optional: true\n", "    optional: true\n    fuzz: 1\n", 1)
		}, []string{"patches[1]: offset and fuzz apply to diffs"}},
		{"duplicate layer", func(s string) string { return strings.Replace(s, "name: assets", "name: bundle", 1) }, []string{`duplicate layer name "bundle"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeRecipe(t, tc.edit(nativeRecipe), patchFiles))
			if err == nil {
				t.Fatal("expected an error")
			}
			if !errors.Is(err, errs.ErrInvalidRecipe) {
				t.Errorf("error does not wrap ErrInvalidRecipe: %v", err)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error echoes a credential: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\n does not contain %q", err, w)
				}
			}
		})
	}
}

func TestOrderedLayers(t *testing.T) {
	r, err := Parse("r.yaml", ".", []byte(`apiVersion: vmbuild/v1
name: x
upstream: {git: ./u, ref: main}
base: busybox
build:
  layers:
    - {name: c, run: x, outputs: [/c], needs: [b]}
    - {name: a, run: x, outputs: [/a]}
    - {name: b, run: x, outputs: [/b], needs: [a]}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range r.OrderedLayers() {
		names = append(names, l.Name)
	}
	if strings.Join(names, ",") != "a,b,c" {
		t.Fatalf("order %v", names)
	}
}

func TestLocalUpstream(t *testing.T) {
	for u, want := range map[string]bool{"./up.git": true, "/srv/git/x": true, "file:///srv/x": true, "../x": true,
		"https://github.com/a/b": false, "git@github.com:a/b.git": false, "git://h/x": false} {
		if _, got := localGitPath(u, "/r"); got != want {
			t.Errorf("%s: local=%v, want %v", u, got, want)
		}
		if err := checkGitURL(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

func TestOCILayoutRef(t *testing.T) {
	dir, tag, dg, err := ParseOCILayoutRef("oci-layout://./base:v1", "/r")
	if err != nil || dir != "/r/base" || tag != "v1" || dg != "" {
		t.Fatalf("%s %s %s %v", dir, tag, dg, err)
	}
	dir, tag, _, err = ParseOCILayoutRef("oci-layout:///abs/base", "/r")
	if err != nil || dir != "/abs/base" || tag != "latest" {
		t.Fatalf("%s %s %v", dir, tag, err)
	}
	if _, _, _, err := ParseOCILayoutRef("oci-layout://x@sha256:12", "/r"); err == nil {
		t.Fatal("short digest accepted")
	}
}

// TestSchemaMatchesParser keeps schema.json and the parser in step: every
// property the schema lists is accepted by the parser, and an unknown
// property at every object level the schema closes is refused by both.
func TestSchemaMatchesParser(t *testing.T) {
	var schema map[string]any
	if err := json.Unmarshal(Schema, &schema); err != nil {
		t.Fatalf("schema.json is not JSON: %v", err)
	}
	props := map[string][]string{}
	var walk func(path string, node map[string]any)
	walk = func(path string, node map[string]any) {
		if p, ok := node["properties"].(map[string]any); ok {
			for k, v := range p {
				props[path] = append(props[path], k)
				if m, ok := v.(map[string]any); ok {
					walk(path+"."+k, m)
				}
			}
			if node["additionalProperties"] != false {
				t.Errorf("schema object %q does not set additionalProperties: false", path)
			}
		}
		if items, ok := node["items"].(map[string]any); ok {
			walk(path+"[]", items)
		}
		if alts, ok := node["oneOf"].([]any); ok {
			for _, a := range alts {
				if m, ok := a.(map[string]any); ok {
					walk(path, m)
				}
			}
		}
	}
	walk("", schema)
	want := map[string][]string{
		"":                     {"apiVersion", "name", "upstream", "base", "platform", "patches", "build", "image"},
		".upstream":            {"git", "ref"},
		".patches[]":           {"file", "script", "name", "optional", "offset", "fuzz"},
		".build":               {"dockerfile", "layers"},
		".build.dockerfile":    {"path", "target", "args", "sourceDateEpochArg", "baseFor"},
		".build.layers[]":      {"name", "inputs", "run", "outputs", "needs", "network", "env", "cache", "sourceDateEpoch", "deps"},
		".build.layers[].deps": {"manager", "lockfile", "workspaces", "production", "without", "with", "registry", "tool", "perGem"},
		".base":                {"debian", "users", "groups", "files"},
		".base.debian":         {"mirror", "suite", "components", "packages", "essential", "keyring", "allowExpired"},
		".base.users[]":        {"name", "uid", "gid", "home", "shell"},
		".base.groups[]":       {"name", "gid", "members"},
		".base.files[]":        {"path", "content", "symlink", "mode"},
		".image":               {"workdir", "user", "env", "entrypoint", "cmd", "expose", "labels", "include"},
	}
	for path, w := range want {
		got := append([]string(nil), props[path]...)
		sort.Strings(got)
		sort.Strings(w)
		if strings.Join(got, ",") != strings.Join(w, ",") {
			t.Errorf("schema %q properties = %v, parser accepts %v", path, got, w)
		}
	}
	// The full recipe above uses every property except dockerfile's; parse
	// one that uses those.
	if _, err := Parse("r.yaml", ".", []byte(`apiVersion: vmbuild/v1
name: x
upstream: {git: ./u, ref: main}
build:
  dockerfile: {path: docker/Dockerfile, target: app, args: {A: "1"}, sourceDateEpochArg: true}
`), nil); err != nil {
		t.Fatal(err)
	}
}

const hermeticRecipe = `apiVersion: vmbuild/v1
name: streaming
upstream: {git: ./u, ref: main}
base:
  debian:
    suite: sid
    packages: [nodejs, ca-certificates, dash]
    allowExpired: true
  users: [{name: mastodon, uid: 991, home: /opt/mastodon}]
  groups: [{name: mastodon, gid: 991}]
  files: [{path: /etc/localtime, symlink: /usr/share/zoneinfo/Etc/UTC}, {path: /etc/timezone, content: "Etc/UTC\n"}]
build:
  layers:
    - name: node-modules
      inputs: [package.json, yarn.lock, .yarnrc.yml, streaming/package.json]
      deps: {manager: yarn, workspaces: ["@mastodon/streaming"], production: true}
      run: yarn workspaces focus --production @mastodon/streaming
      outputs: [/app/node_modules]
    - name: gems
      inputs: [Gemfile, Gemfile.lock]
      deps: {manager: bundler, without: [development, test], registry: "https://gems.example/"}
      run: bundle install --local
      outputs: [/usr/local/bundle]
`

func TestDepsAndDebianBase(t *testing.T) {
	r, err := Parse("r.yaml", ".", []byte(hermeticRecipe), nil)
	if err != nil {
		t.Fatal(err)
	}
	db := r.BaseDebian
	if db == nil || db.Suite != "sid" || db.Mirror != DefaultDebianMirror || db.Keyring != DefaultDebianKeyring || !db.AllowExpired ||
		strings.Join(db.Components, ",") != "main" || len(db.Packages) != 3 || r.Base != "" {
		t.Fatalf("debian base %+v", db)
	}
	if u := db.Users[0]; u.Name != "mastodon" || u.UID != 991 || u.GID != 991 || u.Home != "/opt/mastodon" || u.Shell != "/usr/sbin/nologin" {
		t.Errorf("user %+v", u)
	}
	if f := db.Files; len(f) != 2 || f[0].Symlink == "" || f[1].Content != "Etc/UTC\n" || f[1].Mode != 0o644 {
		t.Errorf("files %+v", f)
	}
	y := r.Build.Layers[0].Deps
	if y == nil || y.Manager != DepsYarn || y.Lockfile != "yarn.lock" || !y.Production || y.Workspaces[0] != "@mastodon/streaming" {
		t.Errorf("yarn deps %+v", y)
	}
	b := r.Build.Layers[1].Deps
	if b == nil || b.Manager != DepsBundler || b.Lockfile != "Gemfile.lock" || !b.PerGem || b.Registry != "https://gems.example/" || len(b.Without) != 2 {
		t.Errorf("bundler deps %+v", b)
	}

	for name, tc := range map[string]struct{ edit, want string }{
		"deps with network":   {"      run: bundle install --local", "      run: bundle install --local\n      network: host"},
		"bundler production":  {"without: [development, test]", "production: true"},
		"yarn groups":         {"production: true}", "production: true, without: [test]}"},
		"tool mismatch":       {"production: true}", "production: true, tool: npm@10.9.0}"},
		"registry credential": {"https://gems.example/", "https://u:tok@gems.example/"},
		"unknown manager":     {"manager: bundler", "manager: pip"},
		"bad package":         {"dash]", "Dash!]"},
		"no suite":            {"suite: sid", "mirror: https://deb.example/debian"},
		"user twice":          {"users: [{name: mastodon, uid: 991, home: /opt/mastodon}]", "users: [{name: m, uid: 1}, {name: m, uid: 2}]"},
	} {
		body := strings.Replace(hermeticRecipe, tc.edit, tc.want, 1)
		if body == hermeticRecipe {
			t.Fatalf("%s: edit did not apply", name)
		}
		_, err := Parse("r.yaml", ".", []byte(body), nil)
		if err == nil || !errors.Is(err, errs.ErrInvalidRecipe) || !strings.Contains(err.Error(), "r.yaml:") {
			t.Errorf("%s: got %v", name, err)
		} else if strings.Contains(err.Error(), "tok@") {
			t.Errorf("%s: error echoes a credential: %v", name, err)
		}
	}
}

func TestDeterministicHash(t *testing.T) {
	a, err := Parse("a.yaml", ".", []byte(nativeRecipe), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Parse("b.yaml", ".", []byte(nativeRecipe), nil)
	if a.SHA256 != b.SHA256 || len(a.SHA256) != 64 {
		t.Fatalf("hash %s %s", a.SHA256, b.SHA256)
	}
}

const baseForRecipe = `apiVersion: vmbuild/v1
name: streaming
upstream: {git: ./u, ref: main}
base:
  debian: {suite: sid, packages: [nodejs, dash], allowExpired: true}
build:
  dockerfile:
    path: streaming/Dockerfile
    baseFor: [node:24-trixie-slim, "docker.io/library/debian:latest"]
`

// TestDockerfileBaseFor: a Dockerfile's images replaced by the Debian
// base are kept as written, named as the frontend names its contexts,
// and make the recipe use its base; misuse is an error at the field.
func TestDockerfileBaseFor(t *testing.T) {
	r, err := Parse("r.yaml", ".", []byte(baseForRecipe), nil)
	if err != nil {
		t.Fatal(err)
	}
	df := r.Build.Dockerfile
	if strings.Join(df.BaseFor, ",") != "node:24-trixie-slim,docker.io/library/debian:latest" || df.BaseForLine != 9 || !r.NeedsBase() {
		t.Fatalf("baseFor %q line %d, needs base %v", df.BaseFor, df.BaseForLine, r.NeedsBase())
	}
	for ref, want := range map[string]string{
		"node:24-trixie-slim":                         "node:24-trixie-slim",
		"docker.io/library/node:24-trixie-slim":       "node:24-trixie-slim",
		"docker.io/library/debian:latest":             "debian",
		"debian":                                      "debian",
		"ghcr.io/owner/img:1":                         "ghcr.io/owner/img:1",
		"docker.io/ruby:3.4.6-slim-trixie":            "ruby:3.4.6-slim-trixie",
		"registry.example:5000/base/img:latest":       "registry.example:5000/base/img",
		"owner/img@sha256:" + strings.Repeat("a", 64): "owner/img@sha256:" + strings.Repeat("a", 64),
	} {
		if got := NamedContext(ref); got != want {
			t.Errorf("NamedContext(%q) = %q, want %q", ref, got, want)
		}
	}

	for name, tc := range map[string]struct {
		body string
		want []string
	}{
		"without a base": {
			strings.Replace(baseForRecipe, "base:\n  debian: {suite: sid, packages: [nodejs, dash], allowExpired: true}\n", "", 1),
			[]string{"r.yaml:7:", "build.dockerfile.baseFor: replaces images with the Debian base (base.debian), but the recipe has no base"},
		},
		"with an image base": {
			strings.Replace(baseForRecipe, "base:\n  debian: {suite: sid, packages: [nodejs, dash], allowExpired: true}\n", "base: busybox\n", 1),
			[]string{"r.yaml:8:", "build.dockerfile.baseFor:", "but the base is an image"},
		},
		"native mode": {
			strings.Replace(baseForRecipe, "  dockerfile:\n    path: streaming/Dockerfile\n    baseFor:", "  layers:\n    - name: a\n      run: x\n      outputs: [/a]\n      baseFor:", 1),
			[]string{"r.yaml:11:", "build.layers[0].baseFor: unknown field"},
		},
		"empty": {
			strings.Replace(baseForRecipe, `[node:24-trixie-slim, "docker.io/library/debian:latest"]`, "[]", 1),
			[]string{"r.yaml:9:14:", "build.dockerfile.baseFor: needs at least one image reference"},
		},
		"bad reference": {
			strings.Replace(baseForRecipe, "node:24-trixie-slim", "Node:24", 1),
			[]string{"r.yaml:9:15:", "build.dockerfile.baseFor[0]:", `"Node:24" is not a valid image reference`},
		},
		"unexpanded arg": {
			strings.Replace(baseForRecipe, "node:24-trixie-slim", `"node:${NODE}"`, 1),
			[]string{"r.yaml:9:", "build.dockerfile.baseFor[0]:", "build args expanded"},
		},
		"oci layout": {
			strings.Replace(baseForRecipe, "node:24-trixie-slim", "oci-layout://./x", 1),
			[]string{"r.yaml:9:", "build.dockerfile.baseFor[0]:", "as the Dockerfile writes it"},
		},
		"same image twice": {
			strings.Replace(baseForRecipe, `"docker.io/library/debian:latest"`, "docker.io/library/node:24-trixie-slim", 1),
			[]string{"r.yaml:9:", "build.dockerfile.baseFor[1]:", "names the same image as build.dockerfile.baseFor[0]"},
		},
		"scratch": {
			strings.Replace(baseForRecipe, "node:24-trixie-slim", "scratch", 1),
			[]string{"r.yaml:9:", "build.dockerfile.baseFor[0]:", "not an image the frontend lets a named context replace"},
		},
	} {
		if tc.body == baseForRecipe {
			t.Fatalf("%s: edit did not apply", name)
		}
		_, err := Parse("r.yaml", ".", []byte(tc.body), nil)
		if err == nil || !errors.Is(err, errs.ErrInvalidRecipe) {
			t.Errorf("%s: got %v", name, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q\n does not contain %q", name, err, w)
			}
		}
	}
}
