// Patches reports the health of a recipe's patch set across a
// range of upstream commits: for every commit and patch, whether it
// applies, fails (naming the hunk or command) or changes nothing, with its
// change stat, and the commit at which each patch started to fail.
//
// Each commit costs one source fetch and the patch steps, solved by
// BuildKit (so a second run over the same range is served from cache).
package check

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/patch"
	"github.com/vmbuild/vmbuild/recipe"
)

// PatchesOptions select the commits and how to build.
type PatchesOptions struct {
	// Build configures each commit's patch solve (client, helper) when
	// Checker is nil.
	Build build.Options
	// Checker applies the patches at each commit; default
	// build.New(Build), over BuildKit.
	Checker build.PatchChecker
	// Git lists commits.
	Git lock.GitResolver
	// Range is "A..B": the commits after A up to and including B (refs or
	// full hashes). Exclusive with Last.
	Range string
	// Last is the number of newest commits of the recipe's ref to check.
	// Default 10 when Range is empty.
	Last   int
	Logger *slog.Logger
}

// Outcome of one patch at one commit.
type Outcome string

const (
	Applies Outcome = "applies"
	Fails   Outcome = "fails"
	NoOp    Outcome = "no-op"
	Error   Outcome = "error" // the commit could not be checked (fetch failed…)
)

// PatchResult is one patch at one commit.
type PatchResult struct {
	Patch   string  `json:"patch"`
	Outcome Outcome `json:"outcome"`
	// Detail names the hunk and file, or the failing command.
	Detail  string       `json:"detail,omitempty"`
	Files   int          `json:"files"`
	Added   int          `json:"added"`
	Removed int          `json:"removed"`
	Report  patch.Report `json:"report"`
}

// CommitResult is every patch at one commit.
type CommitResult struct {
	Commit  string        `json:"commit"`
	Time    time.Time     `json:"time"`
	Subject string        `json:"subject,omitempty"`
	Locked  bool          `json:"locked,omitempty"`
	Newest  bool          `json:"newest,omitempty"`
	OK      bool          `json:"ok"`
	Error   string        `json:"error,omitempty"`
	Patches []PatchResult `json:"patches"`
}

// PatchesResult is the whole check.
type PatchesResult struct {
	Recipe  string         `json:"recipe"`
	Ref     string         `json:"ref"`
	Patches []string       `json:"patchNames"`
	Commits []CommitResult `json:"commits"` // oldest first
	// FirstFailure maps a patch to the first commit (in the range) at which
	// it failed after applying at the commit before (or at the range's
	// start); commits that could not be checked are passed over.
	FirstFailure map[string]string `json:"firstFailure"`
	// LockedOK and NewestOK: the check fails when either is false.
	LockedOK bool `json:"lockedOK"`
	NewestOK bool `json:"newestOK"`
}

// Failed reports whether the locked or the newest commit has a failing
// patch.
func (r *PatchesResult) Failed() bool { return !r.LockedOK || !r.NewestOK }

// Err is nil when the locked and newest commits are fine, else an error
// wrapping errs.ErrPatchFailed that says which.
func (r *PatchesResult) Err() error {
	if !r.Failed() {
		return nil
	}
	var which []string
	if !r.LockedOK {
		which = append(which, "the locked commit")
	}
	if !r.NewestOK {
		which = append(which, "the newest commit")
	}
	var first []string
	for _, p := range r.Patches {
		if c, ok := r.FirstFailure[p]; ok {
			first = append(first, fmt.Sprintf("%s since %s", p, short(c)))
		}
	}
	msg := fmt.Sprintf("patch check of %s: patches fail at %s", r.Recipe, strings.Join(which, " and "))
	if len(first) > 0 {
		msg += " (" + strings.Join(first, "; ") + ")"
	}
	return fmt.Errorf("%s: %w", msg, errs.ErrPatchFailed)
}

