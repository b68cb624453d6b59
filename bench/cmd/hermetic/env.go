package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/util/progress/progressui"

	"github.com/vmbuild/vmbuild/bench/internal/gen"
	"github.com/vmbuild/vmbuild/bench/internal/harness"
	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/buildkit"
	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/deps/deb"
	"github.com/vmbuild/vmbuild/internal/testenv/detgit"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/recipe"
	"github.com/vmbuild/vmbuild/registry"
)

// bench is one run of the hermetic benchmark.
type bench struct {
	root    string // the vmbuild checkout
	work    string // the work directory (removed at the end unless kept)
	quick   bool
	reps    int            // repetitions of every sequence
	repsBy  map[string]int // per scenario, overriding reps
	log     *slog.Logger
	verbose *slog.Logger // vmbuild's own log lines (--verbose), else nil
	bins    map[string]string
	res     *Results
	daemons int

	// debCache is the Debian index cache shared by the scenarios' locks
	// (scenario debian measures a cold one separately).
	debCache string
	// archive is the counting proxy in front of deb.debian.org every
	// recipe's base.debian.mirror points at; pkgs is the current
	// scenario's package source (a proxy to the npm registry, the gem
	// source), with isPkg telling its package downloads from the rest.
	archive *harness.Counter
	gitd    *harness.GitDaemon
	// quickDaemon is the current scenario's daemon with --quick.
	quickDaemon *daemon
	pkgs        *harness.Counter
	isPkg       func(path string) bool
}

// buildkitd is a wrapper of bin/buildkitd that allows the network.host
// entitlement (the baselines' layers run with the host network), as
// vmbuild's managed daemon does; harness.StartBuildKitd runs it.
func (b *bench) buildkitd() (string, error) {
	p := filepath.Join(b.work, "bin", "buildkitd")
	if fileExists(p) {
		return p, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	script := "#!/bin/sh\nexec '" + b.bins["buildkitd"] + "' --allow-insecure-entitlement network.host \"$@\"\n"
	return p, os.WriteFile(p, []byte(script), 0o755)
}

// newRepo makes a repository of fixed identities and dates (detgit),
// NAME.git in the run's git directory, with its work tree at workTree,
// served by the run's git daemon; it returns the repository and its
// git:// URL.
func (b *bench) newRepo(ctx context.Context, name, workTree string) (*detgit.Repo, string, error) {
	r, err := detgit.Init(ctx, filepath.Join(b.work, "git", name+".git"), workTree)
	if err != nil {
		return nil, "", fmt.Errorf("creating repository %s: %w", name, err)
	}
	u, err := b.serveGit(ctx, name)
	return r, u, err
}

// cloneRepo clones src (a repository or bundle, every branch) as NAME.git
// in the run's git directory, with its work tree at workTree checked out
// at branch, served by the run's git daemon; it returns the repository and
// its git:// URL.
func (b *bench) cloneRepo(ctx context.Context, src, name, workTree, branch string) (*detgit.Repo, string, error) {
	r := &detgit.Repo{GitDir: filepath.Join(b.work, "git", name+".git"), WorkTree: workTree}
	if err := os.MkdirAll(workTree, 0o755); err != nil {
		return nil, "", fmt.Errorf("creating the work tree of %s: %w", name, err)
	}
	cmd := exec.CommandContext(ctx, "git", "clone", "-q", "--bare", src, r.GitDir)
	cmd.Env = detgit.Env()
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("cloning %s: %w\n%s", src, err, out)
	}
	if _, err := r.Git(ctx, "checkout", "-q", "-f", branch); err != nil {
		return nil, "", fmt.Errorf("checking out %s of %s: %w", branch, src, err)
	}
	u, err := b.serveGit(ctx, name)
	return r, u, err
}

