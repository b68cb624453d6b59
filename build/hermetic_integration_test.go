package build_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/fixture"
	"github.com/vmbuild/vmbuild/lock"
)

// The hermetic tests build on bases made of real Debian packages (sid's
// nodejs, trixie's ruby) and install real npm packages and gems built
// here, with no network in any step. The Debian indexes are dated: sid's
// InRelease has expired on these machines, so its recipes set
// allowExpired.

// commit writes files into the repository dir (creating it) and commits.
func commit(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	git := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
			"GIT_AUTHOR_DATE=2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE=2026-01-02T03:04:05Z")
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
		git("init", "-q", "-b", "main")
	}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("add", "-A")
	git("commit", "-q", "--allow-empty", "-m", "change")
	return git("rev-parse", "HEAD")
}

// hermetic writes recipe (with its upstream in ./up) into a new directory
// and returns the recipe's path.
func hermetic(t *testing.T, body string, files map[string]string) (dir, recipePath string) {
	t.Helper()
	dir = t.TempDir()
	commit(t, filepath.Join(dir, "up"), files)
	recipePath = filepath.Join(dir, "r.yaml")
	if err := os.WriteFile(recipePath, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, recipePath
}

// imageFile reads path from the image in an OCI layout (the last layer
// that has it wins).
func imageFile(t *testing.T, layout string, res *build.Result, want string) (string, bool) {
	t.Helper()
	var content string
	found := false
	for _, l := range res.Manifest.Layers {
		f, err := os.Open(filepath.Join(layout, "blobs", "sha256", l.Digest.Encoded()))
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if path.Clean("/"+h.Name) != want {
				continue
			}
			found = true
			if h.Typeflag == tar.TypeSymlink {
				content = "-> " + h.Linkname
				continue
			}
			b, _ := io.ReadAll(tr)
			content = string(b)
		}
		f.Close()
	}
	return content, found
}

func vertexRan(res *build.Result, prefix string) (ran, cached int) {
	for _, v := range res.Vertices {
		if strings.HasPrefix(v.Name, prefix) {
			if v.Cached {
				cached++
			} else {
				ran++
			}
		}
	}
	return ran, cached
}

const nodeBase = `base:
  debian:
    suite: sid
    packages: [nodejs, ca-certificates, dash]
    allowExpired: true
  users: [{name: app, uid: 991, home: /app}]
  groups: [{name: app, gid: 991}]
  files: [{path: /etc/timezone, content: "Etc/UTC\n"}]
`

// TestDebianBaseRunsNode: a base of sid's nodejs and its closure, made of
// pinned .debs alone, runs node in a layer on top (Node 24, as Mastodon's
// streaming server needs); it has the accounts, the CA bundle and the
// merged-/usr links a working system needs; and a build with no cache
// (every .deb fetched and unpacked again) gives the same digest.
func TestDebianBaseRunsNode(t *testing.T) {
	e := fixture.Start(t)
	_, path := hermetic(t, `apiVersion: vmbuild/v1
name: node-base
upstream: {git: ./up, ref: main}
platform: linux/amd64
`+nodeBase+`build:
  layers:
    - name: probe
      run: |
        node --version > /app/version
        node -e 'console.log(require("tls").rootCertificates.length > 100)' > /app/tls
      outputs: [/app/version, /app/tls]
`, map[string]string{"README": "x\n"})
	r, l := e.Lock(t, path, lock.Options{})
	if l.Debian == nil || l.Debian.Packages < 30 || !l.Debian.AllowExpired || l.Debian.InRelease.SignedBy == "" {
		t.Fatalf("debian pin %+v", l.Debian)
	}
	c := connect(t, e)
	ctx := context.Background()
	layout := filepath.Join(t.TempDir(), "oci")
	res, err := build.Build(ctx, r, l, opts(e, c, build.Output{OCIDir: layout}))
	if err != nil {
		t.Fatal(err)
	}
	for file, check := range map[string]func(string) bool{
		"/app/version":                        func(s string) bool { return strings.HasPrefix(s, "v24.") },
		"/app/tls":                            func(s string) bool { return s == "true\n" },
		"/etc/passwd":                         func(s string) bool { return strings.Contains(s, "app:x:991:991::/app:/usr/sbin/nologin") },
		"/etc/group":                          func(s string) bool { return strings.Contains(s, "app:x:991:") },
		"/etc/ssl/certs/ca-certificates.crt":  func(s string) bool { return strings.Count(s, "BEGIN CERTIFICATE") > 100 },
		"/lib64":                              func(s string) bool { return s == "-> usr/lib64" },
		"/etc/timezone":                       func(s string) bool { return s == "Etc/UTC\n" },
		"/usr/share/doc/nodejs/copyright":     func(s string) bool { return len(s) > 0 },
		"/usr/lib/x86_64-linux-gnu/libc.so.6": func(s string) bool { return len(s) > 0 },
	} {
		got, ok := imageFile(t, layout, res, file)
		if !ok || !check(got) {
			t.Errorf("%s in the image: %q (found %v)", file, trunc(got), ok)
		}
	}
	if len(res.Manifest.Layers) != 3 {
		t.Errorf("%d layers, want base, source and probe", len(res.Manifest.Layers))
	}

	// Cold: every fetch, unpack and step again.
	againLayout := filepath.Join(t.TempDir(), "oci")
	o := opts(e, c, build.Output{OCIDir: againLayout})
	o.NoCache = true
	again, err := build.Build(ctx, r, l, o)
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != res.Digest {
		t.Errorf("a build without cache gave %s, the first %s", again.Digest, res.Digest)
		for i := range res.Manifest.Layers {
			if i < len(again.Manifest.Layers) && res.Manifest.Layers[i].Digest != again.Manifest.Layers[i].Digest {
				t.Errorf("layer %d differs: %s, then %s", i, res.Manifest.Layers[i].Digest, again.Manifest.Layers[i].Digest)
			}
		}
		if res.Config.RootFS.DiffIDs != nil && fmt.Sprint(res.Config) != fmt.Sprint(again.Config) {
			t.Errorf("configs differ:\n%+v\n%+v", res.Config, again.Config)
		}
	}
	if ran, _ := vertexRan(again, "[vmbuild] base: unpack"); ran != l.Debian.Packages {
		t.Errorf("the cold build unpacked %d packages, want %d", ran, l.Debian.Packages)
	}
}

