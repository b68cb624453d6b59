package lock

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/recipe"
)

const testRecipe = `apiVersion: vmbuild/v1
name: demo
upstream: {git: ./upstream, ref: main}
base: oci-layout://./base:latest
patches:
  - file: one.patch
build:
  layers:
    - {name: bundle, inputs: [Gemfile], run: "true", outputs: [/usr/local/bundle]}
`

func sampleLock() *Lock {
	return &Lock{
		LockVersion: Version,
		Recipe:      RecipePin{Name: "demo", File: "demo.yaml", SHA256: strings.Repeat("a", 64)},
		Upstream:    Upstream{URL: "./upstream", Ref: "main", Commit: strings.Repeat("b", 40), CommitTime: time.Unix(1700000000, 0).UTC()},
		Base:        &ImagePin{Ref: "oci-layout://./base:latest", Digest: "sha256:" + strings.Repeat("c", 64), Platforms: map[string]string{"linux/arm64": "sha256:" + strings.Repeat("e", 64), "linux/amd64": "sha256:" + strings.Repeat("d", 64)}},
		Patches:     []PatchPin{{Name: "one.patch", Kind: "diff", File: "one.patch", SHA256: strings.Repeat("f", 64)}},
	}
}

func TestMarshalStable(t *testing.T) {
	l := sampleLock()
	a, err := l.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := l.Marshal()
	if string(a) != string(b) {
		t.Fatal("marshal is not deterministic")
	}
	want := `{
  "lockVersion": 1,
  "recipe": {
    "name": "demo",
    "file": "demo.yaml",
    "sha256": "` + strings.Repeat("a", 64) + `"
  },
  "upstream": {
    "url": "./upstream",
    "ref": "main",
    "commit": "` + strings.Repeat("b", 40) + `",
    "commitTime": "2023-11-14T22:13:20Z"
  },
  "base": {
    "ref": "oci-layout://./base:latest",
    "digest": "sha256:` + strings.Repeat("c", 64) + `",
    "platforms": {
      "linux/amd64": "sha256:` + strings.Repeat("d", 64) + `",
      "linux/arm64": "sha256:` + strings.Repeat("e", 64) + `"
    }
  },
  "patches": [
    {
      "name": "one.patch",
      "kind": "diff",
      "file": "one.patch",
      "sha256": "` + strings.Repeat("f", 64) + `"
    }
  ]
}
`
	if string(a) != want {
		t.Fatalf("got\n%s\nwant\n%s", a, want)
	}
	p := filepath.Join(t.TempDir(), "demo.lock.json")
	if err := Write(p, l); err != nil {
		t.Fatal(err)
	}
	back, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if back.Epoch() != 1700000000 || back.Base.ManifestFor(ocispec.Platform{OS: "linux", Architecture: "amd64"}) != "sha256:"+strings.Repeat("d", 64) {
		t.Fatalf("round trip: %+v", back)
	}
}

func TestParseRefusesBadLocks(t *testing.T) {
	good, _ := sampleLock().Marshal()
	for name, edit := range map[string]func(string) string{
		"unknown field": func(s string) string {
			return strings.Replace(s, `"lockVersion": 1,`, `"lockVersion": 1, "extra": true,`, 1)
		},
		"short commit": func(s string) string { return strings.Replace(s, strings.Repeat("b", 40), "bbbb", 1) },
		"no time": func(s string) string {
			return strings.Replace(s, `"2023-11-14T22:13:20Z"`, `"0001-01-01T00:00:00Z"`, 1)
		},
		"bad digest": func(s string) string { return strings.Replace(s, "sha256:"+strings.Repeat("c", 64), "sha256:xyz", 1) },
		"version":    func(s string) string { return strings.Replace(s, `"lockVersion": 1`, `"lockVersion": 7`, 1) },
		"not json":   func(s string) string { return s[:40] },
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("x.lock.json", []byte(edit(string(good))))
			if !errors.Is(err, errs.ErrInvalidLock) {
				t.Fatalf("got %v", err)
			}
			if !strings.Contains(err.Error(), "x.lock.json") {
				t.Errorf("error does not name the file: %v", err)
			}
		})
	}
}