// serveGit starts the run's git daemon on first use, serving the run's git
// directory, and returns NAME.git's URL.
func (b *bench) serveGit(ctx context.Context, name string) (string, error) {
	if b.gitd == nil {
		g, err := harness.StartGitDaemon(ctx, filepath.Join(b.work, "git"), filepath.Join(b.work, "git-daemon.log"), detgit.Env())
		if err != nil {
			return "", fmt.Errorf("starting git daemon: %w", err)
		}
		b.gitd = g
	}
	return b.gitd.URL(name), nil
}

// commitFiles writes files (slash-separated paths, mode 0644) into r's
// work tree and commits the whole tree as the n-th commit (fixed date,
// gen.CommitTime(n)); it returns the commit.
func commitFiles(ctx context.Context, r *detgit.Repo, n int, msg string, files map[string]string) (string, error) {
	if err := writeFiles(r.WorkTree, files); err != nil {
		return "", fmt.Errorf("writing %s: %w", msg, err)
	}
	c, err := r.Commit(ctx, msg, gen.CommitTime(n))
	if err != nil {
		return "", fmt.Errorf("committing %s: %w", msg, err)
	}
	return c, nil
}

// writeFiles writes files (slash-separated paths, mode 0644) under dir.
func writeFiles(dir string, files map[string]string) error {
	t := gen.Tree{}
	for p, c := range files {
		t[p] = gen.File{Content: c, Mode: 0o644}
	}
	return gen.WriteTree(dir, t)
}

// take resets the counters before a measured command.
func (b *bench) take() {
	b.archive.Take()
	if b.pkgs != nil {
		b.pkgs.Take()
	}
}

// count records what the counters saw during a command: the archive's
// .debs, the package source's packages and bytes.
func (b *bench) count(run *Run) {
	run.Archive = b.archive.Take()
	run.Debs = run.Archive.Matching(func(p string) bool { return strings.HasSuffix(p, ".deb") })
	run.DebBytes = run.Archive.Bytes
	if b.pkgs != nil {
		run.Proxy = b.pkgs.Take()
		run.Packages = run.Proxy.Matching(b.isPkg)
		run.Bytes = run.Proxy.Bytes
	}
	// The JSON keeps the paths of small fetches only (a bump's).
	for _, f := range []*harness.Fetched{&run.Archive, &run.Proxy} {
		if len(f.Paths) > 12 {
			f.Paths = nil
		}
	}
}

// withMirror points a recipe's base.debian at the counting archive proxy.
func (b *bench) withMirror(body, suite string) (string, error) {
	return replaceAll(body, "    suite: "+suite+"\n", "    suite: "+suite+"\n    mirror: "+b.archive.URL+"/debian\n")
}

// repsOf is how many repetitions scenario s runs, recorded in it.
func (b *bench) repsOf(s *Scenario) int {
	n := b.reps
	if m, ok := b.repsBy[s.ID]; ok {
		n = m
	}
	s.Reps = n
	return n
}

// errorf records a harness error (the run will exit 1).
func (b *bench) errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	b.log.Error(msg)
	b.res.Errors = append(b.res.Errors, msg)
}

// daemon is a fresh buildkitd (its own, empty, state directory) and a
// connection to it.
type daemon struct {
	bk  *harness.BuildKitd
	c   *buildkit.Conn
	dir string
	// reused: a --quick run's scenario daemon handed to a later sequence
	// (its cold build is not cold). shared: stop leaves it running
	// (endScenario stops it).
	reused, shared bool
}

func (d *daemon) client() *client.Client { return d.c.Client }

// startDaemon starts a buildkitd with an empty state: a cold build on it is
// really cold (no cache of any fetch, unpack or step).
//
// With --quick, a scenario's sequences share one daemon (only the first
// one's cold build is cold): endScenario stops it.
func (b *bench) startDaemon(ctx context.Context) (*daemon, error) {
	if !b.quick {
		return b.newDaemon(ctx)
	}
	if b.quickDaemon != nil {
		d := *b.quickDaemon
		d.reused, d.shared = true, true
		return &d, nil
	}
	d, err := b.newDaemon(ctx)
	if err != nil {
		return nil, err
	}
	b.quickDaemon = d
	h := *d
	h.shared = true
	return &h, nil
}