// TestDockerfileDebianBase: upstream's stock Dockerfile says FROM
// node:24-trixie-slim, an image no registry here serves; the recipe's
// Debian base replaces it as a named context. Lock pins no image, the
// build pulls none (the source policy denies any image the lock does not
// pin), the Dockerfile's RUN runs node from the base's .debs, the script
// patch ran in the same base, and the provenance lists no image.
func TestDockerfileDebianBase(t *testing.T) {
	e := fixture.Start(t)
	dir, path := hermetic(t, `apiVersion: vmbuild/v1
name: node-dockerfile
upstream: {git: ./up, ref: main}
platform: linux/amd64
`+nodeBase+`patches:
  - script: stamp.sh
build:
  dockerfile:
    baseFor: [docker.io/library/node:24-trixie-slim]
`, map[string]string{"Dockerfile": `FROM node:24-trixie-slim
COPY stamp /stamp
RUN node --version > /v && node -e 'console.log(process.env.PATH)' > /path
`})
	if err := os.WriteFile(filepath.Join(dir, "stamp.sh"), []byte("node -e 'console.log(\"patched by \" + process.version.slice(0, 3))' > stamp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, l := e.Lock(t, path, lock.Options{})
	if len(l.Images) != 0 || l.Base != nil || l.Frontend != nil || l.Debian == nil {
		t.Fatalf("lock: images %v, base %v, frontend %v, debian %v", l.Images, l.Base, l.Frontend, l.Debian)
	}
	c := connect(t, e)
	layout := filepath.Join(t.TempDir(), "oci")
	res, err := build.Build(context.Background(), r, l, opts(e, c, build.Output{OCIDir: layout}))
	if err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"/stamp": "patched by v24\n",
		"/path":  "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
	} {
		if got, ok := imageFile(t, layout, res, file); got != want {
			t.Errorf("%s in the image: %q (found %v), want %q", file, got, ok, want)
		}
	}
	if got, _ := imageFile(t, layout, res, "/v"); !strings.HasPrefix(got, "v24.") {
		t.Errorf("/v in the image: %q", got)
	}
	if got, _ := imageFile(t, layout, res, "/usr/share/doc/nodejs/copyright"); got == "" {
		t.Error("the image is not on the Debian base")
	}
	if len(res.Manifest.Layers) != 3 || len(res.Config.History) == 0 || !strings.HasPrefix(res.Config.History[0].CreatedBy, "vmbuild: base of ") {
		t.Errorf("%d layers (want base, COPY, RUN), history %+v", len(res.Manifest.Layers), res.Config.History)
	}

	// What publish records comes from the lock: no image pinned (the
	// replaced FROM is not a dependency), the Debian base pinned.
	if len(l.Images) != 0 || l.Debian == nil || l.Base != nil {
		t.Errorf("lock: images %v, debian %v, base %v", l.Images, l.Debian, l.Base)
	}
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// npmProxy serves the npm registry's tarballs from loopback, fetching
// each from registry.npmjs.org once; tamper replaces a package's bytes.
type npmProxy struct {
	*httptest.Server
	mu      sync.Mutex
	cache   map[string][]byte
	tamper  map[string]bool
	fetched []string
}

func newNPMProxy(t *testing.T) *npmProxy {
	p := &npmProxy{cache: map[string][]byte{}, tamper: map[string]bool{}}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		b, ok := p.cache[r.URL.Path]
		if !ok {
			resp, err := http.Get("https://registry.npmjs.org" + r.URL.Path)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				http.Error(w, resp.Status, resp.StatusCode)
				return
			}
			if b, err = io.ReadAll(resp.Body); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			p.cache[r.URL.Path] = b
		}
		p.fetched = append(p.fetched, r.URL.Path)
		if p.tamper[r.URL.Path] {
			b = append(append([]byte(nil), b...), 0)
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(p.Close)
	return p
}

// npmApp is a real package.json and package-lock.json (made by npm 11):
// ms and debug, is-number as a dev dependency.
var npmApp = map[string]string{
	"package.json": `{
  "name": "app",
  "version": "1.0.0",
  "private": true,
  "packageManager": "npm@10.9.2",
  "dependencies": {"debug": "4.4.1", "ms": "2.1.3"},
  "devDependencies": {"is-number": "7.0.0"}
}
`,
	"package-lock.json": `{
  "name": "app",
  "version": "1.0.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {
    "": {
      "name": "app",
      "version": "1.0.0",
      "dependencies": {"debug": "4.4.1", "ms": "2.1.3"},
      "devDependencies": {"is-number": "7.0.0"}
    },
    "node_modules/debug": {
      "version": "4.4.1",
      "resolved": "https://registry.npmjs.org/debug/-/debug-4.4.1.tgz",
      "integrity": "sha512-KcKCqiftBJcZr++7ykoDIEwSa3XWowTfNPo92BYxjXiyYEVrUQh2aLyhxBCwww+heortUFxEJYcRzosstTEBYQ==",
      "dependencies": {"ms": "^2.1.3"},
      "engines": {"node": ">=6.0"}
    },
    "node_modules/is-number": {
      "version": "7.0.0",
      "resolved": "https://registry.npmjs.org/is-number/-/is-number-7.0.0.tgz",
      "integrity": "sha512-41Cifkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8ANv0004MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng==",
      "dev": true,
      "engines": {"node": ">=0.12.0"}
    },
    "node_modules/ms": {
      "version": "2.1.3",
      "resolved": "https://registry.npmjs.org/ms/-/ms-2.1.3.tgz",
      "integrity": "sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA=="
    }
  }
}
`,
	"index.js": "console.log(require('ms')(60000), typeof require('debug'))\n",
}

// TestNpmDepsOffline: real npm packages, pinned by the lock from
// package-lock.json (integrity checked), fetched by BuildKit by checksum,
// installed by the pinned npm with no network; the dev dependency is not
// even fetched. Then the registry serves other bytes for ms: the build
// fails naming the package, URL and both digests, and writes no image.
func TestNpmDepsOffline(t *testing.T) {
	e := fixture.Start(t)
	proxy := newNPMProxy(t)
	_, path := hermetic(t, `apiVersion: vmbuild/v1
name: npm-app
upstream: {git: ./up, ref: main}
platform: linux/amd64
`+nodeBase+`build:
  layers:
    - name: modules
      inputs: [package.json, package-lock.json]
      deps: {manager: npm, production: true, registry: "`+proxy.URL+`"}
      run: |
        npm ci --omit=dev --ignore-scripts
        node -e 'console.log(require("ms")(60000))' > /app/ms.txt
      outputs: [/app/node_modules, /app/ms.txt]
image:
  cmd: [node, index.js]
`, npmApp)
	r, l := e.Lock(t, path, lock.Options{})
	ld, ok := l.DepsLock.LayerDeps("modules")
	if !ok || len(ld.Packages) != 2 || ld.Tool == nil || ld.Tool.Name != "npm" {
		t.Fatalf("pinned %+v", ld)
	}
	for _, p := range ld.Packages {
		if !strings.HasPrefix(p.URL, proxy.URL+"/") || p.Integrity == "" {
			t.Errorf("pin %+v: not from the configured registry, or without the lockfile's integrity", p)
		}
	}
	c := connect(t, e)
	ctx := context.Background()
	layout := filepath.Join(t.TempDir(), "oci")
	res, err := build.Build(ctx, r, l, opts(e, c, build.Output{OCIDir: layout}))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := imageFile(t, layout, res, "/app/ms.txt"); got != "1m\n" {
		t.Errorf("ms in the image says %q", got)
	}
	if _, ok := imageFile(t, layout, res, "/app/node_modules/is-number/package.json"); ok {
		t.Error("the dev dependency was installed")
	}

	// Tampered: the registry now serves other bytes for ms.
	proxy.mu.Lock()
	proxy.tamper["/ms/-/ms-2.1.3.tgz"] = true
	proxy.mu.Unlock()
	out := filepath.Join(t.TempDir(), "oci")
	o := opts(e, c, build.Output{OCIDir: out})
	o.NoCache = true
	_, err = build.Build(ctx, r, l, o)
	var he *deps.HashError
	if !errors.As(err, &he) || !errors.Is(err, errs.ErrHashMismatch) {
		t.Fatalf("a tampered download: %v", err)
	}
	if he.Package != "ms@2.1.3" || he.URL != proxy.URL+"/ms/-/ms-2.1.3.tgz" || he.Expected != "sha256:"+ms213(ld) || !strings.HasPrefix(he.Actual, "sha256:") || he.Actual == he.Expected {
		t.Errorf("hash error %+v", he)
	}
	if _, err := os.Stat(filepath.Join(out, "index.json")); err == nil {
		t.Error("a failed build wrote an image")
	}
}

func ms213(ld *lock.LayerDeps) string {
	for _, p := range ld.Packages {
		if p.Name == "ms" {
			return p.SHA256
		}
	}
	return ""
}

// TestYarnV1Offline: a Yarn v1 lockfile, installed by the pinned Yarn 1
// with --offline from the mirror of pinned tarballs.
func TestYarnV1Offline(t *testing.T) {
	e := fixture.Start(t)
	files := map[string]string{
		"package.json": `{"name": "app", "version": "1.0.0", "private": true, "packageManager": "yarn@1.22.22",
  "dependencies": {"debug": "4.4.1"}, "devDependencies": {"is-number": "7.0.0"}}
`,
		"yarn.lock": `# THIS IS AN AUTOGENERATED FILE. DO NOT EDIT THIS FILE DIRECTLY.
# yarn lockfile v1


debug@4.4.1:
  version "4.4.1"
  resolved "https://registry.yarnpkg.com/debug/-/debug-4.4.1.tgz"
  integrity sha512-KcKCqiftBJcZr++7ykoDIEwSa3XWowTfNPo92BYxjXiyYEVrUQh2aLyhxBCwww+heortUFxEJYcRzosstTEBYQ==
  dependencies:
    ms "^2.1.3"

is-number@7.0.0:
  version "7.0.0"
  resolved "https://registry.yarnpkg.com/is-number/-/is-number-7.0.0.tgz"
  integrity sha512-41Cifkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8ANv0004MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng==

ms@^2.1.3:
  version "2.1.3"
  resolved "https://registry.yarnpkg.com/ms/-/ms-2.1.3.tgz"
  integrity sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA==
`,
	}
	_, path := hermetic(t, `apiVersion: vmbuild/v1
name: yarn1-app
upstream: {git: ./up, ref: main}
platform: linux/amd64
`+nodeBase+`build:
  layers:
    - name: modules
      inputs: [package.json, yarn.lock]
      deps: {manager: yarn, production: true}
      run: |
        yarn install --frozen-lockfile --offline --production --non-interactive
        node -e 'console.log(require("debug")("x").namespace)' > /app/debug.txt
      outputs: [/app/node_modules, /app/debug.txt]
`, files)
	r, l := e.Lock(t, path, lock.Options{})
	ld, _ := l.DepsLock.LayerDeps("modules")
	if ld == nil || ld.Manager != "yarn-v1" || ld.Tool == nil || ld.Tool.Name != "yarn" {
		t.Fatalf("pinned %+v", ld)
	}
	layout := filepath.Join(t.TempDir(), "oci")
	res, err := build.Build(context.Background(), r, l, opts(e, connect(t, e), build.Output{OCIDir: layout}))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := imageFile(t, layout, res, "/app/debug.txt"); got != "x\n" {
		t.Errorf("debug in the image says %q", got)
	}
}

// testGem is a tiny gem source built with the host's ruby.
type testGem struct {
	name, version, spec string
	files               map[string]string
}

func gemsV(middleVersion string) []testGem {
	return []testGem{
		{name: "tinydep", version: "1.0.0", files: map[string]string{"lib/tinydep.rb": "module Tinydep\n  def self.mark = \"TINYDEP_OK\"\nend\n"}},
		// A C extension whose extconf.rb requires its dependency: its
		// step must see tinydep's install.
		{name: "cext", version: "0.2.0", spec: "  s.extensions = [\"ext/cext/extconf.rb\"]\n  s.add_dependency \"tinydep\", \"~> 1.0\"\n", files: map[string]string{
			"ext/cext/extconf.rb": "require \"mkmf\"\nrequire \"tinydep\"\n$defs << %(-DCEXT_MARK=\\\\\"#{Tinydep.mark}\\\\\")\ncreate_makefile(\"cext/cext\")\n",
			"ext/cext/cext.c":     "#include <ruby.h>\nstatic VALUE hello(VALUE self) { return rb_str_new_cstr(CEXT_MARK); }\nvoid Init_cext(void) {\n  VALUE m = rb_define_module(\"Cext\");\n  rb_define_singleton_method(m, \"hello\", hello, 0);\n}\n",
			"lib/cext.rb":         "require \"cext/cext\"\n",
		}},
		{name: "middle", version: middleVersion, spec: "  s.add_dependency \"cext\", \">= 0.2\"\n", files: map[string]string{
			"lib/middle.rb": "require \"cext\"\nmodule Middle\n  def self.run = \"middle " + middleVersion + ": #{Cext.hello}\"\nend\n",
		}},
		{name: "devonly", version: "1.0.0", files: map[string]string{"lib/devonly.rb": "module Devonly; end\n"}},
	}
}

// buildGems builds the gems into dir/gems (the gem source's layout).
func buildGems(t *testing.T, dir string, gems []testGem) {
	t.Helper()
	if _, err := exec.LookPath("gem"); err != nil {
		t.Fatalf("gem is not installed (apt-get install ruby; hack/install-deps.sh does): %v", err)
	}
	out := filepath.Join(dir, "gems")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, g := range gems {
		file := g.name + "-" + g.version + ".gem"
		if _, err := os.Stat(filepath.Join(out, file)); err == nil {
			continue
		}
		src := filepath.Join(dir, "src", g.name+"-"+g.version)
		var names []string
		for name, content := range g.files {
			names = append(names, fmt.Sprintf("%q", name))
			p := filepath.Join(src, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		spec := fmt.Sprintf("Gem::Specification.new do |s|\n  s.name = %q\n  s.version = %q\n  s.summary = \"test\"\n  s.authors = [\"vmbuild\"]\n  s.license = \"MIT\"\n  s.files = [%s]\n%send\n",
			g.name, g.version, strings.Join(names, ", "), g.spec)
		if err := os.WriteFile(filepath.Join(src, g.name+".gemspec"), []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("gem", "build", "--silent", g.name+".gemspec")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "HOME="+dir, "SOURCE_DATE_EPOCH=1700000000")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("gem build %s: %v\n%s", g.name, err, b)
		}
		if err := os.Rename(filepath.Join(src, file), filepath.Join(out, file)); err != nil {
			t.Fatal(err)
		}
	}
}

func gemfileLock(source, middle string) string {
	return fmt.Sprintf(`GEM
  remote: %s/
  specs:
    cext (0.2.0)
      tinydep (~> 1.0)
    devonly (1.0.0)
    middle (%s)
      cext (>= 0.2)
    tinydep (1.0.0)

PLATFORMS
  ruby

DEPENDENCIES
  devonly
  middle

BUNDLED WITH
   2.6.7
`, source, middle)
}

// TestBundlerPerGemOffline: gems (one a C extension that needs another at
// build time) from a loopback gem source, pinned by the lock, installed
// Nix-style one step per gem on a trixie ruby base of Debian packages,
// then `bundle install --local` finds them all, with no network. A
// one-gem bump fetches and installs that gem only: the C extension's
// compile is a cache hit.
func TestBundlerPerGemOffline(t *testing.T) {
	e := fixture.Start(t)
	work := t.TempDir()
	buildGems(t, work, gemsV("1.0.0"))
	srv := httptest.NewServer(http.FileServer(http.Dir(work)))
	t.Cleanup(srv.Close)
	gemfile := "source \"" + srv.URL + "/\"\ngem \"middle\"\ngroup :development do\n  gem \"devonly\"\nend\n"
	dir, path := hermetic(t, `apiVersion: vmbuild/v1
name: gems-app
upstream: {git: ./up, ref: main}
platform: linux/amd64
base:
  debian:
    suite: trixie
    packages: [ruby, ruby-dev, bundler, gcc, make, libc6-dev, dash, coreutils]
build:
  layers:
    - name: gems
      inputs: [Gemfile, Gemfile.lock]
      deps: {manager: bundler, without: [development]}
      run: |
        bundle install --local
        bundle exec ruby -e 'require "middle"; puts Middle.run' > /app/run.txt
      outputs: [/usr/local/bundle, /app/run.txt]
`, map[string]string{"Gemfile": gemfile, "Gemfile.lock": gemfileLock(srv.URL, "1.0.0")})
	r, l := e.Lock(t, path, lock.Options{})
	ld, _ := l.DepsLock.LayerDeps("gems")
	if ld == nil || len(ld.Packages) != 3 {
		t.Fatalf("pinned %+v (want tinydep, cext, middle; not the development group's devonly)", ld)
	}
	c := connect(t, e)
	ctx := context.Background()
	layout := filepath.Join(t.TempDir(), "oci")
	res, err := build.Build(ctx, r, l, opts(e, c, build.Output{OCIDir: layout}))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := imageFile(t, layout, res, "/app/run.txt"); got != "middle 1.0.0: TINYDEP_OK\n" {
		t.Errorf("the app says %q", got)
	}

	// Bump middle: one fetch, one gem install; cext is not compiled again.
	buildGems(t, work, gemsV("1.0.1"))
	commit(t, filepath.Join(dir, "up"), map[string]string{"Gemfile.lock": gemfileLock(srv.URL, "1.0.1")})
	r, l = e.Lock(t, path, lock.Options{Update: true})
	res, err = build.Build(ctx, r, l, opts(e, c, build.Output{OCIDir: filepath.Join(t.TempDir(), "oci")}))
	if err != nil {
		t.Fatal(err)
	}
	if ran, _ := vertexRan(res, "[vmbuild] fetch gem"); ran != 1 {
		t.Errorf("the one-gem bump fetched %d gems, want 1", ran)
	}
	for _, g := range []string{"tinydep", "cext"} {
		if ran, cached := vertexRan(res, "[vmbuild] layer gems: gem install "+g); ran != 0 || cached != 1 {
			t.Errorf("gem install %s after bumping middle: ran %d, cached %d", g, ran, cached)
		}
	}
	if ran, _ := vertexRan(res, "[vmbuild] layer gems: gem install middle"); ran != 1 {
		t.Errorf("gem install middle did not run after its bump")
	}
}

// TestNetworkHostLayer: a layer that opts into network: host reaches the
// host's loopback (the entitlement is asked for); the same layer without
// it has no network.
func TestNetworkHostLayer(t *testing.T) {
	e := fixture.Start(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "from the host") }))
	t.Cleanup(srv.Close)
	body := func(network string) string {
		return `apiVersion: vmbuild/v1
name: net
upstream: {git: ./up, ref: main}
platform: linux/amd64
base: ` + e.Base + `
build:
  layers:
    - name: fetch
      network: ` + network + `
      run: mkdir -p /out && wget -q -O /out/got ` + srv.URL + `/
      outputs: [/out]
`
	}
	_, path := hermetic(t, body("host"), map[string]string{"README": "x\n"})
	r, l := e.Lock(t, path, lock.Options{})
	if got := r.NetworkedLayers(); len(got) != 1 || got[0] != "fetch" {
		t.Fatalf("networked layers %v", got)
	}
	c := connect(t, e)
	layout := filepath.Join(t.TempDir(), "oci")
	res, err := build.Build(context.Background(), r, l, opts(e, c, build.Output{OCIDir: layout}))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := imageFile(t, layout, res, "/out/got"); got != "from the host" {
		t.Errorf("fetched %q", got)
	}

	_, path = hermetic(t, body("none"), map[string]string{"README": "x\n"})
	r, l = e.Lock(t, path, lock.Options{})
	_, err = build.Build(context.Background(), r, l, opts(e, c, build.Output{OCIDir: filepath.Join(t.TempDir(), "oci")}))
	if !errors.Is(err, errs.ErrBuildFailed) {
		t.Errorf("without network: host the layer reached the host: %v", err)
	}
}
