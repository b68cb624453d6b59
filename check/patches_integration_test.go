package check_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/check"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/fixture"
	"github.com/vmbuild/vmbuild/internal/testenv"
	"github.com/vmbuild/vmbuild/lock"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const recipeBody = `apiVersion: vmbuild/v1
name: app
upstream: {git: %GIT%, ref: main}
base: %BASE%
patches:
%PATCHES%
build:
  layers:
    - {name: noop, run: "true", outputs: [/opt/x]}
`

type env struct {
	*fixture.Env
	opts build.Options
}

func start(t *testing.T) *env {
	e := fixture.Start(t)
	c := e.Connect(t, "")
	return &env{Env: e, opts: build.Options{Client: c.Client, HelperPath: e.Helper}}
}

// check writes a recipe with the given patch entries and files, locks it
// at the upstream's head and runs the patches.
func (e *env) check(t *testing.T, up *testenv.Repo, entries string, files map[string]string) ([]string, error) {
	t.Helper()
	body := strings.Replace(recipeBody, "%PATCHES%", entries, 1)
	path := e.WriteRecipe(t, body, up.URL, files)
	r, l := e.Lock(t, path, lock.Options{Update: true})
	reports, err := build.New(e.opts).CheckPatches(context.Background(), r, l)
	var out []string
	for _, rep := range reports {
		out = append(out, fmt.Sprintf("%s:%s:%s", rep.Patch, rep.Status, rep.Summary()))
	}
	return out, err
}

func upstream(t *testing.T, e *env, name string) *testenv.Repo {
	up := testenv.NewRepo(t, e.Git, name)
	up.Write("config/app.conf", "listen = 0.0.0.0:3000\nworkers = 2\nthreads = 5\n")
	up.Write("lib/redis.rb", "REDIS = { driver: :hiredis }\n")
	up.Write("Gemfile", "gem 'rails'\ngem 'hiredis', '~> 0.6'\n")
	up.Symlink("/etc", "etc-link")
	up.Symlink("../../..", "up")
	up.Commit("one", fixture.T0)
	return up
}

const workersDiff = "--- a/config/app.conf\n+++ b/config/app.conf\n@@ -1,3 +1,3 @@\n listen = 0.0.0.0:3000\n-workers = 2\n+workers = 4\n threads = 5\n"

