package llb

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/solver/pb"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/recipe"
)

const nativeYAML = `apiVersion: vmbuild/v1
name: demo
upstream: {git: "git://127.0.0.1:9418/demo.git", ref: main}
base: registry.local:5000/busybox:1
platform: linux/amd64
patches:
  - file: fix.patch
  - script: edit.sh
build:
  layers:
    - name: bundle
      inputs: [Gemfile, Gemfile.lock]
      run: bundle install
      outputs: [/usr/local/bundle]
      env: {BUNDLE_JOBS: "4"}
      cache: [/root/.cache/bundle]
    - name: assets
      inputs: ["app/javascript/**", package.json]
      run: yarn build
      outputs: [/app/public/packs]
      needs: [bundle]
image:
  workdir: /app
  env: {RAILS_ENV: production}
  cmd: [rails, s]
  expose: [3000]
`

func fixture(t *testing.T, body string) (*recipe.Recipe, *lock.Lock) {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "fix.patch"), []byte("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "edit.sh"), []byte("sed -i s/a/b/ x\n"), 0o644)
	p := filepath.Join(dir, "demo.yaml")
	os.WriteFile(p, []byte(body), 0o644)
	r, err := recipe.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	l := lock.Skeleton(r)
	l.Upstream.Commit, l.Upstream.CommitTime = strings.Repeat("ab", 20), time.Unix(1700000000, 0).UTC()
	l.Base = &lock.ImagePin{Ref: "registry.local:5000/busybox:1", Digest: "sha256:" + strings.Repeat("1", 64)}
	return r, l
}

func ops(t *testing.T, g *Graph) []*pb.Op {
	t.Helper()
	def, err := g.Definition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []*pb.Op
	for _, b := range def.Def {
		var op pb.Op
		if err := op.UnmarshalVT(b); err != nil {
			t.Fatal(err)
		}
		out = append(out, &op)
	}
	return out
}