// endScenario stops a --quick run's scenario daemon.
func (b *bench) endScenario() {
	if b.quickDaemon != nil {
		b.quickDaemon.stop()
		b.quickDaemon = nil
	}
}

func (b *bench) newDaemon(ctx context.Context) (*daemon, error) {
	d, err := b.startBuildKitd(ctx)
	if err != nil {
		return nil, fmt.Errorf("starting buildkitd: %w", err)
	}
	return d, nil
}

func (b *bench) startBuildKitd(ctx context.Context) (*daemon, error) {
	b.daemons++
	// Short: the socket path must fit a unix socket.
	dir, err := os.MkdirTemp("", "vmbh-")
	if err != nil {
		return nil, err
	}
	bin, err := b.buildkitd()
	if err != nil {
		return nil, err
	}
	bk, err := harness.StartBuildKitd(ctx, bin, dir, nil)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c, err := buildkit.Connect(ctx, buildkit.ConnectOptions{Addr: bk.Addr, Timeout: 60 * time.Second})
	if err != nil {
		bk.Stop()
		os.RemoveAll(dir)
		return nil, err
	}
	if b.res.Machine.Versions != nil && bk.Version != "" {
		b.res.Machine.Versions["buildkitd (running)"] = bk.Version
	}
	return &daemon{bk: bk, c: c, dir: dir}, nil
}

// stop stops the daemon and removes its state.
func (d *daemon) stop() {
	if d == nil || d.shared {
		return
	}
	d.c.Close()
	d.bk.Stop()
	if err := os.RemoveAll(d.dir); err != nil {
		// Leftover mounts: unmount what is under the state, then retry.
		_ = exec.Command("sh", "-c", "grep -o ' "+d.dir+"[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l").Run()
		_ = os.RemoveAll(d.dir)
	}
}

// lockOpts configure one lock.
type lockOpts struct {
	// Commit pins this commit (the re-locks of a bump); empty: the ref's
	// head on a first lock, the locked commit after.
	Commit string
	// Fresh ignores the previous lock (a first lock).
	Fresh bool
	// DebCache is the Debian index cache (default the run's shared one).
	DebCache string
	// Fetcher hashes downloads; default a new one with no cache.
	Fetcher *deps.Fetcher
}

// lock locks the recipe at path as `vmbuild lock` does (through the
// library, so that the Debian index cache and the fetcher can be chosen),
// and writes the lock beside it. The run records the wall time and what
// the fetcher downloaded.
func (b *bench) lock(ctx context.Context, path string, o lockOpts) (*recipe.Recipe, *lock.Lock, Run, error) {
	var run Run
	r, err := recipe.Load(path)
	if err != nil {
		return nil, nil, run, fmt.Errorf("loading recipe %s: %w", path, err)
	}
	var prev *lock.Lock
	if !o.Fresh {
		if l, err := lock.Read(r.LockPath()); err == nil {
			prev = l
		}
	} else {
		for _, p := range []string{r.LockPath(), strings.TrimSuffix(r.LockPath(), ".lock.json") + ".deps.lock.json"} {
			_ = os.Remove(p)
		}
	}
	f := o.Fetcher
	if f == nil {
		f = &deps.Fetcher{}
	}
	dc := o.DebCache
	if dc == "" {
		dc = b.debCache
	}
	gitCache := filepath.Join(b.work, "cache", "git")
	res := lock.Resolver{
		Git:     lock.GitCLI{CacheDir: gitCache},
		Images:  lock.Images{Registry: registry.New(), BaseDir: r.Dir},
		Fetcher: f,
		Debian:  []deb.Option{deb.WithCacheDir(dc)},
		WorkDir: filepath.Join(b.work, "tmp"),
		Logger:  b.verbose,
	}
	if err := os.MkdirAll(res.WorkDir, 0o755); err != nil {
		return nil, nil, run, err
	}
	p0, b0 := f.Downloads()
	b.take()
	start := time.Now()
	l, err := res.Resolve(ctx, r, prev, lock.Options{Commit: o.Commit})
	run.Wall = time.Since(start)
	b.count(&run)
	if err != nil {
		return nil, nil, run, fmt.Errorf("locking %s: %w", path, err)
	}
	if err := lock.Write(r.LockPath(), l); err != nil {
		return nil, nil, run, fmt.Errorf("writing lock %s: %w", r.LockPath(), err)
	}
	p1, b1 := f.Downloads()
	// What the lock downloaded to hash (the proxy's count is in Proxy).
	run.Packages, run.Bytes = int(p1-p0), b1-b0
	run.Commit = l.Upstream.Commit
	if prev != nil {
		run.Changes = lock.DiffDeps(prev.DepsLock, l.DepsLock)
	}
	if l.DepsLock != nil {
		for _, ld := range l.DepsLock.Layers {
			run.Pinned += len(ld.Packages)
			if ld.Tool != nil {
				run.Pinned++
			}
		}
	}
	return r, l, run, nil
}

