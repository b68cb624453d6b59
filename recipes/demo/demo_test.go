// Package demo_test builds the offline demo recipe, as `make demo` does,
// against the real services: to an OCI layout and pushed to a registry,
// then a second upstream commit that touches no layer input.
package demo_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/internal/fixture"
	"github.com/vmbuild/vmbuild/internal/testenv"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/recipe"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// demoDir makes the demo's inputs (base layout, upstream with n commits)
// in a temporary copy of recipes/demo, so the repository is not touched.
func demoDir(t *testing.T, commits string) string {
	t.Helper()
	root := testenv.RepoRoot()
	dir := t.TempDir()
	for _, f := range []string{"demo.yaml", "patches"} {
		cmd := exec.Command("cp", "-r", filepath.Join(root, "recipes", "demo", f), dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	cmd := exec.Command("go", "run", "./hack/mkdemo", "--dir", dir, "--src", filepath.Join(root, "recipes", "demo", "src"), "--commits", commits)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkdemo: %v\n%s", err, out)
	}
	return dir
}

func TestDemoBuildsAndRebuildsCheaply(t *testing.T) {
	testenv.RequireIntegration(t)
	e := fixture.Start(t)
	dir := demoDir(t, "2")
	path := filepath.Join(dir, "demo.yaml")
	ctx := context.Background()
	c := e.Connect(t, "")
	r, err := recipe.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	res := lock.Resolver{Git: lock.GitCLI{}, Images: lock.Images{BaseDir: r.Dir}}
	first, err := res.Resolve(ctx, r, nil, lock.Options{Commit: "main~1"})
	if err != nil {
		t.Fatal(err)
	}
	opts := build.Options{Client: c.Client, HelperPath: e.Helper, BuildKitVersion: c.Version}

	opts.Output = build.Output{OCIDir: filepath.Join(dir, "out")}
	a, err := build.Build(ctx, r, first, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Patches) != 2 || a.Patches[1].Removed == 0 {
		t.Errorf("patch reports %+v", a.Patches)
	}
	opts.Output = build.Output{PushRepo: e.Reg.Ref("demo")}
	pushed, err := build.Build(ctx, r, first, opts)
	if err != nil {
		t.Fatal(err)
	}
	if pushed.Digest != a.Digest {
		t.Errorf("pushed %s, layout has %s", pushed.Digest, a.Digest)
	}
	if _, _, err := e.Registry().FetchManifest(ctx, e.Reg.Ref("demo")+"@"+pushed.Digest.String()); err != nil {
		t.Fatal(err)
	}

	// The second demo commit changes app/javascript/application.js: an
	// input of the assets layer, not of the bundle layer.
	second, err := res.Resolve(ctx, r, first, lock.Options{Update: true})
	if err != nil || second.Upstream.Commit == first.Upstream.Commit {
		t.Fatalf("update: %v", err)
	}
	opts.Output = build.Output{OCIDir: filepath.Join(dir, "out")}
	b, err := build.Build(ctx, r, second, opts)
	if err != nil {
		t.Fatal(err)
	}
	if cached, _ := b.StepCached("layer/bundle"); !cached {
		t.Error("the bundle layer re-ran on a commit that does not touch its inputs")
	}
	if cached, _ := b.StepCached("layer/assets"); cached {
		t.Error("the assets layer was cached although its input changed")
	}
	layer := func(res *build.Result, id string) string {
		for _, s := range res.Steps {
			if s.ID == id {
				return s.LayerDigest.String()
			}
		}
		return ""
	}
	if la, lb := layer(a, "layer-output/bundle"), layer(b, "layer-output/bundle"); la == "" || la != lb {
		t.Errorf("bundle layer blob changed: %s → %s", la, lb)
	}
	if b.Digest == a.Digest {
		t.Error("new commit, same image")
	}
	if !strings.Contains(string(mustRead(t, filepath.Join(dir, "out", "index.json"))), b.Digest.String()) {
		t.Error("index.json does not name the new image")
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