func TestPatchSemantics(t *testing.T) {
	e := start(t)
	up := upstream(t, e, "sem")

	t.Run("diff applies", func(t *testing.T) {
		got, err := e.check(t, up, "  - file: w.patch", map[string]string{"w.patch": workersDiff})
		if err != nil || len(got) != 1 || got[0] != "w.patch:applied:1 file, +1 -1" {
			t.Fatalf("%v %v", got, err)
		}
	})
	t.Run("several patches in order, the second needs the first", func(t *testing.T) {
		second := "--- a/config/app.conf\n+++ b/config/app.conf\n@@ -1,3 +1,3 @@\n listen = 0.0.0.0:3000\n-workers = 4\n+workers = 8\n threads = 5\n"
		got, err := e.check(t, up, "  - file: w.patch\n  - file: w8.patch\n  - script: s.sh", map[string]string{
			"w.patch": workersDiff, "w8.patch": second, "s.sh": "grep -q 'workers = 8' config/app.conf\nsed -i 's/threads = 5/threads = 6/' config/app.conf\n"})
		if err != nil || len(got) != 3 {
			t.Fatalf("%v %v", got, err)
		}
	})
	t.Run("no-op diff and no-op script", func(t *testing.T) {
		noop := "--- a/config/app.conf\n+++ b/config/app.conf\n@@ -1,3 +1,3 @@\n listen = 0.0.0.0:3000\n-workers = 2\n+workers = 2\n threads = 5\n"
		_, err := e.check(t, up, "  - file: noop.patch", map[string]string{"noop.patch": noop})
		if !errors.Is(err, errs.ErrPatchFailed) || !strings.Contains(err.Error(), `noop.patch" made no change at commit`) {
			t.Errorf("no-op diff: %v", err)
		}
		_, err = e.check(t, up, "  - script: noop.sh", map[string]string{"noop.sh": "sed -i '/not-there/d' Gemfile\n"})
		if !errors.Is(err, errs.ErrPatchFailed) || !strings.Contains(err.Error(), `noop.sh" made no change at commit`) {
			t.Errorf("no-op script: %v", err)
		}
		got, err := e.check(t, up, "  - {script: noop.sh, optional: true}", map[string]string{"noop.sh": "sed -i '/not-there/d' Gemfile\n"})
		if err != nil || !strings.Contains(got[0], "noop") {
			t.Errorf("optional no-op: %v %v", got, err)
		}
	})
	t.Run("unsafe paths refused before anything runs", func(t *testing.T) {
		for name, p := range map[string]string{
			"dotdot":   "--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n",
			"absolute": "--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n",
			"gitdir":   "--- a/.git/config\n+++ b/.git/config\n@@ -1 +1 @@\n-a\n+b\n",
		} {
			_, err := e.check(t, up, "  - file: x.patch", map[string]string{"x.patch": p})
			if !errors.Is(err, errs.ErrUnsafePatch) || !strings.Contains(err.Error(), "x.patch") {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
	t.Run("symlink escape", func(t *testing.T) {
		for _, target := range []string{"etc-link/hostname", "up/tmp/owned"} {
			p := fmt.Sprintf("--- /dev/null\n+++ b/%s\n@@ -0,0 +1 @@\n+owned\n", target)
			_, err := e.check(t, up, "  - file: x.patch", map[string]string{"x.patch": p})
			if !errors.Is(err, errs.ErrUnsafePatch) {
				t.Errorf("%s: %v", target, err)
			}
		}
	})
	t.Run("script cannot write outside the tree", func(t *testing.T) {
		_, err := e.check(t, up, "  - script: evil.sh", map[string]string{"evil.sh": "echo owned > /etc/owned\n"})
		if !errors.Is(err, errs.ErrPatchFailed) || !strings.Contains(err.Error(), "/etc/owned: Read-only file system") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("script has no network", func(t *testing.T) {
		_, err := e.check(t, up, "  - script: net.sh", map[string]string{"net.sh": "wget -q -O Gemfile http://" + e.Reg.Host + "/v2/\n"})
		if !errors.Is(err, errs.ErrPatchFailed) {
			t.Errorf("got %v", err)
		}
	})
}

// TestUpstreamMoves: a commit moves a diff's context and deletes a file a
// sed script edits: both fail, naming hunk, file, command and commit.
func TestUpstreamMoves(t *testing.T) {
	e := start(t)
	up := upstream(t, e, "moves")
	up.Write("config/app.conf", "listen = 0.0.0.0:3000\nworkers = 3\nthreads = 5\n")
	up.Remove("lib/redis.rb")
	head := up.Commit("upstream moved", fixture.T0.Add(time.Hour))

	_, err := e.check(t, up, "  - file: w.patch", map[string]string{"w.patch": workersDiff})
	var pe *build.PatchError
	if !errors.As(err, &pe) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{"w.patch", "@@ -1,3 +1,3 @@", "config/app.conf", head[:8], "workers = 2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("hunk failure lacks %q: %v", want, err)
		}
	}
	_, err = e.check(t, up, "  - script: redis.sh", map[string]string{"redis.sh": "sed -i 's/, driver: :hiredis//' ./Gemfile\nsed -i 's/driver: :hiredis//' ./lib/redis.rb\n"})
	for _, want := range []string{"redis.sh", "sed -i 's/driver: :hiredis//' ./lib/redis.rb", "No such file", head[:8]} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("script failure lacks %q: %v", want, err)
		}
	}
}

// TestCheckRange: over ten commits a patch breaks at commit 6; patch check
// reports commit 6 as its first failure and fails (the newest commit does).
func TestCheckRange(t *testing.T) {
	e := start(t)
	up := upstream(t, e, "range")
	var commits []string
	commits = append(commits, up.Head())
	for i := 2; i <= 10; i++ {
		if i >= 6 {
			up.Write("config/app.conf", fmt.Sprintf("listen = 0.0.0.0:3000\nworkers = %d\nthreads = 5\n", i))
		} else {
			up.Write("README", fmt.Sprintf("revision %d\n", i))
		}
		commits = append(commits, up.Commit(fmt.Sprintf("commit %d", i), fixture.T0.Add(time.Duration(i)*time.Hour)))
	}
	body := strings.Replace(recipeBody, "%PATCHES%", "  - file: w.patch\n  - script: s.sh", 1)
	path := e.WriteRecipe(t, body, up.URL, map[string]string{"w.patch": workersDiff, "s.sh": "sed -i 's/hiredis/redis-client/' Gemfile\n"})
	r, l := e.Lock(t, path, lock.Options{Commit: commits[0]})
	res, err := check.Patches(context.Background(), r, l, check.PatchesOptions{Build: e.opts, Git: lock.GitCLI{CacheDir: t.TempDir()}, Last: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Commits) != 10 {
		t.Fatalf("%d commits checked", len(res.Commits))
	}
	for i, c := range res.Commits {
		want := check.Applies
		if i+1 >= 6 {
			want = check.Fails
		}
		if c.Patches[0].Outcome != want || c.Patches[1].Outcome != check.Applies {
			t.Errorf("commit %d: %+v", i+1, c.Patches)
		}
	}
	if got := res.FirstFailure["w.patch"]; got != commits[5] {
		t.Errorf("first failure %s, want commit 6 %s", got, commits[5])
	}
	if _, ok := res.FirstFailure["s.sh"]; ok {
		t.Error("s.sh reported failing")
	}
	if !res.LockedOK || res.NewestOK || res.Err() == nil {
		t.Errorf("locked ok %v newest ok %v err %v", res.LockedOK, res.NewestOK, res.Err())
	}
	var table strings.Builder
	res.Table(&table)
	if !strings.Contains(table.String(), "w.patch: "+commits[5]) {
		t.Errorf("table:\n%s", table.String())
	}
}

// BenchmarkCheck50Commits: `patch check` over 50 upstream commits (one
// diff and one script patch), cold and then again with BuildKit's cache
// warm. Run: VMBUILD_INTEGRATION=1 go test -run '^$' -bench Check50 -benchtime 1x ./patchcheck
func BenchmarkCheck50Commits(b *testing.B) {
	fe := fixture.Start(b)
	c := fe.Connect(b, "")
	e := &env{Env: fe, opts: build.Options{Client: c.Client, HelperPath: fe.Helper}}
	up := testenv.NewRepo(b, e.Git, "fifty")
	up.Write("config/app.conf", "listen = 0.0.0.0:3000\nworkers = 2\nthreads = 5\n")
	up.Write("Gemfile", "gem 'rails'\ngem 'hiredis', '~> 0.6'\n")
	up.Commit("one", fixture.T0)
	for i := 2; i <= 50; i++ {
		up.Write("README", fmt.Sprintf("revision %d\n", i))
		up.Commit(fmt.Sprintf("commit %d", i), fixture.T0.Add(time.Duration(i)*time.Hour))
	}
	body := strings.Replace(recipeBody, "%PATCHES%", "  - file: w.patch\n  - script: s.sh", 1)
	path := e.WriteRecipe(b, body, up.URL, map[string]string{"w.patch": workersDiff, "s.sh": "sed -i 's/hiredis/redis-client/' Gemfile\n"})
	r, l := e.Lock(b, path, lock.Options{})
	for _, pass := range []string{"cold", "warm"} {
		start := time.Now()
		res, err := check.Patches(context.Background(), r, l, check.PatchesOptions{Build: e.opts, Git: lock.GitCLI{CacheDir: b.TempDir()}, Last: 50})
		if err != nil || len(res.Commits) != 50 || res.Failed() {
			b.Fatalf("%v %d", err, len(res.Commits))
		}
		b.ReportMetric(time.Since(start).Seconds(), pass+"-s/50commits")
	}
}
