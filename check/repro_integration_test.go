package check_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/check"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/fixture"
	"github.com/vmbuild/vmbuild/internal/testenv"
	"github.com/vmbuild/vmbuild/lock"
)

func prune(t *testing.T, c *client.Client) {
	t.Helper()
	ch := make(chan client.UsageInfo)
	go func() {
		for range ch {
		}
	}()
	if err := c.Prune(context.Background(), ch, client.PruneAll); err != nil {
		t.Fatal(err)
	}
	close(ch)
}

// TestColdBuildsAndTwoDaemons: two cold builds (cache pruned between them)
// and a build on a second buildkitd with its own state give one digest;
// the base image's layers are untouched by the timestamp rewrite.
func TestColdBuildsAndTwoDaemons(t *testing.T) {
	e := fixture.Start(t)
	up := e.NewUpstream(t, "cold")
	path := e.WriteRecipe(t, fixture.NativeRecipe, up.URL, fixture.Patches())
	r, l := e.Lock(t, path, lock.Options{})
	ctx := context.Background()

	bkA := testenv.StartBuildKit(t)
	bkB := testenv.StartBuildKit(t)
	ca, cb := e.Connect(t, bkA.Addr).Client, e.Connect(t, bkB.Addr).Client
	build1 := func(c *client.Client) *build.Result {
		t.Helper()
		res, err := build.Build(ctx, r, l, build.Options{Client: c, HelperPath: e.Helper, Output: build.Output{OCIDir: filepath.Join(t.TempDir(), "oci")}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	first := build1(ca)
	prune(t, ca)
	second := build1(ca)
	for _, s := range second.Steps {
		if s.Kind == "layer" && s.Cached {
			t.Errorf("step %s was cached after a prune", s.ID)
		}
	}
	other := build1(cb)
	if first.Digest != second.Digest || first.Digest != other.Digest {
		t.Fatalf("digests differ: cold %s, cold again %s, other daemon %s", first.Digest, second.Digest, other.Digest)
	}

	// The base's layers are carried over byte for byte.
	b, _, err := e.Registry().FetchManifest(ctx, e.Base)
	if err != nil {
		t.Fatal(err)
	}
	var bm ocispec.Manifest
	if err := json.Unmarshal(b, &bm); err != nil {
		t.Fatal(err)
	}
	for i, bl := range bm.Layers {
		if first.Manifest.Layers[i].Digest != bl.Digest {
			t.Errorf("base layer %d rewritten: %s, base has %s", i, first.Manifest.Layers[i].Digest, bl.Digest)
		}
	}
}

// TestEpochOutsideCacheKeys: consecutive commits with different commit
// times; the second changes only app code. Native and dockerfile mode
// both report the bundle step cached, and stay bit-for-bit reproducible
// (build --check).
func TestEpochOutsideCacheKeys(t *testing.T) {
	e := fixture.Start(t)
	ctx := context.Background()
	c := e.Connect(t, "").Client
	up := e.NewUpstream(t, "epoch")
	base := strings.SplitN(e.Base, "@", 2)[0] + ":latest"
	up.Write("Dockerfile", `FROM `+base+` AS build
WORKDIR /app
COPY Gemfile Gemfile.lock bin/fake-bundle ./
RUN sh fake-bundle && echo bundle-step-ran
COPY . .
RUN sh bin/fake-assets

FROM `+base+`
ARG SOURCE_COMMIT
COPY --from=build /usr/local/bundle /usr/local/bundle
COPY --from=build /app /app
ENV SOURCE_COMMIT=${SOURCE_COMMIT}
`)
	up.Commit("dockerfile", fixture.T0.Add(time.Minute))

	native := e.WriteRecipe(t, fixture.NativeRecipe, up.URL, fixture.Patches())
	docker := e.WriteRecipe(t, `apiVersion: vmbuild/v1
name: app
upstream: {git: %GIT%, ref: main}
build:
  dockerfile: {}
`, up.URL, nil)
	for _, path := range []string{native, docker} {
		e.Lock(t, path, lock.Options{})
	}
	buildAll := func() map[string]*build.Result {
		out := map[string]*build.Result{}
		for name, path := range map[string]string{"native": native, "dockerfile": docker} {
			r, l := e.Lock(t, path, lock.Options{Update: true})
			res, err := build.Build(ctx, r, l, build.Options{Client: c, HelperPath: e.Helper, Output: build.Output{OCIDir: filepath.Join(t.TempDir(), "oci")}})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			out[name] = res
		}
		return out
	}
	buildAll()
	up.Write("app/javascript/application.js", "export const hello = () => 'hello, again';\n")
	up.Commit("js only", fixture.T0.Add(26*time.Hour))
	second := buildAll()

	if cached, _ := second["native"].StepCached("layer/bundle"); !cached {
		t.Errorf("native: bundle step not cached on a JS-only commit")
	}
	var bundle *build.Vertex
	for i, v := range second["dockerfile"].Vertices {
		if strings.Contains(v.Name, "bundle-step-ran") {
			bundle = &second["dockerfile"].Vertices[i]
		}
	}
	if bundle == nil || !bundle.Cached {
		t.Errorf("dockerfile: bundle step not cached on a JS-only commit: %+v", bundle)
	}
	if ep := second["dockerfile"].Epoch; ep != fixture.T0.Add(26*time.Hour).Unix() {
		t.Errorf("epoch %d", ep)
	}
	// And each is reproducible without cache.
	for name, path := range map[string]string{"native": native, "dockerfile": docker} {
		r, l := e.Lock(t, path, lock.Options{})
		res, _, err := check.Reproducible(ctx, r, l, t.TempDir(), check.ReproOptions{Build: build.Options{Client: c, HelperPath: e.Helper}})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := res.Err(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if res.First != second[name].Digest {
			t.Errorf("%s: check built %s, the build before gave %s", name, res.First, second[name].Digest)
		}
		if res.First == "" {
			t.Error("empty digest")
		}
	}
	cfg := second["dockerfile"].Config
	if cfg == nil || cfg.Created == nil || !cfg.Created.Equal(fixture.T0.Add(26*time.Hour)) {
		t.Errorf("dockerfile image created = %v, want the commit time", cfg)
	}
}

// TestCheckNamesNondeterministicFile: a layer that writes the time and
// random bytes makes --check fail, naming the layer and the files.
func TestCheckNamesNondeterministicFile(t *testing.T) {
	e := fixture.Start(t)
	up := e.NewUpstream(t, "nondet")
	body := strings.Replace(fixture.NativeRecipe, "run: sh bin/fake-assets", `run: |
        sh bin/fake-assets
        { date; cat /proc/uptime; } > public/assets/built-at.txt
        head -c 16 /dev/urandom > public/assets/nonce.bin`, 1)
	path := e.WriteRecipe(t, body, up.URL, fixture.Patches())
	r, l := e.Lock(t, path, lock.Options{})
	res, _, err := check.Reproducible(context.Background(), r, l, t.TempDir(), check.ReproOptions{Build: build.Options{Client: e.Connect(t, "").Client, HelperPath: e.Helper}})
	if err != nil {
		t.Fatal(err)
	}
	err = res.Err()
	if !errors.Is(err, errs.ErrNotReproducible) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{"layer-output/assets", "app/public/assets/built-at.txt", "app/public/assets/nonce.bin", "sha256="} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "layer-output/bundle") {
		t.Errorf("the deterministic bundle layer was reported:\n%v", err)
	}
}
