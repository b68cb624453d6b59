package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmbuild/vmbuild/bench/internal/harness"
	"github.com/vmbuild/vmbuild/recipe"
)

// Scenario 4 (issue #13): the Debian base of the streaming recipe (sid's
// nodejs, ca-certificates, dash, its users), alone: `vmbuild lock` with
// no index cache and with a warm one, and its build on a fresh daemon and
// again.

func (b *bench) debian(ctx context.Context) *Scenario {
	s := &Scenario{ID: "debian", Title: "Debian base: the streaming recipe's sid nodejs base (issue #13)", Facts: map[string]any{}}
	b.res.Scenarios = append(b.res.Scenarios, s)
	b.pkgs, b.isPkg = nil, nil
	path, err := b.debianSetup(ctx, s)
	if err != nil {
		b.errorf("debian: setup: %v", err)
		return s
	}
	for rep := 1; rep <= b.repsOf(s); rep++ {
		if ctx.Err() != nil {
			return s
		}
		if err := b.debianSequence(ctx, s, path, rep); err != nil && !s.recorded(err) {
			b.errorf("debian: rep %d: %v", rep, err)
		}
	}
	return s
}

func (b *bench) debianSetup(ctx context.Context, s *Scenario) (string, error) {
	raw, err := os.ReadFile(filepath.Join(b.root, "recipes", "mastodon", "streaming-hermetic.yaml"))
	if err != nil {
		return "", err
	}
	// The recipe's base block, as committed.
	text := string(raw)
	i, j := strings.Index(text, "\nbase:\n"), strings.Index(text, "\nbuild:\n")
	if i < 0 || j < i {
		return "", fmt.Errorf("recipes/mastodon/streaming-hermetic.yaml: no base: block before build: (update bench/cmd/hermetic)")
	}
	base, err := replaceAll(text[i+1:j+1], "    suite: sid\n", "    suite: sid\n    allowExpired: true\n")
	if err != nil {
		return "", err
	}
	if base, err = b.withMirror(base, "sid"); err != nil {
		return "", err
	}
	dir := filepath.Join(b.work, "debian")
	repo, gitURL, err := b.newRepo(ctx, "debian-base", filepath.Join(dir, "up"))
	if err != nil {
		return "", err
	}
	if _, err := commitFiles(ctx, repo, 0, "import", map[string]string{"README": "the Debian base alone\n"}); err != nil {
		return "", err
	}
	body := "apiVersion: vmbuild/v1\nname: sid-node-base\nupstream: {git: " + gitURL + ", ref: main}\nplatform: linux/amd64\n" + base +
		"build:\n  layers:\n    - name: probe\n      run: node --version > /opt/mastodon/node-version\n      outputs: [/opt/mastodon/node-version]\n" +
		"image:\n  workdir: /opt/mastodon\n  include: [README]\n"
	path := filepath.Join(dir, "base.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		return "", err
	}
	s.Setup = append(s.Setup,
		"Recipe: the `base:` block of recipes/mastodon/streaming-hermetic.yaml as committed (sid: nodejs, ca-certificates, dash; user and group mastodon) with `allowExpired: true` and `mirror:` the counting archive proxy, and one small layer (`node --version`, which a recipe needs: vmbuild wants at least one); the image is the base, a one-file source tree and that layer.",
		"Lock, the command: `bin/vmbuild lock base.yaml` run as a process (whole process timed), the lock files removed first (a fresh lock), with `VMBUILD_CACHE_DIR` an empty directory (cold), then the same directory again (warm). The command keeps Debian's Packages indexes in `VMBUILD_CACHE_DIR/debian`, so its warm lock reads sid's index from there while the verified InRelease still names it: the archive column shows what it fetched.",
		"Lock, in-process: `lock.Resolver` (what the command calls) with `deb.WithCacheDir`, a fresh lock each time. Cold: an empty Debian index cache (InRelease, then the Packages index downloaded and checked against it); warm: the cache the cold lock filled (the InRelease is always fetched; the Packages file is read from the cache when its sha256 still matches): what the command would take with an index cache.",
		"Build: cold on a fresh buildkitd (every .deb fetched from deb.debian.org and unpacked), warm on the same daemon right after.")
	return path, nil
}

