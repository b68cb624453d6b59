package check_test

// Unit tests of check's own concerns, through fake builders, patch
// checkers and git: no daemon.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/check"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/lock/locktest"
	"github.com/vmbuild/vmbuild/patch"
	"github.com/vmbuild/vmbuild/recipe"
	"github.com/vmbuild/vmbuild/store"
)

const unitRecipe = `apiVersion: vmbuild/v1
name: app
upstream:
  git: https://git.example/app.git
  ref: main
base: registry.example/base:1
platform: linux/amd64
patches:
  - file: a.patch
  - file: b.patch
build:
  layers:
    - name: app
      inputs: [Gemfile]
      run: make install
      outputs: [/app]
`

func loadRecipe(t *testing.T) *recipe.Recipe {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"a.patch", "b.patch"} {
		body := fmt.Sprintf("--- a/%[1]s\n+++ b/%[1]s\n@@ -1 +1 @@\n-x\n+y\n", strings.TrimSuffix(name, ".patch"))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(path, []byte(unitRecipe), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := recipe.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func sha(i int) string { return strings.Repeat(fmt.Sprintf("%02x", 0x10+i), 20) }

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func commitAt(i int) lock.Commit {
	return lock.Commit{SHA: sha(i), Time: t0.Add(time.Duration(i) * time.Hour), Subject: fmt.Sprintf("commit %d", i)}
}

func lockAt(r *recipe.Recipe, c lock.Commit) *lock.Lock {
	return &lock.Lock{
		LockVersion: lock.Version,
		Recipe:      lock.RecipePin{Name: r.Name, File: filepath.Base(r.Path), SHA256: r.SHA256},
		Upstream:    lock.Upstream{URL: r.Upstream.Git, Ref: r.Upstream.Ref, Commit: c.SHA, CommitTime: c.Time},
		Base:        &lock.ImagePin{Ref: lock.NormalizeImageRef(r.Base), Digest: "sha256:" + strings.Repeat("b", 64)},
	}
}

// fakeChecker returns, per commit, the reports and error the real
// checker would: every patch tried, the first failure as a *PatchError.
type fakeChecker struct {
	at    map[string][]patch.Report
	err   map[string]error // an error that is not a patch's
	calls []*lock.Lock
}

func (f *fakeChecker) CheckPatches(ctx context.Context, r *recipe.Recipe, l *lock.Lock) ([]patch.Report, error) {
	f.calls = append(f.calls, l)
	c := l.Upstream.Commit
	if err := f.err[c]; err != nil {
		return nil, err
	}
	reports := f.at[c]
	for i, rep := range reports {
		if rep.Err(c) != nil {
			return reports, &build.PatchError{Index: i, Report: rep, Commit: c, Err: rep.Err(c)}
		}
	}
	return reports, nil
}

func applied(name string) patch.Report {
	return patch.Report{Patch: name, Kind: patch.KindDiff, Status: patch.StatusApplied, Files: []patch.FileStat{{Path: "x", Op: "modified", Added: 1, Removed: 1}}, Added: 1, Removed: 1}
}

func failed(name string) patch.Report {
	return patch.Report{Patch: name, Kind: patch.KindDiff, Status: patch.StatusFailed, Failure: &patch.Failure{Reason: "hunk-failed", Message: "hunk 1 does not apply", File: "x", Hunk: "@@ -1 +1 @@"}}
}

func noop(name string) patch.Report {
	return patch.Report{Patch: name, Kind: patch.KindDiff, Status: patch.StatusNoop}
}

type cell struct {
	commit string
	patch  string
}

func outcomes(res *check.PatchesResult) map[cell]check.Outcome {
	out := map[cell]check.Outcome{}
	for _, c := range res.Commits {
		for _, p := range c.Patches {
			out[cell{c.Commit, p.Patch}] = p.Outcome
		}
	}
	return out
}

// TestPatchesPerCommit: every commit of --last N, and the locked commit
// before them, is checked once at its own commit and time; each patch at
// each commit is reported as applies, fails (with the hunk), no-op or
// error (the commit could not be checked); the first failure of each
// patch is named; the check fails because the newest commit fails.
func TestPatchesPerCommit(t *testing.T) {
	r := loadRecipe(t)
	g := &locktest.Git{}
	for i := 0; i <= 5; i++ {
		g.Commits = append(g.Commits, commitAt(i))
	}
	l := lockAt(r, commitAt(0))
	f := &fakeChecker{
		at: map[string][]patch.Report{
			sha(0): {applied("a.patch"), applied("b.patch")},
			sha(2): {applied("a.patch"), applied("b.patch")},
			sha(3): {failed("a.patch"), applied("b.patch")},
			sha(4): {noop("a.patch"), applied("b.patch")},
			sha(5): {failed("a.patch"), applied("b.patch")},
		},
		err: map[string]error{sha(1): fmt.Errorf("fetching upstream: %w", errs.ErrBuildKitUnavailable)},
	}
	res, err := check.Patches(context.Background(), r, l, check.PatchesOptions{Checker: f, Git: g, Last: 5})
	if err != nil {
		t.Fatal(err)
	}
	var checked []string
	for i, cl := range f.calls {
		checked = append(checked, cl.Upstream.Commit)
		if want := commitAt(i).Time; !cl.Upstream.CommitTime.Equal(want) {
			t.Errorf("commit %d checked with time %v, want %v", i, cl.Upstream.CommitTime, want)
		}
		if cl.Base == nil || cl.Base.Digest != l.Base.Digest || cl.Recipe != l.Recipe {
			t.Errorf("commit %d checked with a lock that lost its pins: %+v", i, cl)
		}
	}
	want := []string{sha(0), sha(1), sha(2), sha(3), sha(4), sha(5)}
	if !slices.Equal(checked, want) {
		t.Fatalf("checked %v, want the locked commit then the last 5, oldest first: %v", checked, want)
	}
	if l.Upstream.Commit != sha(0) {
		t.Errorf("the caller's lock was changed: %s", l.Upstream.Commit)
	}
	var order []string
	for _, c := range res.Commits {
		order = append(order, c.Commit)
	}
	if !slices.Equal(order, want) || !res.Commits[0].Locked || res.Commits[1].Locked || !res.Commits[5].Newest || res.Commits[4].Newest {
		t.Errorf("commits %v (locked, newest marks wrong?): %+v", order, res.Commits)
	}
	wantOut := map[cell]check.Outcome{
		{sha(0), "a.patch"}: check.Applies, {sha(0), "b.patch"}: check.Applies,
		{sha(1), "a.patch"}: check.Error, {sha(1), "b.patch"}: check.Error,
		{sha(2), "a.patch"}: check.Applies, {sha(2), "b.patch"}: check.Applies,
		{sha(3), "a.patch"}: check.Fails, {sha(3), "b.patch"}: check.Applies,
		{sha(4), "a.patch"}: check.NoOp, {sha(4), "b.patch"}: check.Applies,
		{sha(5), "a.patch"}: check.Fails, {sha(5), "b.patch"}: check.Applies,
	}
	got := outcomes(res)
	for k, o := range wantOut {
		if got[k] != o {
			t.Errorf("%s at %s: %s, want %s", k.patch, k.commit[:12], got[k], o)
		}
	}
	for i, ok := range []bool{true, false, true, false, true, false} {
		if res.Commits[i].OK != ok {
			t.Errorf("commit %d: OK %v, want %v", i, res.Commits[i].OK, ok)
		}
	}
	if c := res.Commits[1]; !strings.Contains(c.Error, "fetching upstream") {
		t.Errorf("the commit that could not be checked says %q", c.Error)
	}
	if p := res.Commits[3].Patches[0]; !strings.Contains(p.Detail, "hunk") || p.Report.Status != patch.StatusFailed {
		t.Errorf("failure detail %q", p.Detail)
	}
	if p := res.Commits[2].Patches[1]; p.Files != 1 || p.Added != 1 || p.Removed != 1 {
		t.Errorf("change stat of an applied patch: %+v", p)
	}
	// a.patch applied at sha(2) and failed at sha(3). An unchecked commit
	// (sha(1)) is no failure of either patch.
	if len(res.FirstFailure) != 1 || res.FirstFailure["a.patch"] != sha(3) {
		t.Errorf("first failures %v, want a.patch at %s only", res.FirstFailure, sha(3)[:12])
	}
	if !res.LockedOK || res.NewestOK || !res.Failed() {
		t.Errorf("lockedOK %v newestOK %v", res.LockedOK, res.NewestOK)
	}
	err = res.Err()
	if !errors.Is(err, errs.ErrPatchFailed) || !strings.Contains(err.Error(), "the newest commit") || strings.Contains(err.Error(), "the locked commit") ||
		!strings.Contains(err.Error(), "a.patch since "+sha(3)[:12]) {
		t.Errorf("error %v", err)
	}
	var table bytes.Buffer
	if err := res.Table(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "a.patch: "+sha(3)) {
		t.Errorf("table does not name the first failure:\n%s", table.String())
	}
}

// TestPatchesRange: A..B checks the commits after A up to B, and the
// locked commit among them only once; a fine locked and newest commit
// pass the check.
func TestPatchesRange(t *testing.T) {
	r := loadRecipe(t)
	g := &locktest.Git{Refs: map[string]string{"v1": sha(1), "v3": sha(3)}}
	for i := 0; i <= 4; i++ {
		g.Commits = append(g.Commits, commitAt(i))
	}
	l := lockAt(r, commitAt(2))
	f := &fakeChecker{at: map[string][]patch.Report{}}
	for i := 0; i <= 4; i++ {
		f.at[sha(i)] = []patch.Report{applied("a.patch"), noop("b.patch")}
	}
	res, err := check.Patches(context.Background(), r, l, check.PatchesOptions{Checker: f, Git: g, Range: "v1..v3"})
	if err != nil {
		t.Fatal(err)
	}
	var checked []string
	for _, cl := range f.calls {
		checked = append(checked, cl.Upstream.Commit)
	}
	if want := []string{sha(2), sha(3)}; !slices.Equal(checked, want) {
		t.Errorf("checked %v, want %v", checked, want)
	}
	if res.Failed() || res.Err() != nil || len(res.FirstFailure) != 0 || !res.Commits[0].Locked {
		t.Errorf("result %+v, err %v", res, res.Err())
	}
	if o := outcomes(res)[cell{sha(3), "b.patch"}]; o != check.NoOp {
		t.Errorf("an optional-style no-op: %s", o)
	}

	_, err = check.Patches(context.Background(), r, l, check.PatchesOptions{Checker: f, Git: g, Range: "v1"})
	if !errors.Is(err, errs.ErrUsage) {
		t.Errorf("range without ..: %v, want a usage error", err)
	}
}

// layer is a gzip'd tar of files (path → content), with fixed times.
func layer(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(files[n])), ModTime: t0}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// imageBuilder is a fake Builder that writes a real image into the OCI
// layout it is asked for: its layers are images[n], for the n-th build.
type imageBuilder struct {
	t      *testing.T
	images [][]map[string]string
	fail   map[int]error
	reqs   []build.Request
}

func (b *imageBuilder) Build(ctx context.Context, r *recipe.Recipe, l *lock.Lock, req build.Request) (*build.Result, error) {
	t := b.t
	n := len(b.reqs)
	b.reqs = append(b.reqs, req)
	res := &build.Result{Commit: l.Upstream.Commit}
	if err := b.fail[n]; err != nil {
		return res, err
	}
	lay, err := store.CreateLayout(ctx, req.Output.OCIDir)
	if err != nil {
		return res, err
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, RootFS: ocispec.RootFS{Type: "layers"}}
	ids := []string{"source-layer", "layer/app"}
	for i, files := range b.images[n] {
		data := layer(t, files)
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(data), Size: int64(len(data))}
		if err := lay.PushBlob(ctx, desc, data); err != nil {
			return res, err
		}
		m.Layers = append(m.Layers, desc)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, desc.Digest) // stands for the diff id: only compared
		res.Steps = append(res.Steps, build.StepResult{ID: ids[i], LayerDigest: desc.Digest})
	}
	cb, _ := json.Marshal(cfg)
	m.Config = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cb), Size: int64(len(cb))}
	if err := lay.PushBlob(ctx, m.Config, cb); err != nil {
		return res, err
	}
	mb, _ := json.Marshal(m)
	desc, err := lay.PushManifest(ctx, m.MediaType, mb, "latest")
	if err != nil {
		return res, err
	}
	res.Digest, res.Descriptor, res.Manifest, res.Config = desc.Digest, desc, &m, &cfg
	return res, nil
}

