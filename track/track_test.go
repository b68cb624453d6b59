package track

// Unit tests of the tracker's own concerns, through fake builders,
// publishers and git: no daemon, no registry, no network.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/lock/locktest"
	"github.com/vmbuild/vmbuild/patch"
	"github.com/vmbuild/vmbuild/publish"
	"github.com/vmbuild/vmbuild/recipe"
	"github.com/vmbuild/vmbuild/registry"
	"github.com/vmbuild/vmbuild/store"
	"github.com/vmbuild/vmbuild/track/history"
)

const unitRecipe = `apiVersion: vmbuild/v1
name: app
upstream:
  git: https://git.example/app.git
  ref: main
base: registry.example/base:1
platform: linux/amd64
patches:
  - file: fix.patch
build:
  layers:
    - name: app
      inputs: [Gemfile]
      run: make install
      outputs: [/app]
`

const unitRepo = "registry.example/app"

type buildCall struct {
	commit     string
	commitTime time.Time
	req        build.Request
}

// fakeBuilder records its calls and fails the commits in fail.
type fakeBuilder struct {
	mu    sync.Mutex
	calls []buildCall
	fail  map[string]error
	// block makes the build of a commit wait for its context to end.
	block map[string]bool
}

func imageDigest(commit string) digest.Digest { return digest.FromString("image " + commit) }

func (b *fakeBuilder) Build(ctx context.Context, r *recipe.Recipe, l *lock.Lock, req build.Request) (*build.Result, error) {
	b.mu.Lock()
	b.calls = append(b.calls, buildCall{l.Upstream.Commit, l.Upstream.CommitTime, req})
	err, block := b.fail[l.Upstream.Commit], b.block[l.Upstream.Commit]
	b.mu.Unlock()
	c := l.Upstream.Commit
	res := &build.Result{
		Commit: c, CommitTime: l.Upstream.CommitTime,
		Steps:   []build.StepResult{{ID: "layer/app", Cached: true, LayerDigest: digest.FromString("layer " + c)}},
		Patches: []patch.Report{{Patch: "fix.patch", Kind: patch.KindDiff, Status: patch.StatusApplied, Added: 1, Removed: 1}},
	}
	if block {
		<-ctx.Done()
		return res, fmt.Errorf("building app at %s: %w", c[:12], context.Cause(ctx))
	}
	var pe *build.PatchError
	if errors.As(err, &pe) {
		res.Patches[0].Status = patch.StatusFailed
		res.Patches[0].Failure = &patch.Failure{Reason: "hunk-failed", Message: "hunk 1 does not apply", File: "config/app.conf"}
	}
	if err != nil {
		return res, err
	}
	if req.Output.OCIDir != "" {
		// What the real builder leaves for the publisher: a layout.
		if _, err := store.CreateLayout(ctx, req.Output.OCIDir); err != nil {
			return res, err
		}
	}
	res.Digest = imageDigest(c)
	return res, nil
}

func (b *fakeBuilder) commits() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, c := range b.calls {
		out = append(out, c.commit)
	}
	return out
}

type publishCall struct {
	store  string
	tags   []string
	commit string
	digest digest.Digest
}

// fakePublisher records its calls and fails the commits in fail.
type fakePublisher struct {
	calls []publishCall
	fail  map[string]error
}

func (p *fakePublisher) Publish(ctx context.Context, st store.Store, tags []string, r *recipe.Recipe, l *lock.Lock, res *build.Result) (*publish.Report, error) {
	p.calls = append(p.calls, publishCall{st.String(), tags, l.Upstream.Commit, res.Digest})
	rep := &publish.Report{Image: st.String() + "@" + res.Digest.String()}
	if err := p.fail[l.Upstream.Commit]; err != nil {
		return rep, err
	}
	for _, t := range tags {
		rep.Tags = append(rep.Tags, st.String()+":"+t)
	}
	return rep, nil
}

func (p *fakePublisher) commits() []string {
	var out []string
	for _, c := range p.calls {
		out = append(out, c.commit)
	}
	return out
}

// unit is a recipe on disk, locked at the first of n+1 commits, with
// fakes wired into the tracker's options.
type unit struct {
	path    string
	r       *recipe.Recipe
	git     *locktest.Git
	builder *fakeBuilder
	pub     *fakePublisher
	opts    Options
}

func sha(i int) string { return strings.Repeat(fmt.Sprintf("%02x", 0x10+i), 20) }

