// Package track builds a signed image for every new upstream commit of a
// recipe's ref, oldest first: `vmbuild track`, for cron, CI or a systemd
// timer.
//
// For each commit it builds (with a deadline and a watchdog on the BuildKit
// connection), pushes by digest, signs, attests, and only then moves the
// tags and advances the lock. A commit whose patches or build fail is
// recorded in the history with its patch report and failing step, and
// nothing is published for it: the lock and tags stay on the last good
// commit. Every build appends one line to the history (NAME.history.jsonl).
// Two runs on one recipe are serialised by a lock file.
package track

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gofrs/flock"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/buildkit"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/publish"
	"github.com/vmbuild/vmbuild/recipe"
	"github.com/vmbuild/vmbuild/registry"
	"github.com/vmbuild/vmbuild/store"
	"github.com/vmbuild/vmbuild/track/history"
)

// Options configure a tracker. Zero values take the documented defaults.
type Options struct {
	// Build is the build configuration (client, helper, cache options)
	// of the default Builder; its Output is set per commit. Its Client,
	// when set, is watched during each build (Watchdog).
	Build build.Options
	// Builder builds each commit, asked for a push by digest to Repo or
	// an OCI layout output in OCIDir; default build.New(Build), over
	// BuildKit.
	Builder build.Builder
	// Resolver pins new commits (git) and, when the recipe changed, images.
	Resolver lock.Resolver
	// Ref overrides the recipe's upstream ref.
	Ref string
	// Repo is the repository to push to ("" builds into OCIDir instead).
	Repo string
	// Tags are moved to each good commit's image, after signing; "{short}"
	// and "{commit}" are replaced. Default: "edge", "sha-{short}".
	Tags []string
	// OCIDir receives images when Repo is empty. Default out/NAME.
	OCIDir string
	// Registry is the registry client for Repo.
	Registry *registry.Client
	// Publish signs and attests (Signer required with Repo).
	Publish publish.Options
	// Publisher publishes each good commit's image; default
	// publish.New(Publish). Into an OCI layout (Repo empty) it is called
	// only when it is given or Publish has a signer: unsigned layout
	// builds need no publishing (no tag moves there).
	Publisher publish.Publisher
	// MaxCommits builds at most this many new commits per run, the oldest
	// first (the next run continues). 0: no limit.
	MaxCommits int
	// HeadOnly builds only the ref's head.
	HeadOnly bool
	// BuildTimeout bounds each commit's build and publish. Default 1h.
	BuildTimeout time.Duration
	// Watchdog tunes the BuildKit connection watchdog.
	Watchdog buildkit.WatchdogOptions
	// Wait makes a run wait for another run on the same recipe to finish,
	// instead of failing with errs.ErrLocked.
	Wait bool
	// RetryFailed rebuilds commits whose patches or build already failed
	// with the same recipe and patches (by default they are skipped:
	// those failures are deterministic).
	RetryFailed bool
	// BuilderName is recorded in the history as the builder (e.g. the
	// buildkitd address).
	BuilderName string
	Logger      *slog.Logger
}

func (o *Options) publisher() publish.Publisher {
	if o.Publisher != nil {
		return o.Publisher
	}
	return publish.New(o.Publish)
}