func loadRecipe(t *testing.T, body, patch string) *recipe.Recipe {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "one.patch"), []byte(patch), 0o644)
	p := filepath.Join(dir, "demo.yaml")
	os.WriteFile(p, []byte(body), 0o644)
	r, err := recipe.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCheckStaleness(t *testing.T) {
	r := loadRecipe(t, testRecipe, "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n")
	l := sampleLock()
	l.Recipe.SHA256 = r.SHA256
	l.Patches[0].SHA256 = r.Patches[0].SHA256
	if err := Check(r, l, "demo.lock.json"); err != nil {
		t.Fatalf("fresh lock reported stale: %v", err)
	}

	// Patch content changed.
	r2 := loadRecipe(t, testRecipe, "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+c\n")
	err := Check(r2, l, "demo.lock.json")
	if !errors.Is(err, errs.ErrLockStale) || !strings.Contains(err.Error(), `patch "one.patch" (one.patch) changed since it was locked`) {
		t.Fatalf("patch change: %v", err)
	}
	if strings.Contains(err.Error(), "recipe demo.yaml changed") {
		t.Errorf("recipe reported changed although only the patch did: %v", err)
	}

	// Recipe changed: ref moved, a patch added.
	r3 := loadRecipe(t, strings.Replace(strings.Replace(testRecipe, "ref: main", "ref: stable", 1), "  - file: one.patch\n", "  - file: one.patch\n  - {file: one.patch, name: two}\n", 1), "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n")
	err = Check(r3, l, "demo.lock.json")
	for _, want := range []string{"recipe demo.yaml changed since it was locked", `upstream.ref is "stable", lock has "main"`, `patch "two" (one.patch) is not in the lock`, "vmbuild lock"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

func TestScanDockerfile(t *testing.T) {
	df := []byte(`# syntax=docker/dockerfile:1.18
ARG RUBY_VERSION=3.4.5
ARG NODE_MAJOR_VERSION=22
ARG DEBIAN_VERSION=bookworm
ARG BASE_REGISTRY=docker.io
FROM ${BASE_REGISTRY}/node:${NODE_MAJOR_VERSION}-${DEBIAN_VERSION}-slim AS node
FROM ${BASE_REGISTRY}/ruby:${RUBY_VERSION}-slim-${DEBIAN_VERSION} AS ruby
ARG SOURCE_COMMIT
RUN echo build
FROM ruby AS build
COPY --from=node /usr/local/bin /usr/local/bin
COPY --from=docker.io/library/busybox:1.36 /bin/busybox /bin/
RUN --mount=from=alpine:3.20,target=/a true
FROM ruby AS mastodon
COPY . /app
COPY --from=build /usr/local/bin /usr/local/bin
FROM scratch AS unused
COPY --from=debian:12 / /
`)
	plat := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	got, err := ScanDockerfile(context.Background(), df, "mastodon", map[string]string{"RUBY_VERSION": "3.4.6"}, plat)
	if err != nil {
		t.Fatal(err)
	}
	if got.Syntax != "docker/dockerfile:1.18" {
		t.Errorf("syntax %q", got.Syntax)
	}
	want := "docker.io/library/alpine:3.20 docker.io/library/busybox:1.36 docker.io/library/node:22-bookworm-slim docker.io/library/ruby:3.4.6-slim-bookworm"
	if strings.Join(got.Images, " ") != want {
		t.Errorf("images\n got %v\nwant %v", got.Images, want)
	}
	if _, err := ScanDockerfile(context.Background(), []byte("FROM\n"), "", nil, plat); err == nil {
		t.Error("broken Dockerfile accepted")
	}
}

// TestReplaceImages: the images build.dockerfile.baseFor names are left
// out of what lock pins, matched by name as the frontend matches named
// contexts; an entry that replaces nothing, or names a stage, is refused.
func TestReplaceImages(t *testing.T) {
	df := []byte(`ARG NODE=24
FROM docker.io/node:${NODE}-trixie-slim AS node
FROM ruby:3.4-slim AS build
COPY --from=node /usr/local/bin /usr/local/bin
COPY --from=busybox /bin/busybox /bin/
FROM build
`)
	plat := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	in, err := ScanDockerfile(context.Background(), df, "", nil, plat)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(in.Stages, " ") != "node build" {
		t.Errorf("stages %v", in.Stages)
	}
	got, err := ReplaceImages(in, []string{"node:24-trixie-slim", "docker.io/library/busybox:latest"})
	if err != nil || strings.Join(got, " ") != "docker.io/library/ruby:3.4-slim" {
		t.Errorf("kept %v, %v", got, err)
	}
	if got, _ := ReplaceImages(in, nil); len(got) != 3 {
		t.Errorf("nothing replaced: kept %v", got)
	}
	for ref, want := range map[string]string{
		"node:22-trixie-slim": `does not use image "node:22-trixie-slim" (it uses docker.io/library/busybox:latest, docker.io/library/node:24-trixie-slim, docker.io/library/ruby:3.4-slim)`,
		"build":               `"build" names the Dockerfile's stage "build"`,
		"node:latest":         `"node:latest" names the Dockerfile's stage "node"`,
	} {
		_, err := ReplaceImages(in, []string{ref})
		if !errors.Is(err, errs.ErrInvalidRecipe) || !strings.Contains(err.Error(), "build.dockerfile.baseFor: ") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", ref, err)
		}
	}
}

func gitRepo(t *testing.T) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	run := func(env []string, args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run(nil, "init", "-q", "-b", "main")
	var shas []string
	for i, when := range []string{"@1700000000 +0000", "@1700000600 +0000", "@1700001200 +0000"} {
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox:1."+string(rune('0'+i))+"\n"), 0o644)
		run(nil, "add", "-A")
		env := []string{"GIT_AUTHOR_DATE=" + when, "GIT_COMMITTER_DATE=" + when, "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t"}
		run(env, "commit", "-q", "-m", "c"+string(rune('0'+i)))
		shas = append(shas, run(nil, "rev-parse", "HEAD"))
	}
	return dir, shas
}

func TestGitCLILocal(t *testing.T) {
	dir, shas := gitRepo(t)
	ctx := context.Background()
	g := GitCLI{}
	head, err := g.ResolveRef(ctx, dir, "main")
	if err != nil || head != shas[2] {
		t.Fatalf("head %s %v", head, err)
	}
	if _, err := g.ResolveRef(ctx, dir, "nope"); !errors.Is(err, errs.ErrGit) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("missing ref: %v", err)
	}
	tm, err := g.CommitTime(ctx, dir, shas[1])
	if err != nil || tm.Unix() != 1700000600 {
		t.Fatalf("time %v %v", tm, err)
	}
	b, err := g.ReadFile(ctx, dir, shas[0], "Dockerfile")
	if err != nil || string(b) != "FROM busybox:1.0\n" {
		t.Fatalf("read %q %v", b, err)
	}
	log, err := g.Log(ctx, dir, shas[0], "main", 0)
	if err != nil || len(log) != 2 || log[0].SHA != shas[1] || log[1].SHA != shas[2] {
		t.Fatalf("log %+v %v", log, err)
	}
}

func TestGitCLIUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	g := GitCLI{CacheDir: t.TempDir()}
	_, err := g.ResolveRef(ctx, "git://127.0.0.1:1/nothing.git", "main")
	if !errors.Is(err, errs.ErrGit) || !strings.Contains(err.Error(), "git://127.0.0.1:1/nothing.git") {
		t.Fatalf("unreachable: %v", err)
	}
	_, err = g.ResolveRef(ctx, "https://user:s3cret@127.0.0.1:1/x.git", "main")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("credentials leaked or no error: %v", err)
	}
}

type noImages struct{}

func (noImages) ResolveImage(ctx context.Context, ref string, p ocispec.Platform) (ImagePin, error) {
	return ImagePin{Ref: ref, Digest: "sha256:" + strings.Repeat("1", 64)}, nil
}

func TestResolveKeepsAndUpdates(t *testing.T) {
	dir, shas := gitRepo(t)
	rdir := t.TempDir()
	body := strings.Replace(testRecipe, "./upstream", dir, 1)
	body = strings.Replace(body, "  - file: one.patch\n", "", 1)
	body = strings.Replace(body, "patches:\n", "", 1)
	p := filepath.Join(rdir, "demo.yaml")
	os.WriteFile(p, []byte(body), 0o644)
	r, err := recipe.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	res := Resolver{Git: GitCLI{}, Images: noImages{}}
	ctx := context.Background()
	l, err := res.Resolve(ctx, r, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Upstream.Commit != shas[2] || l.Epoch() != 1700001200 || l.Base == nil {
		t.Fatalf("lock %+v", l)
	}
	if err := Check(r, l, "x"); err != nil {
		t.Fatalf("fresh lock stale: %v", err)
	}
	// Hand-pin an older commit; a plain re-lock keeps it; --update moves.
	l2, err := res.Resolve(ctx, r, l, Options{Commit: shas[0]})
	if err != nil || l2.Upstream.Commit != shas[0] || l2.Epoch() != 1700000000 {
		t.Fatalf("pin: %+v %v", l2, err)
	}
	l3, _ := res.Resolve(ctx, r, l2, Options{})
	if l3.Upstream.Commit != shas[0] {
		t.Fatalf("re-lock moved the commit: %s", l3.Upstream.Commit)
	}
	l4, _ := res.Resolve(ctx, r, l3, Options{Update: true})
	if l4.Upstream.Commit != shas[2] {
		t.Fatalf("update did not move: %s", l4.Upstream.Commit)
	}
	if d := Diff(l3, l4); len(d) != 1 || !strings.HasPrefix(d[0], "upstream: ") {
		t.Fatalf("diff %v", d)
	}
}

// TestResolvePinsPatchedDockerfile: the recipe's diff patches apply to the
// Dockerfile before its images are pinned, so a patched FROM line is what
// the lock pins.
func TestResolvePinsPatchedDockerfile(t *testing.T) {
	dir, shas := gitRepo(t)
	body := `apiVersion: vmbuild/v1
name: demo
upstream: {git: ` + dir + `, ref: main}
patches:
  - file: one.patch
build:
  dockerfile: {path: Dockerfile}
`
	r := loadRecipe(t, body, "--- a/Dockerfile\n+++ b/Dockerfile\n@@ -1 +1 @@\n-FROM busybox:1.2\n+FROM alpine:3.20\n")
	l, err := Resolver{Git: GitCLI{}, Images: noImages{}, WorkDir: t.TempDir()}.Resolve(context.Background(), r, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Upstream.Commit != shas[2] || len(l.Images) != 1 || l.Images[0].Ref != "docker.io/library/alpine:3.20" {
		t.Fatalf("pinned %+v, want only the patched FROM image", l.Images)
	}
}
