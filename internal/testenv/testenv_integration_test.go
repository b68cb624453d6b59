package testenv_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/client/llb"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/internal/baseimage"
	"github.com/vmbuild/vmbuild/internal/testenv"
	"github.com/vmbuild/vmbuild/internal/testenv/detgit"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The hashes of the two commits TestHarness makes: the same on every
// machine, since identities, dates and contents are fixed.
const (
	wantSHA1 = "19b3c0df24eb8c583a822d4cbf5150765f0879cf"
	wantSHA2 = "9a2849ff852e5b495979d263c350ff65fbc4163f"
)

// solve runs def on bk, collecting BuildKit's progress log for the error.
func solve(t *testing.T, c *client.Client, st llb.State, opt client.SolveOpt) *client.SolveResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	def, err := st.Marshal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *client.SolveStatus)
	var logs strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		for s := range ch {
			for _, v := range s.Vertexes {
				if v.Error != "" {
					fmt.Fprintf(&logs, "vertex %s: %s\n", v.Name, v.Error)
				}
			}
			for _, l := range s.Logs {
				logs.Write(l.Data)
			}
		}
	}()
	resp, err := c.Solve(ctx, def, opt, ch)
	<-done
	if err != nil {
		t.Fatalf("solve: %v\n%s", err, logs.String())
	}
	return resp
}

// getManifest fetches a manifest by tag or digest and returns its digest
// header and body.
func getManifest(t *testing.T, reg *testenv.Registry, repo, ref string) (string, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/v2/%s/manifests/%s", reg.URL, repo, ref), nil)
	req.Header.Set("Accept", strings.Join([]string{ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
		"application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json"}, ", "))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET manifest %s:%s: %s: %s", repo, ref, resp.Status, b)
	}
	return resp.Header.Get("Docker-Content-Digest"), b
}

// layerFile reads one file from a gzip layer blob in the registry.
func layerFile(t *testing.T, reg *testenv.Registry, repo string, layer ocispec.Descriptor, name string) (string, bool) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("%s/v2/%s/blobs/%s", reg.URL, repo, layer.Digest))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return "", false
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(h.Name, "./") == name {
			b, _ := io.ReadAll(tr)
			return string(b), true
		}
	}
}

