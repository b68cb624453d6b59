package build_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/client"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/buildkit"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/fixture"
	"github.com/vmbuild/vmbuild/internal/testenv"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/recipe"
	"github.com/vmbuild/vmbuild/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func connect(t *testing.T, e *fixture.Env) *client.Client { return e.Connect(t, "").Client }

func opts(e *fixture.Env, c *client.Client, out build.Output) build.Options {
	return build.Options{Client: c, HelperPath: e.Helper, Output: out}
}

// TestBuildOCIAndPush builds the fixture recipe to an OCI layout and
// pushes it; then a commit that changes only files outside the bundle
// layer's inputs rebuilds with the bundle step cached (from the solve
// status) and the bundle layer's blob unchanged.
func TestBuildOCIAndPush(t *testing.T) {
	e := fixture.Start(t)
	up := e.NewUpstream(t, "app")
	path := e.WriteRecipe(t, fixture.NativeRecipe, up.URL, fixture.Patches())
	r, l := e.Lock(t, path, lock.Options{})
	c := connect(t, e)
	ctx := context.Background()

	layout := filepath.Join(t.TempDir(), "oci")
	res, err := build.Build(ctx, r, l, opts(e, c, build.Output{OCIDir: layout}))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Digest.String(), "sha256:") || res.Manifest == nil {
		t.Fatalf("result %+v", res)
	}
	if len(res.Patches) != 2 || res.Patches[0].Status != "applied" || res.Patches[1].Files == nil {
		t.Fatalf("patch reports %+v", res.Patches)
	}
	lay, err := store.OpenLayout(ctx, layout)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := lay.Index(ctx)
	if err != nil || len(idx.Manifests) != 1 || idx.Manifests[0].Digest != res.Digest {
		t.Fatalf("layout index %+v %v", idx, err)
	}
	// Image metadata: annotations and config.
	if res.Config.Config.WorkingDir != "/app" || res.Config.Created == nil || !res.Config.Created.Equal(fixture.T0) {
		t.Errorf("config %+v", res.Config)
	}
	bundleDigest := layerOf(t, res, "layer-output/bundle")

	// Push the same build by digest: same digest as the layout.
	repo := e.Reg.Ref("app")
	pres, err := build.Build(ctx, r, l, opts(e, c, build.Output{PushRepo: repo}))
	if err != nil {
		t.Fatal(err)
	}
	if pres.Digest != res.Digest {
		t.Errorf("pushed digest %s != layout digest %s", pres.Digest, res.Digest)
	}
	if _, _, err := e.Registry().FetchManifest(ctx, repo+"@"+pres.Digest.String()); err != nil {
		t.Fatalf("pushed manifest not in the registry: %v", err)
	}
	if tags, _ := e.Registry().ListTags(ctx, repo); len(tags) != 0 {
		t.Errorf("push by digest created tags %v", tags)
	}

	// Commit 2 changes app code only.
	up.Write("app/models/status.rb", "class Status\n  def text; end\nend\n")
	up.Commit("models only", fixture.T0.Add(time.Hour))
	r, l = e.Lock(t, path, lock.Options{Update: true})
	res2, err := build.Build(ctx, r, l, opts(e, c, build.Output{OCIDir: layout}))
	if err != nil {
		t.Fatal(err)
	}
	if res2.Digest == res.Digest {
		t.Fatal("a new commit gave the same image")
	}
	for _, id := range []string{"layer/bundle", "layer/assets"} {
		cached, found := res2.StepCached(id)
		if !found || !cached {
			t.Errorf("step %s: cached=%v found=%v; steps: %+v", id, cached, found, res2.Steps)
		}
	}
	if cached, _ := res2.StepCached("source-layer"); cached {
		t.Error("the source layer was reported cached although the source changed")
	}
	if got := layerOf(t, res2, "layer-output/bundle"); got != bundleDigest {
		t.Errorf("bundle layer blob changed: %s → %s", bundleDigest, got)
	}
	idx, _ = lay.Index(ctx)
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != res2.Digest {
		t.Errorf("the layout's latest tag should point at the new build: %+v", idx.Manifests)
	}
}

