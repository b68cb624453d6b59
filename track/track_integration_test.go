package track

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/buildkit/client"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/buildkit"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/fixture"
	"github.com/vmbuild/vmbuild/internal/testenv"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/publish"
	"github.com/vmbuild/vmbuild/recipe"
	"github.com/vmbuild/vmbuild/sign"
	"github.com/vmbuild/vmbuild/track/history"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type tenv struct {
	*fixture.Env
	signer *sign.Signer
}

func setup(t *testing.T) *tenv {
	t.Helper()
	e := &tenv{Env: fixture.Start(t)}
	priv, _, err := sign.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.signer, err = sign.LoadPrivateKey(priv, nil); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *tenv) options(t *testing.T, c *client.Client, repo string) Options {
	return Options{
		Build:    build.Options{Client: c, HelperPath: e.Helper, BuildKitVersion: "test"},
		Resolver: lock.Resolver{Git: lock.GitCLI{CacheDir: t.TempDir()}, Images: lock.Images{Registry: e.Registry()}},
		Repo:     repo,
		Registry: e.Registry(),
		Publish:  publish.Options{Signer: e.signer, Formats: sign.FormatLegacy},
	}
}

// TestTrackSixCommits: a source-only commit, a lockfile bump, a commit that
// breaks a patch and later ones that are fine again. The history shows the
// bundle step cached on the source-only commit, the broken commit recorded
// and not published, and the lock and tags end on the newest good commit.
func TestTrackSixCommits(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	up := e.NewUpstream(t, "six")
	path := e.WriteRecipe(t, fixture.NativeRecipe, up.URL, fixture.Patches())
	repo := e.Reg.Ref("six")
	c := e.Connect(t, "")
	opts := e.options(t, c.Client, repo)

	// First run: no lock yet; it locks and builds the head.
	res, err := Once(ctx, path, opts)
	if err != nil || res.Err() != nil || len(res.Entries) != 1 {
		t.Fatalf("first run: %+v %v %v", res, err, res.Err())
	}
	c1 := up.Head()

	at := func(h int) time.Time { return fixture.T0.Add(time.Duration(h) * time.Hour) }
	up.Write("app/models/status.rb", "class Status\n  def ok; end\nend\n")
	c2 := up.Commit("source only", at(2))
	up.Write("Gemfile.lock", strings.Replace(fixture.AppFiles()["Gemfile.lock"], "rails (8.0.1)", "rails (8.0.2)", 1))
	c3 := up.Commit("bump rails", at(3))
	up.Write("config/app.conf", "listen = 0.0.0.0:3000\nworkers = 3\n")
	c4 := up.Commit("workers 3 (breaks the patch)", at(4))
	up.Write("config/app.conf", "listen = 0.0.0.0:3000\nworkers = 2\n")
	c5 := up.Commit("workers back to 2", at(5))
	up.Write("app/javascript/application.js", "export const hello = () => 'hi';\n")
	c6 := up.Commit("js only", at(6))

	res, err = Once(ctx, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Err() == nil || !strings.Contains(res.Err().Error(), short(c4)) {
		t.Errorf("the run should fail naming %s: %v", short(c4), res.Err())
	}
	got := map[string]history.Entry{}
	for _, en := range res.Entries {
		got[en.Commit] = en
	}
	if len(res.Entries) != 5 {
		t.Fatalf("%d entries, want 5", len(res.Entries))
	}
	want := map[string]history.Outcome{c2: history.Published, c3: history.Published, c4: history.PatchFailed, c5: history.Published, c6: history.Published}
	for c, o := range want {
		if got[c].Outcome != o {
			t.Errorf("commit %s: outcome %s, want %s (%s)", short(c), got[c].Outcome, o, got[c].Error)
		}
	}
	stepCached := func(en history.Entry, id string) bool {
		for _, s := range en.Steps {
			if s.ID == id {
				return s.Cached
			}
		}
		t.Fatalf("commit %s has no step %s", short(en.Commit), id)
		return false
	}
	if !stepCached(got[c2], "layer/bundle") {
		t.Error("bundle step not cached on the source-only commit")
	}
	if stepCached(got[c3], "layer/bundle") {
		t.Error("bundle step cached on the lockfile bump")
	}
	if p := got[c4].Patches; len(p) == 0 || !strings.Contains(got[c4].Error, "workers.patch") || got[c4].FailedStep != "patch workers.patch" {
		t.Errorf("broken commit: patches %+v, step %q, error %q", p, got[c4].FailedStep, got[c4].Error)
	}
	if got[c4].Digest != "" || len(got[c4].Tags) != 0 {
		t.Errorf("the broken commit was published: %+v", got[c4])
	}
	reg := e.Registry()
	tags, _ := reg.ListTags(ctx, repo)
	if containsStr(tags, "sha-"+c4[:12]) {
		t.Errorf("tag for the broken commit exists: %v", tags)
	}
	for _, c := range []string{c1, c2, c3, c5, c6} {
		if !containsStr(tags, "sha-"+c[:12]) {
			t.Errorf("no tag for good commit %s: %v", short(c), tags)
		}
	}
	edge, err := reg.Resolve(ctx, repo+":edge")
	if err != nil || edge.Digest.String() != got[c6].Digest {
		t.Errorf("edge = %v (%v), want %s", edge.Digest, err, got[c6].Digest)
	}
	r, _ := recipe.Load(path)
	l, err := lock.Read(r.LockPath())
	if err != nil || l.Upstream.Commit != c6 || !l.Upstream.CommitTime.Equal(at(6)) {
		t.Errorf("lock at %s (%v), want %s", l.Upstream.Commit, err, c6)
	}
	// The whole history is on disk, one line per build.
	all, err := history.Read(r.HistoryPath())
	if err != nil || len(all) != 6 {
		t.Fatalf("history: %d entries, %v", len(all), err)
	}
	// A further run is up to date; the broken commit is not retried.
	res, err = Once(ctx, path, opts)
	if err != nil || !res.UpToDate {
		t.Errorf("third run: %+v %v", res, err)
	}
	var md, html strings.Builder
	if err := Report(&md, "six", all, "md"); err != nil || !strings.Contains(md.String(), "patch-failed") {
		t.Errorf("md report: %v\n%s", err, md.String())
	}
	if err := Report(&html, "six", all, "html"); err != nil || !strings.Contains(html.String(), "<svg") {
		t.Errorf("html report: %v", err)
	}
}

func containsStr(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestBuildkitdKilledMidBuild: the daemon dies during a build; the run
// reports it within the deadline, moves no tag, and the next run (on a
// working daemon) builds the commit.
func TestBuildkitdKilledMidBuild(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	up := e.NewUpstream(t, "killed")
	body := strings.Replace(fixture.NativeRecipe, "run: sh bin/fake-bundle", "run: sleep 6 && sh bin/fake-bundle", 1)
	path := e.WriteRecipe(t, body, up.URL, fixture.Patches())
	e.Lock(t, path, lock.Options{})
	repo := e.Reg.Ref("killed")

	bk := testenv.StartBuildKit(t)
	c := e.Connect(t, bk.Addr)
	opts := e.options(t, c.Client, repo)
	opts.BuildTimeout = 90 * time.Second
	opts.Watchdog = buildkit.WatchdogOptions{Interval: 500 * time.Millisecond, Timeout: 2 * time.Second, Failures: 2}
	go func() {
		time.Sleep(3 * time.Second)
		_ = syscall.Kill(bk.PID, syscall.SIGKILL)
	}()
	start := time.Now()
	res, err := Once(ctx, path, opts)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if took > opts.BuildTimeout {
		t.Errorf("took %s, longer than the deadline", took)
	}
	if len(res.Entries) != 1 || res.Entries[0].Outcome != history.Error || res.Err() == nil {
		t.Fatalf("entries %+v", res.Entries)
	}
	if tags, _ := e.Registry().ListTags(ctx, repo); len(tags) != 0 {
		t.Errorf("tags moved: %v", tags)
	}
	// The next run, on a new daemon, builds it.
	bk2 := testenv.StartBuildKit(t)
	c2 := e.Connect(t, bk2.Addr)
	opts = e.options(t, c2.Client, repo)
	res, err = Once(ctx, path, opts)
	if err != nil || res.Err() != nil || len(res.Entries) != 1 || res.Entries[0].Outcome != history.Published {
		t.Fatalf("next run: %+v %v %v", res, err, res.Err())
	}
}

// TestConcurrentRuns: a second run on the same recipe exits with a clear
// message, or waits with Wait.
func TestConcurrentRuns(t *testing.T) {
	e := setup(t)
	up := e.NewUpstream(t, "conc")
	path := e.WriteRecipe(t, fixture.NativeRecipe, up.URL, fixture.Patches())
	r, _ := recipe.Load(path)
	unlock, err := lockRecipe(context.Background(), r, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := e.Connect(t, "")
	opts := e.options(t, c.Client, e.Reg.Ref("conc"))
	_, err = Once(context.Background(), path, opts)
	if !errors.Is(err, errs.ErrLocked) || !strings.Contains(err.Error(), "process "+itoa(os.Getpid())) || !strings.Contains(err.Error(), "--wait") {
		t.Fatalf("got %v", err)
	}
	opts.Wait = true
	done := make(chan error, 1)
	go func() {
		res, err := Once(context.Background(), path, opts)
		if err == nil {
			err = res.Err()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the waiting run did not wait: %v", err)
	case <-time.After(1500 * time.Millisecond):
	}
	unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the waiting run never ran")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestRegistryCacheTwoBuilders: builder A exports its cache to the
// registry; builder B (another buildkitd, empty state) builds the same
// commit from it, its steps reported cached.
func TestRegistryCacheTwoBuilders(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	up := e.NewUpstream(t, "scale")
	path := e.WriteRecipe(t, fixture.NativeRecipe, up.URL, fixture.Patches())
	r, l := e.Lock(t, path, lock.Options{})
	cacheRef := e.Reg.Ref("scale-cache") + ":buildcache"
	cache := client.CacheOptionsEntry{Type: "registry", Attrs: map[string]string{"ref": cacheRef, "mode": "max", "image-manifest": "true", "oci-mediatypes": "true"}}

	a, b := testenv.StartBuildKit(t), testenv.StartBuildKit(t)
	ca, cb := e.Connect(t, a.Addr), e.Connect(t, b.Addr)
	resA, err := build.Build(ctx, r, l, build.Options{Client: ca.Client, HelperPath: e.Helper, Output: build.Output{OCIDir: filepath.Join(t.TempDir(), "a")}, CacheExports: []client.CacheOptionsEntry{cache}})
	if err != nil {
		t.Fatal(err)
	}
	resB, err := build.Build(ctx, r, l, build.Options{Client: cb.Client, HelperPath: e.Helper, Output: build.Output{OCIDir: filepath.Join(t.TempDir(), "b")}, CacheImports: []client.CacheOptionsEntry{{Type: "registry", Attrs: map[string]string{"ref": cacheRef}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range resB.Vertices {
		t.Logf("B vertex cached=%v %s", v.Cached, v.Name)
	}
	if resA.Digest != resB.Digest {
		t.Errorf("builders disagree: %s vs %s", resA.Digest, resB.Digest)
	}
	for _, id := range []string{"layer/bundle", "layer/assets"} {
		if cached, ok := resA.StepCached(id); !ok || cached {
			t.Errorf("builder A: %s cached=%v (a cold builder)", id, cached)
		}
		if cached, ok := resB.StepCached(id); !ok || !cached {
			t.Errorf("builder B: %s cached=%v, want it from the registry cache", id, cached)
		}
	}
}