// TestHarness proves the harness end to end: a registry, a git daemon and
// a buildkitd of the test's own; the busybox base is pushed, a repository
// gets two commits, and BuildKit builds from the first (not the branch
// tip, so it must fetch a commit by hash) and pushes the image.
func TestHarness(t *testing.T) {
	testenv.RequireIntegration(t)
	reg := testenv.StartRegistry(t)
	srv := testenv.StartGitDaemon(t)
	bk := testenv.StartBuildKit(t)
	base := testenv.PushBase(t, reg, "test/busybox", baseimage.Options{})

	if d, _ := getManifest(t, reg, "test/busybox", "latest"); d != base.Digest.String() {
		t.Fatalf("base tag resolves to %s, pushed %s", d, base.Digest)
	}

	repo := testenv.NewRepo(t, srv, "hello")
	repo.Write("file", "first\n")
	repo.WriteMode("bin/run.sh", "#!/bin/sh\necho hi\n", 0o755)
	repo.Symlink("file", "link")
	sha1 := repo.Commit("one", time.Unix(1700000000, 0))
	repo.Write("file", "second\n")
	repo.Remove("link")
	sha2 := repo.Commit("two", time.Unix(1700003600, 0))
	if sha1 != wantSHA1 || sha2 != wantSHA2 {
		t.Errorf("commit hashes are %s, %s; want %s, %s on every machine", sha1, sha2, wantSHA1, wantSHA2)
	}
	if h := repo.Head(); h != sha2 {
		t.Errorf("Head = %s, want %s", h, sha2)
	}
	if ts := repo.Git("log", "-1", "--format=%at %ct %an <%ae>", sha1); ts != "1700000000 1700000000 "+detgit.Name+" <"+detgit.Email+">" {
		t.Errorf("commit metadata: %q", ts)
	}
	out, err := exec.Command("git", "ls-remote", repo.URL, "refs/heads/main").Output()
	if err != nil || !strings.HasPrefix(string(out), sha2) {
		t.Fatalf("git ls-remote %s: %q %v", repo.URL, out, err)
	}

	src := llb.Git(repo.URL, "", llb.GitRef(sha1), llb.GitChecksum(sha1))
	st := llb.Image(base.Ref).Run(
		llb.Args([]string{"sh", "-c", "cat /src/file > /out"}),
		llb.AddMount("/src", src, llb.Readonly),
		llb.Network(llb.NetModeNone),
	).Root()
	target := reg.Ref("test/out") + ":v1"
	resp := solve(t, bk.Client(t), st, client.SolveOpt{
		Exports: []client.ExportEntry{{Type: client.ExporterImage, Attrs: map[string]string{"name": target, "push": "true"}}},
	})
	dgst := resp.ExporterResponse["containerimage.digest"]
	if !strings.HasPrefix(dgst, "sha256:") {
		t.Fatalf("no image digest in exporter response %v", resp.ExporterResponse)
	}
	tagDigest, _ := getManifest(t, reg, "test/out", "v1")
	byDigest, body := getManifest(t, reg, "test/out", dgst)
	if tagDigest != dgst || byDigest != dgst {
		t.Fatalf("pushed digest %s; registry resolves tag to %s, digest to %s", dgst, tagDigest, byDigest)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil || len(m.Layers) != 2 {
		t.Fatalf("manifest: %v %s", err, body)
	}
	if m.Layers[0].Digest != base.Image.LayerDesc.Digest {
		t.Errorf("first layer %s is not the base layer %s", m.Layers[0].Digest, base.Image.LayerDesc.Digest)
	}
	if got, ok := layerFile(t, reg, "test/out", m.Layers[1], "out"); !ok || got != "first\n" {
		t.Errorf("/out in the built layer = %q (found %v), want the first commit's file", got, ok)
	}
}

// TestSharedBuildKitRunsApplets runs every required applet of the base
// image on the shared daemon and exports the result locally.
func TestSharedBuildKitRunsApplets(t *testing.T) {
	testenv.RequireIntegration(t)
	reg := testenv.StartRegistry(t)
	bk := testenv.SharedBuildKit(t)
	if !bk.Shared {
		t.Fatal("SharedBuildKit returned an unshared daemon")
	}
	base := testenv.BusyboxBase(t, reg, "shared/busybox")
	script := `set -e
for a in ` + strings.Join(baseimage.RequiredApplets, " ") + `; do command -v "$a"; done > /out/applets
seq 3 | awk '{s+=$1} END {print s}' > /out/sum
id -u > /out/uid; ls -ld /tmp | cut -c1-10 > /out/tmpmode`
	st := llb.Scratch().File(llb.Mkdir("/out", 0o755))
	run := llb.Image(base).Run(llb.Args([]string{"sh", "-c", script}), llb.Network(llb.NetModeNone))
	out := run.AddMount("/out", st)
	dir := t.TempDir()
	solve(t, bk.Client(t), out, client.SolveOpt{
		Exports: []client.ExportEntry{{Type: client.ExporterLocal, OutputDir: dir}},
	})
	read := func(n string) string {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if got := strings.Count(read("applets"), "\n") + 1; got != len(baseimage.RequiredApplets) {
		t.Errorf("applets found: %q", read("applets"))
	}
	if read("sum") != "6" || read("uid") != "0" || read("tmpmode") != "drwxrwxrwt" {
		t.Errorf("sum %q uid %q /tmp %q", read("sum"), read("uid"), read("tmpmode"))
	}
}

// TestGitPush checks that the git daemon accepts pushes.
func TestGitPush(t *testing.T) {
	testenv.RequireIntegration(t)
	srv := testenv.StartGitDaemon(t)
	repo := testenv.NewRepo(t, srv, "pushme")
	repo.Write("a", "a\n")
	repo.Commit("a", time.Unix(1700000000, 0))
	clone := filepath.Join(t.TempDir(), "c")
	env := append(detgit.Env(), "GIT_AUTHOR_NAME=x", "GIT_AUTHOR_EMAIL=x@x", "GIT_COMMITTER_NAME=x", "GIT_COMMITTER_EMAIL=x@x")
	for _, args := range [][]string{
		{"clone", "-q", repo.URL, clone},
		{"-C", clone, "commit", "-q", "--allow-empty", "-m", "pushed"},
		{"-C", clone, "push", "-q", "origin", "HEAD:main"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	if msg := repo.Git("log", "-1", "--format=%s", "main"); msg != "pushed" {
		t.Errorf("after push, main is %q", msg)
	}
}