func newUnit(t *testing.T, n int) *unit {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fix.patch"), []byte("--- a/config/app.conf\n+++ b/config/app.conf\n@@ -1 +1 @@\n-workers = 2\n+workers = 4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(path, []byte(unitRecipe), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := recipe.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	g := &locktest.Git{}
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i <= n; i++ {
		g.Commits = append(g.Commits, lock.Commit{SHA: sha(i), Time: t0.Add(time.Duration(i) * time.Hour), Subject: fmt.Sprintf("commit %d", i)})
	}
	l := lock.Skeleton(r)
	l.Upstream.Commit, l.Upstream.CommitTime = g.Commits[0].SHA, g.Commits[0].Time
	l.Base = &lock.ImagePin{Ref: lock.NormalizeImageRef(r.Base), Digest: "sha256:" + strings.Repeat("b", 64)}
	if err := lock.Write(r.LockPath(), l); err != nil {
		t.Fatal(err)
	}
	if err := lock.Check(r, l, r.LockPath()); err != nil {
		t.Fatalf("the test's lock is stale: %v", err)
	}
	u := &unit{path: path, r: r, git: g, builder: &fakeBuilder{fail: map[string]error{}, block: map[string]bool{}}, pub: &fakePublisher{fail: map[string]error{}}}
	u.opts = Options{
		Builder:   u.builder,
		Publisher: u.pub,
		Resolver:  lock.Resolver{Git: g},
		Repo:      unitRepo,
		Registry:  registry.New(),
	}
	return u
}

func (u *unit) once(t *testing.T) *Result {
	t.Helper()
	res, err := Once(context.Background(), u.path, u.opts)
	if err != nil {
		t.Fatalf("Once: %v", err)
	}
	return res
}

func (u *unit) lockedCommit(t *testing.T) string {
	t.Helper()
	l, err := lock.Read(u.r.LockPath())
	if err != nil {
		t.Fatal(err)
	}
	return l.Upstream.Commit
}

func (u *unit) history(t *testing.T) []history.Entry {
	t.Helper()
	h, err := history.Read(u.r.HistoryPath())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func outcomes(entries []history.Entry) map[string]history.Outcome {
	out := map[string]history.Outcome{}
	for _, e := range entries {
		out[e.Commit] = e.Outcome
	}
	return out
}

// TestOnceBuildsEachNewCommitOnce: every commit after the locked one is
// built once, oldest first, at its own commit and time, pushed by digest
// to the repository, published with the default tags; the lock advances to
// the newest, and a second run builds nothing.
func TestOnceBuildsEachNewCommitOnce(t *testing.T) {
	u := newUnit(t, 3)
	res := u.once(t)
	want := []string{sha(1), sha(2), sha(3)}
	if got := u.builder.commits(); !slices.Equal(got, want) {
		t.Fatalf("built %v, want %v", got, want)
	}
	for i, c := range u.builder.calls {
		if c.commitTime != u.git.Commits[i+1].Time {
			t.Errorf("commit %s built with commit time %v, want %v", short(c.commit), c.commitTime, u.git.Commits[i+1].Time)
		}
		if c.req.Output != (build.Output{PushRepo: unitRepo}) || c.req.NoCache {
			t.Errorf("commit %s built with request %+v, want a push by digest to %s", short(c.commit), c.req, unitRepo)
		}
	}
	if got := u.pub.commits(); !slices.Equal(got, want) {
		t.Fatalf("published %v, want %v", got, want)
	}
	for _, p := range u.pub.calls {
		wantTags := []string{"edge", "sha-" + p.commit[:12]}
		if p.store != unitRepo || !slices.Equal(p.tags, wantTags) || p.digest != imageDigest(p.commit) {
			t.Errorf("publish of %s: store %s tags %v digest %s; want %s %v %s", short(p.commit), p.store, p.tags, p.digest, unitRepo, wantTags, imageDigest(p.commit))
		}
	}
	if res.Err() != nil || res.Failed() || res.UpToDate || res.Head != sha(3) {
		t.Errorf("result %+v (err %v)", res, res.Err())
	}
	if got := u.lockedCommit(t); got != sha(3) {
		t.Errorf("lock at %s, want %s", short(got), short(sha(3)))
	}
	h := u.history(t)
	if len(h) != 3 {
		t.Fatalf("%d history entries, want 3", len(h))
	}
	for i, e := range h {
		if e.Commit != want[i] || e.Outcome != history.Published || e.Digest != imageDigest(e.Commit).String() ||
			e.Image != unitRepo+"@"+imageDigest(e.Commit).String() || len(e.Tags) != 2 || len(e.Steps) != 1 || len(e.Patches) != 1 || e.RecipeSHA256 == "" {
			t.Errorf("history entry %d: %+v", i, e)
		}
	}

	res = u.once(t)
	if !res.UpToDate || len(res.Entries) != 0 {
		t.Errorf("second run: %+v, want up to date", res)
	}
	if n := len(u.builder.calls); n != 3 {
		t.Errorf("the second run built again: %d builds in all", n)
	}
}

// TestOnceRecordsFailuresAndContinues: a commit whose patch fails and one
// whose build step fails are recorded with their outcome and step, are not
// published, and do not stop the run; the lock stays on the last good
// commit. A later run skips a commit that failed with the same recipe,
// unless RetryFailed.
func TestOnceRecordsFailuresAndContinues(t *testing.T) {
	u := newUnit(t, 4)
	u.builder.fail[sha(2)] = &build.PatchError{Report: patch.Report{Patch: "fix.patch", Status: patch.StatusFailed}, Commit: sha(2), Err: fmt.Errorf("patch fix.patch: %w", errs.ErrPatchFailed)}
	u.builder.fail[sha(4)] = &build.StepError{Step: `layer "app"`, Detail: "exit code: 1", Err: errors.New("process did not complete successfully")}
	res := u.once(t)

	if got, want := u.builder.commits(), []string{sha(1), sha(2), sha(3), sha(4)}; !slices.Equal(got, want) {
		t.Fatalf("built %v, want %v", got, want)
	}
	if got, want := u.pub.commits(), []string{sha(1), sha(3)}; !slices.Equal(got, want) {
		t.Errorf("published %v, want only the good commits %v", got, want)
	}
	got := map[string]history.Entry{}
	for _, e := range res.Entries {
		got[e.Commit] = e
	}
	want := map[string]history.Outcome{sha(1): history.Published, sha(2): history.PatchFailed, sha(3): history.Published, sha(4): history.BuildFailed}
	if o := outcomes(res.Entries); len(o) != 4 || !mapsEqual(o, want) {
		t.Errorf("outcomes %v, want %v", o, want)
	}
	if e := got[sha(2)]; e.FailedStep != "patch fix.patch" || !strings.Contains(e.Error, "fix.patch") || len(e.Patches) != 1 || e.Patches[0].Error == "" || e.Image != "" || len(e.Tags) != 0 {
		t.Errorf("patch failure recorded as %+v", e)
	}
	if e := got[sha(4)]; e.FailedStep != `layer "app"` || !strings.Contains(e.Error, "exit code: 1") || e.Image != "" {
		t.Errorf("build failure recorded as %+v", e)
	}
	err := res.Err()
	if err == nil || !res.Failed() || !strings.Contains(err.Error(), short(sha(2))) || !strings.Contains(err.Error(), short(sha(4))) ||
		strings.Contains(err.Error(), short(sha(1))) || strings.Contains(err.Error(), short(sha(3))) {
		t.Errorf("run error %v: want the failed commits, only", err)
	}
	if c := u.lockedCommit(t); c != sha(3) {
		t.Errorf("lock at %s, want the last good commit %s", short(c), short(sha(3)))
	}
	if h := u.history(t); !mapsEqual(outcomes(h), want) || len(h) != 4 {
		t.Errorf("history %v, want %v", outcomes(h), want)
	}

	// The failure at the head is deterministic: the next run skips it.
	res = u.once(t)
	if len(res.Entries) != 0 || !slices.Equal(res.Skipped, []string{sha(4)}) {
		t.Errorf("second run: entries %v, skipped %v; want %s skipped", outcomes(res.Entries), res.Skipped, short(sha(4)))
	}
	if n := len(u.builder.calls); n != 4 {
		t.Errorf("the second run built %d commits, want none", n-4)
	}
	if n := len(u.history(t)); n != 4 {
		t.Errorf("the second run wrote history: %d entries", n)
	}

	// Unless asked to retry: now it builds (fixed) and is published.
	delete(u.builder.fail, sha(4))
	u.opts.RetryFailed = true
	res = u.once(t)
	if o := outcomes(res.Entries); len(o) != 1 || o[sha(4)] != history.Published {
		t.Errorf("retry: outcomes %v, want %s published", o, short(sha(4)))
	}
	if c := u.lockedCommit(t); c != sha(4) {
		t.Errorf("lock at %s after the retry, want %s", short(c), short(sha(4)))
	}
}

// TestOnceDeadlineIsRetried: a build that runs out of its deadline is an
// error, not a build failure: it names the deadline, and the next run
// builds the commit again instead of skipping it.
func TestOnceDeadlineIsRetried(t *testing.T) {
	u := newUnit(t, 1)
	u.opts.BuildTimeout = 50 * time.Millisecond
	u.builder.block[sha(1)] = true
	res := u.once(t)
	if len(res.Entries) != 1 {
		t.Fatalf("%d entries, want 1", len(res.Entries))
	}
	if e := res.Entries[0]; e.Outcome != history.Error || !strings.Contains(e.Error, "build deadline (50ms) exceeded") {
		t.Errorf("entry %+v: want outcome %s naming the deadline", e, history.Error)
	}
	if len(u.pub.calls) != 0 || u.lockedCommit(t) != sha(0) {
		t.Errorf("a commit that did not build was published or locked")
	}

	u.builder.block[sha(1)] = false
	res = u.once(t)
	if o := outcomes(res.Entries); o[sha(1)] != history.Published || len(res.Skipped) != 0 {
		t.Errorf("second run: %v, skipped %v; want %s rebuilt and published", o, res.Skipped, short(sha(1)))
	}
}

// TestOncePublishFailureMovesNothing: a commit that built but whose
// publishing failed is recorded as publish-failed with the publisher's
// step, the lock does not advance to it, and the next commit is still
// built and published.
func TestOncePublishFailureMovesNothing(t *testing.T) {
	u := newUnit(t, 2)
	u.pub.fail[sha(1)] = &publish.Error{Image: unitRepo, Step: "signing", Done: []string{"image (by digest)"}, Err: errors.New("key unavailable")}
	u.opts.MaxCommits = 1
	res := u.once(t)
	if len(res.Entries) != 1 {
		t.Fatalf("%d entries, want 1 (MaxCommits)", len(res.Entries))
	}
	if e := res.Entries[0]; e.Commit != sha(1) || e.Outcome != history.PublishFailed || e.FailedStep != "signing" || !strings.Contains(e.Error, "key unavailable") || e.Digest != imageDigest(sha(1)).String() {
		t.Errorf("entry %+v: want %s publish-failed at signing", e, short(sha(1)))
	}
	if c := u.lockedCommit(t); c != sha(0) {
		t.Errorf("lock advanced to %s after a failed publish", short(c))
	}

	u.opts.MaxCommits = 0
	res = u.once(t)
	if o := outcomes(res.Entries); !mapsEqual(o, map[string]history.Outcome{sha(1): history.PublishFailed, sha(2): history.Published}) {
		t.Errorf("second run: %v; want %s retried (publish failures are not skipped) and %s published", o, short(sha(1)), short(sha(2)))
	}
	if c := u.lockedCommit(t); c != sha(2) {
		t.Errorf("lock at %s, want %s", short(c), short(sha(2)))
	}
}

// TestOnceIntoLayout: without a repository each commit is built into the
// OCI layout under its sha- tag, and a given publisher signs it there,
// moving no tags.
func TestOnceIntoLayout(t *testing.T) {
	u := newUnit(t, 1)
	u.opts.Repo = ""
	u.opts.OCIDir = filepath.Join(t.TempDir(), "oci")
	res := u.once(t)
	if len(u.builder.calls) != 1 {
		t.Fatalf("%d builds, want 1", len(u.builder.calls))
	}
	if got, want := u.builder.calls[0].req.Output, (build.Output{OCIDir: u.opts.OCIDir, OCITag: "sha-" + sha(1)[:12]}); got != want {
		t.Errorf("output %+v, want %+v", got, want)
	}
	if len(u.pub.calls) != 1 || u.pub.calls[0].store != "oci:"+u.opts.OCIDir || len(u.pub.calls[0].tags) != 0 {
		t.Errorf("publish calls %+v: want one into oci:%s with no tags", u.pub.calls, u.opts.OCIDir)
	}
	if len(res.Entries) != 1 || res.Entries[0].Outcome != history.Built || res.Entries[0].Image != u.opts.OCIDir+"@"+imageDigest(sha(1)).String() {
		t.Errorf("entries %+v: want built into the layout", res.Entries)
	}
	if c := u.lockedCommit(t); c != sha(1) {
		t.Errorf("lock at %s, want %s", short(c), short(sha(1)))
	}
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