// TestDeterministic: the same recipe and lock marshal to byte-identical
// definitions, also when parsed and built independently.
func TestDeterministic(t *testing.T) {
	var defs [][]byte
	for i := 0; i < 3; i++ {
		r, l := fixture(t, nativeYAML)
		g, err := Build(r, l, Options{})
		if err != nil {
			t.Fatal(err)
		}
		def, err := g.Definition(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		for _, op := range def.Def {
			buf.Write(op)
		}
		defs = append(defs, buf.Bytes())
		if i > 0 && !bytes.Equal(defs[0], defs[i]) {
			t.Fatalf("definition %d differs from the first", i)
		}
		if d := Digest(def); d != Digest(def) || d == "" {
			t.Fatal("digest unstable")
		}
	}
	// A different commit gives a different definition.
	r, l := fixture(t, nativeYAML)
	l.Upstream.Commit = strings.Repeat("cd", 20)
	g, _ := Build(r, l, Options{})
	def, _ := g.Definition(context.Background())
	var buf bytes.Buffer
	for _, op := range def.Def {
		buf.Write(op)
	}
	if bytes.Equal(buf.Bytes(), defs[0]) {
		t.Fatal("commit does not reach the definition")
	}
}

// TestEpochNotInSteps: the commit time must not enter any step definition
// (it would bust every cache on every commit); only the image config
// carries it.
func TestEpochNotInSteps(t *testing.T) {
	r1, l1 := fixture(t, nativeYAML)
	r2, l2 := fixture(t, nativeYAML)
	l2.Upstream.CommitTime = l1.Upstream.CommitTime.Add(time.Hour)
	g1, _ := Build(r1, l1, Options{})
	g2, _ := Build(r2, l2, Options{})
	ctx := context.Background()
	p := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	for i, st := range g1.Steps {
		if st.Kind == StepSourceLayer {
			continue // the one op that carries the commit time: new every commit anyway
		}
		d1, err1 := VertexDigest(ctx, st.State, p)
		d2, err2 := VertexDigest(ctx, g2.Steps[i].State, p)
		if err1 != nil || err2 != nil || d1 != d2 {
			t.Errorf("step %s: the commit time changed its definition", st.ID)
		}
	}
	if g1.Config.Created.Equal(*g2.Config.Created) {
		t.Fatal("commit time did not reach the image config")
	}
}

// TestLayerInputsExact: the bundle layer sees exactly its declared inputs.
func TestLayerInputsExact(t *testing.T) {
	r, l := fixture(t, nativeYAML)
	g, err := Build(r, l, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var copies [][]string
	var execs []*pb.ExecOp
	for _, op := range ops(t, g) {
		if f := op.GetFile(); f != nil {
			for _, a := range f.Actions {
				if c := a.GetCopy(); c != nil && len(c.IncludePatterns) > 0 {
					copies = append(copies, c.IncludePatterns)
				}
			}
		}
		if e := op.GetExec(); e != nil {
			execs = append(execs, e)
		}
	}
	want := map[string]bool{"Gemfile,Gemfile.lock": false, "app/javascript/**,package.json": false}
	for _, c := range copies {
		k := strings.Join(c, ",")
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected input selection %v", c)
		}
		want[k] = true
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("no copy selects exactly %s", k)
		}
	}
	var bundle *pb.ExecOp
	for _, e := range execs {
		if strings.Contains(strings.Join(e.Meta.Args, " "), "bundle install") {
			bundle = e
		}
	}
	if bundle == nil {
		t.Fatal("no bundle exec")
	}
	if bundle.Network != pb.NetMode_NONE || bundle.Meta.Cwd != "/app" {
		t.Errorf("bundle exec network=%v cwd=%s", bundle.Network, bundle.Meta.Cwd)
	}
	if !contains(bundle.Meta.Env, "BUNDLE_JOBS=4") {
		t.Errorf("env %v", bundle.Meta.Env)
	}
	for _, e := range bundle.Meta.Env {
		if strings.HasPrefix(e, "SOURCE_DATE_EPOCH=") || strings.HasPrefix(e, "RAILS_ENV=") {
			t.Errorf("unexpected env %s in a build step", e)
		}
	}
	var cache *pb.Mount
	for _, m := range bundle.Mounts {
		if m.Dest == "/root/.cache/bundle" {
			cache = m
		}
	}
	if cache == nil || cache.MountType != pb.MountType_CACHE || cache.CacheOpt.ID != "vmbuild/demo/bundle/root/.cache/bundle" {
		t.Errorf("cache mount %+v", cache)
	}
	// Independent layers: the image merges base, source, and each layer's
	// outputs.
	var merges []*pb.MergeOp
	for _, op := range ops(t, g) {
		if m := op.GetMerge(); m != nil {
			merges = append(merges, m)
		}
	}
	last := ops(t, g)
	var imageMerge *pb.Op
	for _, op := range last {
		if op.GetMerge() != nil && len(op.GetMerge().Inputs) == 4 {
			imageMerge = op
		}
	}
	if imageMerge == nil {
		t.Fatalf("no 4-way image merge among %d merges", len(merges))
	}
}