// build builds r pinned by l on d into the OCI layout out, and measures
// it from BuildKit's status: the fetches that ran (by kind, with their
// pinned sizes), the layer steps that ran, the base's unpacks and the
// per-gem installs.
func (b *bench) build(ctx context.Context, d *daemon, r *recipe.Recipe, l *lock.Lock, out, meta string) (*build.Result, Run, error) {
	var run Run
	opts := build.Options{
		Client:          d.client(),
		BuildKitVersion: d.bk.Version,
		HelperPath:      b.bins["vmbuild-helper"],
		Output:          build.Output{OCIDir: out},
		WorkDir:         filepath.Join(b.work, "tmp"),
		Logger:          b.verbose,
	}
	// BuildKit's status stream (rawjson: every vertex with its start and
	// end), for a kept work directory.
	if err := os.MkdirAll(filepath.Join(b.work, "meta"), 0o755); err != nil {
		return nil, run, err
	}
	if pf, err := os.Create(filepath.Join(b.work, "meta", meta+".progress.json")); err == nil {
		defer pf.Close()
		opts.Progress, opts.ProgressMode = pf, progressui.RawJSONMode
	}
	b.take()
	start := time.Now()
	res, err := build.Build(ctx, r, l, opts)
	run.Wall = time.Since(start)
	b.count(&run)
	run.ReusedDaemon = d.reused
	if err != nil {
		return nil, run, fmt.Errorf("building %s at %s: %w", r.Name, harness.Short(l.Upstream.Commit), err)
	}
	run.Commit = l.Upstream.Commit
	run.Digest = res.Digest.String()
	// The build's metadata (steps, vertices), for a kept work directory.
	if j, err := json.MarshalIndent(res, "", "  "); err == nil {
		p := filepath.Join(b.work, "meta", meta+".json")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
			_ = os.WriteFile(p, j, 0o644)
		}
	}
	for _, v := range res.Vertices {
		// BuildKit reports every vertex of the graph it loads; those below
		// a cache hit never start. A vertex ran if it started, completed
		// and was not a cache hit. (A fetch vertex "runs" on a warm daemon
		// too, in microseconds: it computes its cache key, the checksum,
		// and downloads nothing. What was downloaded is counted by the
		// proxies, not from the vertices.)
		if v.Cached || v.Error != "" || v.Duration <= 0 {
			continue
		}
		if strings.HasPrefix(v.Name, "[vmbuild] base: unpack ") {
			run.Unpacked++
		}
		if part := breakdownPart(v.Name); part != "" {
			if run.Breakdown == nil {
				run.Breakdown = map[string]time.Duration{}
			}
			run.Breakdown[part] += v.Duration
		}
	}
	for _, v := range res.Vertices {
		if strings.HasPrefix(v.Name, "[vmbuild] layer ") && strings.Contains(v.Name, ": gem install ") {
			name := v.Name[strings.Index(v.Name, ": gem install ")+len(": gem install "):]
			if v.Cached || v.Duration <= 0 {
				run.GemStepsCached++
			} else {
				run.GemStepsRan = append(run.GemStepsRan, name)
			}
		}
	}
	sort.Strings(run.GemStepsRan)
	for _, s := range res.Steps {
		if s.Kind == "layer" && s.Ran {
			run.LayerSteps = append(run.LayerSteps, s.Name)
			run.LayerStepTime += s.Duration
		}
	}
	if run.LayerStepTime > 0 {
		if run.Breakdown == nil {
			run.Breakdown = map[string]time.Duration{}
		}
		run.Breakdown["layer"] = run.LayerStepTime
	}
	sort.Strings(run.LayerSteps)
	return res, run, nil
}