func (o *Options) defaults(r *recipe.Recipe) {
	if o.Builder == nil {
		o.Builder = build.New(o.Build)
	}
	if len(o.Tags) == 0 {
		o.Tags = []string{"edge", "sha-{short}"}
	}
	if o.OCIDir == "" {
		o.OCIDir = filepath.Join("out", r.Name)
	}
	if o.BuildTimeout == 0 {
		o.BuildTimeout = time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Result summarises one run.
type Result struct {
	Head     string          `json:"head"`
	Entries  []history.Entry `json:"entries"`
	Skipped  []string        `json:"skipped,omitempty"`
	UpToDate bool            `json:"upToDate"`
}

// Failed reports whether any commit of the run failed.
func (r *Result) Failed() bool {
	for _, e := range r.Entries {
		if e.Outcome != history.Published && e.Outcome != history.Built {
			return true
		}
	}
	return false
}

// Err summarises the failures of the run, or nil.
func (r *Result) Err() error {
	var bad []string
	for _, e := range r.Entries {
		if e.Outcome != history.Published && e.Outcome != history.Built {
			bad = append(bad, fmt.Sprintf("%s: %s (%s)", short(e.Commit), e.Outcome, firstLine(e.Error)))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("tracking: %d of %d commits failed, nothing was published for them:\n  %s", len(bad), len(r.Entries), strings.Join(bad, "\n  "))
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func short(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

// Once runs one tracking pass over the recipe at path.
func Once(ctx context.Context, path string, opts Options) (*Result, error) {
	r, err := recipe.Load(path)
	if err != nil {
		return nil, err
	}
	opts.defaults(r)
	log := opts.Logger
	unlock, err := lockRecipe(ctx, r, opts.Wait, log)
	if err != nil {
		return nil, err
	}
	defer unlock()

	ref := r.Upstream.Ref
	if opts.Ref != "" {
		ref = opts.Ref
	}
	url := lock.GitURL(r)
	git := opts.Resolver.Git

	// The current lock is the last good commit. Without one (a first run),
	// or when the recipe changed, lock first.
	cur, err := lock.Read(r.LockPath())
	if err != nil && !errors.Is(err, errs.ErrLockMissing) {
		return nil, err
	}
	if cur == nil || lock.Check(r, cur, r.LockPath()) != nil {
		l, err := opts.Resolver.Resolve(ctx, r, cur, lock.Options{Commit: commitOrEmpty(cur)})
		if err != nil {
			return nil, err
		}
		if cur == nil {
			// First run: build the head, nothing older.
			opts.HeadOnly = true
		}
		if err := lock.Write(r.LockPath(), l); err != nil {
			return nil, err
		}
		cur = l
	}
	head, err := git.ResolveRef(ctx, url, ref)
	if err != nil {
		return nil, err
	}
	res := &Result{Head: head}
	var commits []lock.Commit
	switch {
	case head == cur.Upstream.Commit:
		hist, _ := history.Read(r.HistoryPath())
		if _, ok := history.LastGood(hist); ok {
			res.UpToDate = true
			log.Info("up to date", "ref", ref, "commit", short(head))
			return res, nil
		}
		// Locked, never built: build it.
		commits = []lock.Commit{{SHA: head, Time: cur.Upstream.CommitTime}}
	case opts.HeadOnly:
		t, err := git.CommitTime(ctx, url, head)
		if err != nil {
			return nil, err
		}
		commits = []lock.Commit{{SHA: head, Time: t}}
	default:
		commits, err = git.Log(ctx, url, cur.Upstream.Commit, head, 0)
		if err != nil {
			return nil, err
		}
		if len(commits) == 0 {
			// The locked commit is not an ancestor (a force push): build
			// the head.
			log.Warn("the locked commit is not an ancestor of the ref's head; building the head", "locked", short(cur.Upstream.Commit), "head", short(head))
			t, err := git.CommitTime(ctx, url, head)
			if err != nil {
				return nil, err
			}
			commits = []lock.Commit{{SHA: head, Time: t}}
		}
	}
	hist, err := history.Read(r.HistoryPath())
	if err != nil {
		return nil, err
	}
	failed := map[string]bool{}
	for _, e := range hist {
		if (e.Outcome == history.PatchFailed || e.Outcome == history.BuildFailed) && e.RecipeSHA256 == inputsKey(r) {
			failed[e.Commit] = true
		}
	}
	if opts.MaxCommits > 0 && len(commits) > opts.MaxCommits {
		log.Info("more new commits than --max-commits; the next run continues", "new", len(commits), "building", opts.MaxCommits)
		commits = commits[:opts.MaxCommits]
	}
	for i, c := range commits {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		if failed[c.SHA] && !opts.RetryFailed {
			log.Info("skipping a commit that already failed with this recipe (use --retry-failed to rebuild it)", "commit", short(c.SHA))
			res.Skipped = append(res.Skipped, c.SHA)
			continue
		}
		log.Info("building commit", "n", fmt.Sprintf("%d/%d", i+1, len(commits)), "commit", short(c.SHA), "subject", c.Subject)
		entry, next := buildCommit(ctx, r, cur, c, opts)
		entry.RecipeSHA256 = inputsKey(r)
		if err := history.Append(r.HistoryPath(), entry); err != nil {
			return res, err
		}
		res.Entries = append(res.Entries, entry)
		if next != nil {
			// Advance the lock only after publishing completed.
			if err := lock.Write(r.LockPath(), next); err != nil {
				return res, err
			}
			cur = next
			log.Info("published", "commit", short(c.SHA), "image", entry.Image, "tags", strings.Join(entry.Tags, " "))
		} else {
			log.Error("commit failed; lock and tags stay on the last good commit", "commit", short(c.SHA), "outcome", entry.Outcome, "step", entry.FailedStep, "err", firstLine(entry.Error))
		}
	}
	return res, nil
}

// inputsKey identifies the recipe and its patches' content: a failed
// commit is retried when it changes.
func inputsKey(r *recipe.Recipe) string {
	h := sha256.New()
	h.Write([]byte(r.SHA256))
	for _, p := range r.Patches {
		h.Write([]byte("\x00" + p.SHA256))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func commitOrEmpty(l *lock.Lock) string {
	if l == nil {
		return ""
	}
	return l.Upstream.Commit
}

// buildCommit builds, publishes and records one commit. It returns the
// lock to advance to on success, else nil.
func buildCommit(ctx context.Context, r *recipe.Recipe, cur *lock.Lock, c lock.Commit, opts Options) (entry history.Entry, _ *lock.Lock) {
	entry = history.Entry{Commit: c.SHA, CommitTime: c.Time, Subject: c.Subject, Start: time.Now().UTC(), Builder: opts.BuilderName}
	defer func() { entry.End = time.Now().UTC() }()
	next := *cur
	next.Upstream.Commit = c.SHA
	next.Upstream.CommitTime = c.Time
	if c.Time.IsZero() {
		t, err := opts.Resolver.Git.CommitTime(ctx, lock.GitURL(r), c.SHA)
		if err != nil {
			entry.Outcome, entry.Error = history.Error, err.Error()
			return entry, nil
		}
		next.Upstream.CommitTime = t
		entry.CommitTime = t
	}
	if cur.Upstream.Ref != r.Upstream.Ref && opts.Ref == "" {
		next.Upstream.Ref = r.Upstream.Ref
	}

	bctx, cancel := context.WithTimeoutCause(ctx, opts.BuildTimeout, fmt.Errorf("build deadline (%s) exceeded", opts.BuildTimeout))
	defer cancel()
	if opts.Build.Client != nil {
		var stop func()
		bctx, stop = buildkit.Watchdog(bctx, opts.Build.Client, opts.Watchdog)
		defer stop()
	}
	var req build.Request
	if opts.Repo != "" {
		req.Output = build.Output{PushRepo: opts.Repo}
	} else {
		req.Output = build.Output{OCIDir: opts.OCIDir, OCITag: "sha-" + next.ShortCommit()}
	}
	res, err := opts.Builder.Build(bctx, r, &next, req)
	if res != nil {
		entry.Digest = res.Digest.String()
		entry.BytesPushed = res.BytesPushed
		for _, s := range res.Steps {
			entry.Steps = append(entry.Steps, history.Step{ID: s.ID, Cached: s.Cached, LayerDigest: s.LayerDigest.String(), DurationMS: s.Duration.Milliseconds()})
		}
		for _, p := range res.Patches {
			hp := history.Patch{Name: p.Patch, Status: string(p.Status), Files: len(p.Files), Added: p.Added, Removed: p.Removed}
			if perr := p.Err(c.SHA); perr != nil {
				hp.Error = perr.Error()
			}
			entry.Patches = append(entry.Patches, hp)
		}
	}
	if err != nil {
		entry.Error = err.Error()
		var pe *build.PatchError
		var se *build.StepError
		switch {
		case errors.As(err, &pe):
			entry.Outcome = history.PatchFailed
			entry.FailedStep = "patch " + pe.Report.Patch
		case errors.Is(err, errs.ErrBuildKitUnavailable):
			entry.Outcome = history.Error
			if bctx.Err() != nil {
				entry.Error = fmt.Sprintf("%v (%v)", err, context.Cause(bctx))
			}
		case errors.As(err, &se) && ctx.Err() == nil && bctx.Err() == nil:
			entry.Outcome = history.BuildFailed
			entry.FailedStep = se.Step
		case errors.Is(err, errs.ErrBuildFailed) && bctx.Err() == nil:
			entry.Outcome = history.BuildFailed
		default:
			entry.Outcome = history.Error
			if bctx.Err() != nil {
				entry.Error = fmt.Sprintf("%v (%v)", err, context.Cause(bctx))
			}
		}
		return entry, nil
	}
	if opts.Repo == "" {
		entry.Outcome = history.Built
		entry.Image = opts.OCIDir + "@" + res.Digest.String()
		if opts.Publisher != nil || opts.Publish.Signer != nil || opts.Publish.LoadSigner != nil {
			lay, err := store.OpenLayout(bctx, opts.OCIDir, store.WithLayoutLogger(opts.Logger))
			if err == nil {
				_, err = opts.publisher().Publish(bctx, lay, nil, r, &next, res)
			}
			if err != nil {
				entry.Outcome, entry.Error, entry.FailedStep = history.PublishFailed, err.Error(), "sign"
				return entry, nil
			}
		}
		return entry, &next
	}
	entry.Image = opts.Repo + "@" + res.Digest.String()
	tags := make([]string, len(opts.Tags))
	for i, t := range opts.Tags {
		tags[i] = strings.NewReplacer("{short}", next.ShortCommit(), "{commit}", next.Upstream.Commit).Replace(t)
	}
	var rep *publish.Report
	st, err := store.NewRegistry(opts.Registry, opts.Repo)
	if err == nil {
		rep, err = opts.publisher().Publish(bctx, st, tags, r, &next, res)
	}
	if err != nil {
		entry.Outcome, entry.Error = history.PublishFailed, err.Error()
		var pe *publish.Error
		if errors.As(err, &pe) {
			entry.FailedStep = pe.Step
		}
		return entry, nil
	}
	entry.Outcome = history.Published
	entry.Tags = rep.Tags
	return entry, &next
}

// lockRecipe serialises track runs on one recipe with an exclusive lock
// on NAME.track.lock beside it.
func lockRecipe(ctx context.Context, r *recipe.Recipe, wait bool, log *slog.Logger) (func(), error) {
	path := filepath.Join(r.Dir, r.Name+".track.lock")
	fl := flock.New(path, flock.SetPermissions(0o644))
	ok, err := fl.TryLock()
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	if !ok {
		holder := "another process"
		if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			holder = "process " + strings.TrimSpace(string(b))
		}
		if !wait {
			return nil, fmt.Errorf("tracking %s: %w: %s holds %s; it will finish on its own (or use --wait to queue behind it)", r.Name, errs.ErrLocked, holder, path)
		}
		log.Info("waiting for another track run on this recipe", "holder", holder, "lock", path)
		if ok, err = fl.TryLockContext(ctx, 500*time.Millisecond); err != nil {
			return nil, fmt.Errorf("locking %s: %w", path, err)
		} else if !ok {
			return nil, ctx.Err()
		}
	}
	// The holder's pid, for the message another run prints.
	_ = os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	return func() {
		_ = os.Truncate(path, 0)
		_ = fl.Unlock()
	}, nil
}

// Loop runs Once every interval until ctx ends, logging failures and
// going on (the next pass retries what errored).
func Loop(ctx context.Context, path string, interval time.Duration, opts Options, each func(*Result, error)) error {
	for {
		res, err := Once(ctx, path, opts)
		if each != nil {
			each(res, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