// TestReproducibleNamesDifferingLayersAndFiles: the first build may use
// the cache, the second may not, each into its own layout; builds with
// different digests are reported with the layer that differs, its step,
// and the files that differ within it, and the error says so.
func TestReproducibleNamesDifferingLayersAndFiles(t *testing.T) {
	r := loadRecipe(t)
	l := lockAt(r, commitAt(0))
	src := map[string]string{"app/Gemfile": "gem 'rails'\n"}
	b := &imageBuilder{t: t, images: [][]map[string]string{
		{src, {"app/bin/server": "v1", "app/same": "same"}},
		{src, {"app/bin/server": "v2", "app/same": "same", "app/cache.tmp": "x"}},
	}}
	dir := t.TempDir()
	res, last, err := check.Reproducible(context.Background(), r, l, dir, check.ReproOptions{Builder: b})
	if err != nil {
		t.Fatal(err)
	}
	wantReqs := []build.Request{
		{Output: build.Output{OCIDir: filepath.Join(dir, "first")}},
		{Output: build.Output{OCIDir: filepath.Join(dir, "second")}, NoCache: true},
	}
	if !slices.Equal(b.reqs, wantReqs) {
		t.Errorf("requests %+v, want %+v", b.reqs, wantReqs)
	}
	if res.Reproducible || res.First == res.Second || last == nil || last.Digest != res.Second {
		t.Fatalf("result %+v (last %v): want a mismatch", res, last)
	}
	if len(res.Layers) != 1 {
		t.Fatalf("%d differing layers, want 1: %+v", len(res.Layers), res.Layers)
	}
	ld := res.Layers[0]
	if ld.Index != 1 || ld.Step != "layer/app" || ld.A == ld.B {
		t.Errorf("layer diff %+v, want layer 1 (layer/app)", ld)
	}
	if len(ld.Files) != 2 {
		t.Fatalf("file diffs %+v, want app/bin/server and app/cache.tmp", ld.Files)
	}
	if f := ld.Files[0]; f.Path != "app/bin/server" || f.A == nil || f.B == nil || f.A.SHA256 == f.B.SHA256 {
		t.Errorf("changed file %+v", f)
	}
	if f := ld.Files[1]; f.Path != "app/cache.tmp" || f.A != nil || f.B == nil {
		t.Errorf("added file %+v", f)
	}
	// The layer's diff id is in the config: it differs too, the
	// manifest's annotations and media types do not.
	if !res.ConfigDiffer || len(res.Manifest) != 0 {
		t.Errorf("config differs %v (want true), manifest differences %v (want none)", res.ConfigDiffer, res.Manifest)
	}
	err = res.Err()
	if !errors.Is(err, errs.ErrNotReproducible) {
		t.Fatalf("error %v, want errs.ErrNotReproducible", err)
	}
	for _, s := range []string{"the image configs differ", "layer 1 (layer/app)", "app/bin/server:", "app/cache.tmp: only in the second build"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not say %q:\n%v", s, err)
		}
	}
}