// Patches runs the patches over the selected commits, oldest first, plus the
// locked commit if it is not among them.
func Patches(ctx context.Context, r *recipe.Recipe, l *lock.Lock, opts PatchesOptions) (*PatchesResult, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	checker := opts.Checker
	if checker == nil {
		checker = build.New(opts.Build)
	}
	url := lock.GitURL(r)
	var commits []lock.Commit
	switch {
	case opts.Range != "":
		a, b, ok := strings.Cut(opts.Range, "..")
		if !ok || a == "" || b == "" {
			return nil, fmt.Errorf("%w: --range must be A..B, not %q", errs.ErrUsage, opts.Range)
		}
		ca, err := opts.Git.ResolveRef(ctx, url, a)
		if err != nil {
			return nil, err
		}
		cb, err := opts.Git.ResolveRef(ctx, url, b)
		if err != nil {
			return nil, err
		}
		if commits, err = opts.Git.Log(ctx, url, ca, cb, 0); err != nil {
			return nil, err
		}
	default:
		n := opts.Last
		if n <= 0 {
			n = 10
		}
		head, err := opts.Git.ResolveRef(ctx, url, r.Upstream.Ref)
		if err != nil {
			return nil, err
		}
		if commits, err = opts.Git.Log(ctx, url, "", head, n); err != nil {
			return nil, err
		}
	}
	if len(commits) == 0 {
		return nil, fmt.Errorf("checking patches: no commits in the range")
	}
	res := &PatchesResult{Recipe: r.Name, Ref: r.Upstream.Ref, FirstFailure: map[string]string{}, LockedOK: true, NewestOK: true}
	for _, p := range r.Patches {
		res.Patches = append(res.Patches, p.Name)
	}
	lockedIn := false
	for _, c := range commits {
		if c.SHA == l.Upstream.Commit {
			lockedIn = true
		}
	}
	todo := commits
	if !lockedIn {
		todo = append([]lock.Commit{{SHA: l.Upstream.Commit, Time: l.Upstream.CommitTime, Subject: "(locked)"}}, commits...)
	}
	for i, c := range todo {
		cl := *l
		cl.Upstream.Commit = c.SHA
		cl.Upstream.CommitTime = c.Time
		log.Info("checking patches", "commit", short(c.SHA), "n", fmt.Sprintf("%d/%d", i+1, len(todo)))
		reports, err := checker.CheckPatches(ctx, r, &cl)
		cr := CommitResult{Commit: c.SHA, Time: c.Time, Subject: c.Subject, Locked: c.SHA == l.Upstream.Commit, OK: true}
		var pe *build.PatchError
		if err != nil && !errors.As(err, &pe) {
			if ctx.Err() != nil {
				return nil, err
			}
			cr.OK = false
			cr.Error = err.Error()
		}
		for j, name := range res.Patches {
			pr := PatchResult{Patch: name, Outcome: Error}
			if j < len(reports) {
				rep := reports[j]
				pr.Report = rep
				pr.Files, pr.Added, pr.Removed = len(rep.Files), rep.Added, rep.Removed
				switch {
				case rep.Err(c.SHA) == nil && rep.Status == patch.StatusNoop:
					pr.Outcome = NoOp
				case rep.Err(c.SHA) == nil:
					pr.Outcome = Applies
				case rep.Status == patch.StatusNoop:
					pr.Outcome = NoOp
					pr.Detail = rep.Err(c.SHA).Error()
					cr.OK = false
				default:
					pr.Outcome = Fails
					pr.Detail = rep.Err(c.SHA).Error()
					cr.OK = false
				}
			}
			cr.Patches = append(cr.Patches, pr)
		}
		res.Commits = append(res.Commits, cr)
	}
	if len(res.Commits) > 0 {
		res.Commits[len(res.Commits)-1].Newest = true
	}
	// First failures, over the requested range (oldest first).
	inRange := res.Commits
	if !lockedIn {
		inRange = res.Commits[1:]
	}
	// A commit that could not be checked (Error) says nothing either way.
	for j, name := range res.Patches {
		prevOK := true
		for _, cr := range inRange {
			if cr.Patches[j].Outcome == Error {
				continue
			}
			bad := cr.Patches[j].Outcome != Applies && !(cr.Patches[j].Outcome == NoOp && cr.Patches[j].Detail == "")
			if bad && prevOK {
				if _, seen := res.FirstFailure[name]; !seen {
					res.FirstFailure[name] = cr.Commit
				}
			}
			prevOK = !bad
		}
	}
	for _, cr := range res.Commits {
		if cr.Locked && !cr.OK {
			res.LockedOK = false
		}
		if cr.Newest && !cr.OK {
			res.NewestOK = false
		}
	}
	return res, nil
}

func short(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

// Table writes the result as a text table: one row per commit, one
// column per patch, then the failure details and first failures.
func (r *PatchesResult) Table(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "COMMIT\tDATE\t")
	for _, p := range r.Patches {
		fmt.Fprintf(tw, "%s\t", p)
	}
	fmt.Fprintln(tw, "SUBJECT")
	for _, c := range r.Commits {
		mark := ""
		if c.Locked {
			mark = " (locked)"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t", short(c.Commit), mark, c.Time.UTC().Format("2006-01-02 15:04"))
		for _, p := range c.Patches {
			cell := string(p.Outcome)
			if p.Outcome == Applies || p.Outcome == NoOp && p.Detail == "" {
				cell += fmt.Sprintf(" %df +%d -%d", p.Files, p.Added, p.Removed)
			}
			fmt.Fprintf(tw, "%s\t", cell)
		}
		subj := c.Subject
		if len(subj) > 50 {
			subj = subj[:47] + "..."
		}
		fmt.Fprintln(tw, subj)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var details []string
	for _, c := range r.Commits {
		if c.Error != "" {
			details = append(details, fmt.Sprintf("  %s: %s", short(c.Commit), c.Error))
		}
		for _, p := range c.Patches {
			if p.Detail != "" {
				details = append(details, "  "+firstLine(p.Detail))
			}
		}
	}
	if len(details) > 0 {
		fmt.Fprintln(w, "\nfailures:")
		seen := map[string]bool{}
		for _, d := range details {
			if !seen[d] {
				seen[d] = true
				fmt.Fprintln(w, d)
			}
		}
	}
	if len(r.FirstFailure) > 0 {
		fmt.Fprintln(w, "\nfirst failing commit per patch:")
		for _, p := range r.Patches {
			if c, ok := r.FirstFailure[p]; ok {
				fmt.Fprintf(w, "  %s: %s\n", p, c)
			}
		}
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