func TestPatchSteps(t *testing.T) {
	r, l := fixture(t, nativeYAML)
	g, err := Build(r, l, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var diff, script *pb.ExecOp
	for _, op := range ops(t, g) {
		if e := op.GetExec(); e != nil {
			switch {
			case len(e.Meta.Args) > 1 && e.Meta.Args[1] == "apply-diff":
				diff = e
			case len(e.Meta.Args) > 1 && e.Meta.Args[1] == "run-script":
				script = e
			}
		}
	}
	if diff == nil || script == nil {
		t.Fatal("patch steps missing")
	}
	for name, e := range map[string]*pb.ExecOp{"diff": diff, "script": script} {
		if e.Network != pb.NetMode_NONE {
			t.Errorf("%s patch has network", name)
		}
		if !e.Mounts[0].Readonly {
			t.Errorf("%s patch has a writable root", name)
		}
	}
	if !contains(diff.Meta.Args, "--patch=/vmbuild-patch/fix.patch") || !contains(script.Meta.Args, "--shell=/bin/sh") {
		t.Errorf("args: %v / %v", diff.Meta.Args, script.Meta.Args)
	}
	if script.Meta.Cwd != srcMount {
		t.Errorf("script cwd %s", script.Meta.Cwd)
	}
}

func TestDockerfileMode(t *testing.T) {
	body := `apiVersion: vmbuild/v1
name: m
upstream: {git: "https://github.com/mastodon/mastodon.git", ref: main}
build:
  dockerfile: {target: mastodon, args: {RUBY_VERSION: "3.4.5"}}
`
	r, l := fixture(t, body)
	l.Base = nil
	l.Frontend = &lock.ImagePin{Ref: "docker.io/docker/dockerfile:1.18", Digest: "sha256:" + strings.Repeat("2", 64)}
	l.Images = []lock.ImagePin{{Ref: "docker.io/library/ruby:3.4.5-slim", Digest: "sha256:" + strings.Repeat("3", 64)}}
	g, err := Build(r, l, Options{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	d := g.Dockerfile
	if d.Frontend != "gateway.v0" || d.FrontendOpt["source"] != "docker.io/docker/dockerfile:1.18@sha256:"+strings.Repeat("2", 64) {
		t.Errorf("frontend %s %v", d.Frontend, d.FrontendOpt)
	}
	if d.FrontendOpt["build-arg:SOURCE_COMMIT"] != l.Upstream.Commit || d.FrontendOpt["target"] != "mastodon" || d.FrontendOpt["build-arg:RUBY_VERSION"] != "3.4.5" {
		t.Errorf("opts %v", d.FrontendOpt)
	}
	if _, ok := d.FrontendOpt["build-arg:SOURCE_DATE_EPOCH"]; ok {
		t.Error("epoch passed as a build arg without opt-in")
	}
	if a := Annotations(r, l); a[ocispec.AnnotationSource] != "https://github.com/mastodon/mastodon.git" || a[ocispec.AnnotationRevision] != l.Upstream.Commit || a[ocispec.AnnotationCreated] != "2023-11-14T22:13:20Z" {
		t.Errorf("annotations %v", a)
	}
	pol := SourcePolicy(l)
	if len(pol.Rules) != 5 || pol.Rules[0].Action.String() != "DENY" {
		t.Errorf("policy %v", pol)
	}
	if !strings.Contains(g.DOT(), "frontend docker.io/docker/dockerfile:1.18@sha256:") {
		t.Errorf("dot:\n%s", g.DOT())
	}
}

// TestDockerfileDebianBase: a Debian base replaces the Dockerfile's
// images as named contexts, exactly as `docker buildx build
// --build-context` passes them: the frontend gets the base as an input,
// each replaced name (in the frontend's familiar form) points at it, and
// the input's metadata is the base's image config. Script patches run in
// the same base.
func TestDockerfileDebianBase(t *testing.T) {
	body := `apiVersion: vmbuild/v1
name: m
upstream: {git: "https://github.com/mastodon/mastodon.git", ref: main}
platform: linux/amd64
base:
  debian: {suite: sid, packages: [nodejs, dash]}
patches:
  - script: edit.sh
build:
  dockerfile:
    path: streaming/Dockerfile
    baseFor: [docker.io/library/node:24-trixie-slim, "debian:latest", ghcr.io/o/i:1]
`
	r, l := fixture(t, body)
	l.Base = nil
	l.Images = []lock.ImagePin{{Ref: "docker.io/library/ruby:3.4.5-slim", Digest: "sha256:" + strings.Repeat("3", 64)}}
	l.Debian = &lock.DebianPin{Mirror: recipe.DefaultDebianMirror, Suite: "sid", Components: []string{"main"}, Architecture: "amd64",
		InRelease: lock.InReleasePin{URL: recipe.DefaultDebianMirror + "/dists/sid/InRelease", SHA256: strings.Repeat("4", 64)}, Packages: 2}
	l.DepsLock = &lock.DepsLock{Version: lock.DepsVersion, Base: &lock.BasePackages{Packages: []deps.Package{
		{Name: "nodejs", Version: "24.1", Platform: "amd64", URL: recipe.DefaultDebianMirror + "/pool/main/n/nodejs/nodejs_24.1_amd64.deb", SHA256: strings.Repeat("5", 64), Path: "pool/main/n/nodejs/nodejs_24.1_amd64.deb"},
		{Name: "dash", Version: "0.5", Platform: "amd64", URL: recipe.DefaultDebianMirror + "/pool/main/d/dash/dash_0.5_amd64.deb", SHA256: strings.Repeat("6", 64), Path: "pool/main/d/dash/dash_0.5_amd64.deb"},
	}}}
	plat := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	g, err := Build(r, l, Options{Platform: plat})
	if err != nil {
		t.Fatal(err)
	}
	d := g.Dockerfile
	if len(d.Inputs) != 3 || d.Frontend != "dockerfile.v0" {
		t.Fatalf("frontend %s inputs %v", d.Frontend, d.Inputs)
	}
	for _, name := range []string{"node:24-trixie-slim", "debian", "ghcr.io/o/i:1"} {
		if got := d.FrontendOpt["context:"+name]; got != "input:"+BaseInput {
			t.Errorf("context:%s = %q", name, got)
		}
	}
	var contexts []string
	for k := range d.FrontendOpt {
		if strings.HasPrefix(k, "context:") {
			contexts = append(contexts, k)
		}
	}
	if len(contexts) != 3 {
		t.Errorf("named contexts %v", contexts)
	}

	// The input's metadata: the base's config, as the frontend reads it.
	var md map[string][]byte
	if err := json.Unmarshal([]byte(d.FrontendOpt["input-metadata:"+BaseInput]), &md); err != nil {
		t.Fatal(err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(md["containerimage.config"], &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" || !contains(cfg.Config.Env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") ||
		len(cfg.History) != 1 || !strings.Contains(cfg.History[0].CreatedBy, "base of 2 Debian packages from "+recipe.DefaultDebianMirror+" sid (amd64)") ||
		!cfg.History[0].Created.Equal(l.Upstream.CommitTime) {
		t.Errorf("base config %+v", cfg)
	}

	if dot := g.DOT(); !strings.Contains(dot, `base -> dockerfile [label="as docker.io/library/node:24-trixie-slim\n as debian:latest\n as ghcr.io/o/i:1"]`) {
		t.Errorf("dot:\n%s", dot)
	}

	// The base input is the Debian base: each .deb fetched by checksum and
	// unpacked by the helper, no image pulled.
	def, err := d.Inputs[BaseInput].Marshal(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var fetched, unpacked int
	for _, b := range def.Def {
		var op pb.Op
		if err := op.UnmarshalVT(b); err != nil {
			t.Fatal(err)
		}
		if src := op.GetSource(); src != nil {
			switch {
			case strings.HasPrefix(src.Identifier, "https://") && src.Attrs[pb.AttrHTTPChecksum] != "":
				fetched++
			case strings.HasPrefix(src.Identifier, "docker-image://"):
				t.Errorf("the base pulls %s", src.Identifier)
			}
		}
		if e := op.GetExec(); e != nil && contains(e.Meta.Args, "deb-unpack") {
			unpacked++
		}
	}
	if fetched != 2 || unpacked != 2 {
		t.Errorf("base fetched %d .debs, unpacked %d", fetched, unpacked)
	}

	// The script patch runs in the same base: its root is the base input.
	bdig, err := VertexDigest(context.Background(), d.Inputs[BaseInput], plat)
	if err != nil {
		t.Fatal(err)
	}
	var scriptRoot string
	for _, op := range ops(t, g) {
		if e := op.GetExec(); e != nil && contains(e.Meta.Args, "run-script") {
			for _, m := range e.Mounts {
				if m.Dest == "/" {
					scriptRoot = op.Inputs[m.Input].Digest
				}
			}
		}
	}
	if scriptRoot != bdig.String() {
		t.Errorf("the script patch's root is %q, the base %s", scriptRoot, bdig)
	}

	// Without baseFor, the Dockerfile's images are the registry's.
	r2, l2 := fixture(t, strings.Replace(strings.Replace(body, "    baseFor: [docker.io/library/node:24-trixie-slim, \"debian:latest\", ghcr.io/o/i:1]\n", "", 1), "patches:\n  - script: edit.sh\n", "", 1))
	l2.Base, l2.Debian, l2.DepsLock = nil, l.Debian, l.DepsLock
	g2, err := Build(r2, l2, Options{Platform: plat})
	if err != nil {
		t.Fatal(err)
	}
	if len(g2.Dockerfile.Inputs) != 2 || g2.Dockerfile.FrontendOpt["input-metadata:"+BaseInput] != "" {
		t.Errorf("without baseFor: inputs %v opts %v", g2.Dockerfile.Inputs, g2.Dockerfile.FrontendOpt)
	}
}

// TestNoCredentialsPublished: recipes refuse credentials in URLs, but a
// library caller can build a Recipe by hand. Whatever the URL holds, the
// annotations, labels, history and step titles carry none of it.
func TestNoCredentialsPublished(t *testing.T) {
	for _, u := range []string{
		"https://host.example/app.git?private_token=SECRET",
		"https://user:p@ss-SECRET@host.example/app.git",
		"https://SECRET@host.example/app.git#access_token=SECRET",
	} {
		r, l := fixture(t, nativeYAML)
		r.Upstream.Git = u
		g, err := Build(r, l, Options{})
		if err != nil {
			t.Fatal(err)
		}
		published := fmt.Sprint(Annotations(r, l), g.Config.Config.Labels, g.Config.History, g.DOT())
		for _, st := range g.Steps {
			published += st.Title
		}
		if strings.Contains(published, "SECRET") || strings.Contains(published, "ss-") {
			t.Errorf("%s: published text keeps a credential:\n%s", u, published)
		}
		if a := Annotations(r, l)[ocispec.AnnotationSource]; a != "https://host.example/app.git" {
			t.Errorf("%s: source annotation %q", u, a)
		}
	}
}

func TestDOT(t *testing.T) {
	r, l := fixture(t, nativeYAML)
	g, _ := Build(r, l, Options{})
	dot := g.DOT()
	for _, want := range []string{"digraph \"demo\"", "layer_bundle -> layer_assets [label=\"needs\"]", "patched -> layer_bundle [label=\"Gemfile\\nGemfile.lock\"]", "patch 2: edit.sh"} {
		if !strings.Contains(dot, want) {
			t.Errorf("DOT lacks %q:\n%s", want, dot)
		}
	}
}

func TestImageConfig(t *testing.T) {
	r, l := fixture(t, nativeYAML)
	base := &ocispec.Image{Config: ocispec.ImageConfig{Env: []string{"PATH=/bin", "LANG=C"}, Cmd: []string{"sh"}}}
	g, _ := Build(r, l, Options{BaseConfig: base})
	c := g.Config
	if c.Config.WorkingDir != "/app" || !contains(c.Config.Env, "RAILS_ENV=production") || !contains(c.Config.Env, "LANG=C") || strings.Join(c.Config.Cmd, " ") != "rails s" {
		t.Errorf("config %+v", c.Config)
	}
	if _, ok := c.Config.ExposedPorts["3000/tcp"]; !ok {
		t.Errorf("ports %v", c.Config.ExposedPorts)
	}
	if c.Config.Labels[ocispec.AnnotationRevision] != l.Upstream.Commit {
		t.Errorf("labels %v", c.Config.Labels)
	}
	if len(base.Config.Env) != 2 {
		t.Error("Build mutated the base config")
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