// TestReproducibleSameImage: equal builds are reproducible.
func TestReproducibleSameImage(t *testing.T) {
	r := loadRecipe(t)
	image := []map[string]string{{"app/Gemfile": "gem 'rails'\n"}, {"app/bin/server": "v1"}}
	b := &imageBuilder{t: t, images: [][]map[string]string{image, image}}
	res, _, err := check.Reproducible(context.Background(), r, lockAt(r, commitAt(0)), t.TempDir(), check.ReproOptions{Builder: b})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Reproducible || res.Err() != nil || res.First != res.Second || len(res.Layers) != 0 {
		t.Errorf("result %+v, err %v: want reproducible", res, res.Err())
	}
}

// TestReproducibleBuildFails: a failing build is the error, the second
// one named as the rebuild without cache.
func TestReproducibleBuildFails(t *testing.T) {
	r := loadRecipe(t)
	image := []map[string]string{{"app/bin/server": "v1"}}
	stepErr := &build.StepError{Step: `layer "app"`, Detail: "exit code: 1", Err: errors.New("failed")}
	for n, wantMsg := range map[int]string{0: `layer "app" failed`, 1: "rebuilding without cache: layer \"app\" failed"} {
		b := &imageBuilder{t: t, images: [][]map[string]string{image, image}, fail: map[int]error{n: stepErr}}
		res, _, err := check.Reproducible(context.Background(), r, lockAt(r, commitAt(0)), t.TempDir(), check.ReproOptions{Builder: b})
		if res != nil || !errors.Is(err, errs.ErrBuildFailed) || !strings.HasPrefix(err.Error(), wantMsg) || len(b.reqs) != n+1 {
			t.Errorf("build %d failing: result %v, error %v after %d builds; want %q", n, res, err, len(b.reqs), wantMsg)
		}
	}
}