func layerOf(t *testing.T, res *build.Result, id string) string {
	t.Helper()
	for _, s := range res.Steps {
		if s.ID == id {
			if s.LayerDigest == "" {
				t.Fatalf("step %s has no layer digest", id)
			}
			return s.LayerDigest.String()
		}
	}
	t.Fatalf("no step %s", id)
	return ""
}

// TestBadInput: each kind of bad input fails with an error naming the
// thing, and nothing is pushed.
func TestBadInput(t *testing.T) {
	e := fixture.Start(t)
	up := e.NewUpstream(t, "bad")
	c := connect(t, e)
	ctx := context.Background()

	t.Run("unreachable git url", func(t *testing.T) {
		path := e.WriteRecipe(t, fixture.NativeRecipe, "git://127.0.0.1:1/nothing.git", fixture.Patches())
		r, _ := recipe.Load(path)
		_, err := e.Resolver(t).Resolve(ctx, r, nil, lock.Options{})
		if !errors.Is(err, errs.ErrGit) || !strings.Contains(err.Error(), "git://127.0.0.1:1/nothing.git") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("nonexistent ref", func(t *testing.T) {
		path := e.WriteRecipe(t, strings.Replace(fixture.NativeRecipe, "ref: main", "ref: no-such-branch", 1), up.URL, fixture.Patches())
		r, _ := recipe.Load(path)
		_, err := e.Resolver(t).Resolve(ctx, r, nil, lock.Options{})
		if !errors.Is(err, errs.ErrGit) || !strings.Contains(err.Error(), `"no-such-branch"`) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("unresolvable base", func(t *testing.T) {
		body := strings.Replace(fixture.NativeRecipe, "base: %BASE%", "base: "+e.Reg.Ref("no/such-image:1"), 1)
		path := e.WriteRecipe(t, body, up.URL, fixture.Patches())
		r, _ := recipe.Load(path)
		res := e.Resolver(t)
		_, err := res.Resolve(ctx, r, nil, lock.Options{})
		if !errors.Is(err, errs.ErrImageResolve) || !strings.Contains(err.Error(), "no/such-image:1") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("unreachable buildkitd", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := buildkit.Connect(cctx, buildkit.ConnectOptions{Addr: "unix:///nonexistent/buildkitd.sock", Timeout: 3 * time.Second})
		if !errors.Is(err, errs.ErrBuildKitUnavailable) || !strings.Contains(err.Error(), "/nonexistent/buildkitd.sock") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("failing run step", func(t *testing.T) {
		body := strings.Replace(fixture.NativeRecipe, "run: sh bin/fake-assets", `run: |
        echo "compiling assets" >&2
        echo "error: missing dependency left-pad" >&2
        exit 3`, 1)
		path := e.WriteRecipe(t, body, up.URL, fixture.Patches())
		r, l := e.Lock(t, path, lock.Options{})
		repo := e.Reg.Ref("failing")
		_, err := build.Build(ctx, r, l, opts(e, c, build.Output{PushRepo: repo}))
		if !errors.Is(err, errs.ErrBuildFailed) {
			t.Fatalf("got %v", err)
		}
		for _, want := range []string{`layer "assets" failed`, "exit code: 3", "error: missing dependency left-pad", "compiling assets"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q:\n%v", want, err)
			}
		}
		if tags, _ := e.Registry().ListTags(ctx, repo); len(tags) != 0 {
			t.Errorf("a failed build pushed tags %v", tags)
		}
	})
	t.Run("missing output", func(t *testing.T) {
		body := strings.Replace(fixture.NativeRecipe, "outputs: [/app/public/assets]", "outputs: [/app/public/nothing-here]", 1)
		path := e.WriteRecipe(t, body, up.URL, fixture.Patches())
		r, l := e.Lock(t, path, lock.Options{})
		out := filepath.Join(t.TempDir(), "oci")
		_, err := build.Build(ctx, r, l, opts(e, c, build.Output{OCIDir: out}))
		if !errors.Is(err, errs.ErrBuildFailed) || !strings.Contains(err.Error(), `layer "assets"`) || !strings.Contains(err.Error(), "/app/public/nothing-here") {
			t.Fatalf("got %v", err)
		}
		if _, err := os.Stat(filepath.Join(out, "index.json")); err == nil {
			t.Error("a failed build wrote an index.json")
		}
	})
}