// breakdownPart classifies a vertex for Run.Breakdown.
func breakdownPart(name string) string {
	switch {
	case strings.HasPrefix(name, "[vmbuild] source "):
		return "source"
	case strings.HasPrefix(name, "[vmbuild] layer ") && (strings.Contains(name, " pinned packages (") || strings.Contains(name, " pinned gems")):
		return "mirror"
	case strings.HasPrefix(name, "[vmbuild] layer ") && strings.Contains(name, ": gem install "):
		return "gem-installs"
	case strings.HasPrefix(name, "[vmbuild] layer ") && strings.Contains(name, " outputs: "):
		return "outputs"
	case strings.HasPrefix(name, "[vmbuild] fetch "):
		return "fetches"
	case strings.HasPrefix(name, "[vmbuild] base: unpack "):
		return "unpacks"
	case strings.HasPrefix(name, "[vmbuild] base: "):
		return "base"
	case strings.HasPrefix(name, "exporting to "):
		return "export"
	}
	return ""
}

var errCheck = errors.New("check failed")

// imageFile reads a file from the image of res in the OCI layout (the
// last layer that has it wins).
func imageFile(layout string, res *build.Result, want string) (string, bool, error) {
	var content string
	found := false
	for _, l := range res.Manifest.Layers {
		f, err := os.Open(filepath.Join(layout, "blobs", "sha256", l.Digest.Encoded()))
		if err != nil {
			return "", false, err
		}
		err = func() error {
			defer f.Close()
			zr, err := gzip.NewReader(f)
			if err != nil {
				return err
			}
			tr := tar.NewReader(zr)
			for {
				h, err := tr.Next()
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return err
				}
				if path.Clean("/"+h.Name) != want {
					continue
				}
				b, err := io.ReadAll(tr)
				if err != nil {
					return err
				}
				content, found = string(b), true
			}
		}()
		if err != nil {
			return "", false, fmt.Errorf("reading layer %s: %w", l.Digest, err)
		}
	}
	return content, found, nil
}

// sequence starts one sequence of a scenario: its own daemon, its output
// layout (oci/NAME-CONTENDER-REP), and record, which appends a run to s
// and logs it. done stops the daemon and removes the layout.
func (b *bench) sequence(ctx context.Context, s *Scenario, name, logName, contender string, rep int) (d *daemon, out string, record func(phase string, run Run, err error), done func(), err error) {
	d, err = b.startDaemon(ctx)
	if err != nil {
		return nil, "", nil, nil, err
	}
	out = filepath.Join(b.work, "oci", fmt.Sprintf("%s-%s-%d", name, contender, rep))
	record = func(phase string, run Run, err error) {
		run.Contender, run.Phase, run.Rep = contender, phase, rep
		if err != nil {
			run.Err = err.Error()
		}
		s.Runs = append(s.Runs, run)
		b.log.Info(logName, "contender", contender, "rep", rep, "phase", phase, "wall", run.Wall.Round(10*time.Millisecond), "packages", run.Packages, "bytes", run.Bytes, "debs", run.Debs, "gemSteps", len(run.GemStepsRan), "proxy", run.Proxy.String(), "steps", run.LayerSteps)
	}
	done = func() {
		d.stop()
		os.RemoveAll(out)
	}
	return d, out, record, done, nil
}