func (b *bench) debianSequence(ctx context.Context, s *Scenario, path string, rep int) error {
	record := func(phase string, run Run, err error) {
		run.Contender, run.Phase, run.Rep = "hermetic", phase, rep
		if err != nil {
			run.Err = err.Error()
		}
		s.Runs = append(s.Runs, run)
		b.log.Info("debian", "rep", rep, "phase", phase, "wall", run.Wall.Round(10*time.Millisecond), "debs", run.Debs, "archive", run.Archive.String())
	}
	cache := filepath.Join(b.work, "cache", fmt.Sprintf("debian-cold-%d", rep))
	defer os.RemoveAll(cache)
	var pinned int
	for _, phase := range []string{"lock-cold", "lock-warm"} {
		_, l, run, err := b.lock(ctx, path, lockOpts{Fresh: true, DebCache: cache})
		if err == nil {
			run.Pinned = l.Debian.Packages
			if pinned != 0 && pinned != run.Pinned {
				err = fmt.Errorf("%w: the warm lock pinned %d packages, the cold one %d", errCheck, run.Pinned, pinned)
			}
			pinned = run.Pinned
			s.Facts["debianPackages"] = l.Debian.Packages
			s.Facts["debianInRelease"] = l.Debian.InRelease.Date.Format("2006-01-02") + " (" + l.Debian.Suite + ", " + l.Debian.InRelease.URL + ")"
			var size int64
			for _, p := range l.DepsLock.Base.Packages {
				size += p.Size
			}
			s.Facts["debBytes"] = size
		}
		record(phase, run, err)
		if err != nil {
			return err
		}
	}
	// The same, as the command: bin/vmbuild lock with its cache directory
	// (VMBUILD_CACHE_DIR: the Debian index and git caches) empty, then
	// warm; the whole process is timed.
	cliCache := filepath.Join(b.work, "cache", fmt.Sprintf("cli-%d", rep))
	defer os.RemoveAll(cliCache)
	for _, phase := range []string{"cli-lock-cold", "cli-lock-warm"} {
		run, err := b.lockCLI(ctx, path, cliCache)
		record(phase, run, err)
		if err != nil {
			return err
		}
	}
	r, l, _, err := b.lock(ctx, path, lockOpts{})
	if err != nil {
		return err
	}
	d, err := b.startDaemon(ctx)
	if err != nil {
		return err
	}
	defer d.stop()
	out := filepath.Join(b.work, "oci", fmt.Sprintf("debian-%d", rep))
	defer os.RemoveAll(out)
	var cold Run
	for _, phase := range []string{"cold", "warm"} {
		_, run, err := b.build(ctx, d, r, l, out, fmt.Sprintf("debian-%s-%d", phase, rep))
		if err == nil {
			switch {
			case phase == "cold" && (run.Debs != l.Debian.Packages || run.Unpacked != l.Debian.Packages):
				err = fmt.Errorf("%w: the cold build fetched %d and unpacked %d of %d .debs", errCheck, run.Debs, run.Unpacked, l.Debian.Packages)
			case phase == "warm" && (run.Debs != 0 || run.Unpacked != 0):
				err = fmt.Errorf("%w: the warm build fetched %d and unpacked %d .debs", errCheck, run.Debs, run.Unpacked)
			case phase == "warm" && run.Digest != cold.Digest:
				err = fmt.Errorf("%w: the warm build gave %s, the cold one %s", errCheck, run.Digest, cold.Digest)
			}
		}
		record(phase, run, err)
		if err != nil {
			return err
		}
		cold = run
	}
	return nil
}

// lockCLI runs `bin/vmbuild lock PATH` afresh (the lock files removed
// first) with VMBUILD_CACHE_DIR=cache, timing the whole process.
func (b *bench) lockCLI(ctx context.Context, path, cache string) (Run, error) {
	var run Run
	r, err := recipe.Load(path)
	if err != nil {
		return run, fmt.Errorf("loading recipe %s: %w", path, err)
	}
	depsLock := strings.TrimSuffix(r.LockPath(), ".lock.json") + ".deps.lock.json"
	for _, p := range []string{r.LockPath(), depsLock} {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return run, fmt.Errorf("removing %s: %w", p, err)
		}
	}
	cmd := exec.CommandContext(ctx, b.bins["vmbuild"], "lock", path)
	cmd.Env = append(os.Environ(), "VMBUILD_CACHE_DIR="+cache)
	b.take()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	run.Wall = time.Since(start)
	b.count(&run)
	if err != nil {
		return run, fmt.Errorf("running vmbuild lock %s: %w\n%s", path, err, harness.TailLines(string(out), 20))
	}
	if !fileExists(depsLock) {
		return run, fmt.Errorf("%w: vmbuild lock wrote no %s", errCheck, depsLock)
	}
	return run, nil
}
