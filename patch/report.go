package patch

import (
	"fmt"
	"regexp"
	"sort"

	"github.com/vmbuild/vmbuild/errs"
)

// Kind says how a patch is applied.
type Kind string

// Patch kinds.
const (
	KindDiff   Kind = "diff"
	KindScript Kind = "script"
)

// Status is the outcome of one patch.
type Status string

// Outcomes.
const (
	StatusApplied Status = "applied"
	StatusNoop    Status = "noop"
	StatusFailed  Status = "failed"
)

// Report is what the helper writes as JSON after running one patch. The
// field names are a contract with the vmbuild client that reads it.
type Report struct {
	Patch   string     `json:"patch"`
	Kind    Kind       `json:"kind"`
	Status  Status     `json:"status"`
	Files   []FileStat `json:"files"` // sorted by Path; empty unless applied
	Added   int        `json:"added"`
	Removed int        `json:"removed"`
	Failure *Failure   `json:"failure,omitempty"`
}

// FileStat describes the change to one file.
type FileStat struct {
	Path    string `json:"path"`
	OldPath string `json:"oldPath,omitempty"` // renames only
	// Op is OpModified, OpAdded, OpDeleted, OpRenamed or OpMode (copies are
	// reported as OpAdded).
	Op      Op  `json:"op"`
	Added   int `json:"added"`   // lines; 0 for binary and mode-only changes
	Removed int `json:"removed"` // lines
}

// Failure says why a patch failed or was a no-op.
type Failure struct {
	Reason  Reason `json:"reason"`
	Message string `json:"message"`
	File    string `json:"file,omitempty"`
	Hunk    string `json:"hunk,omitempty"`
	// Line is the 1-based line in the target file (hunk failures) or in the
	// patch (parse failures, and unsafe paths found before applying).
	Line     int    `json:"line,omitempty"`
	Command  string `json:"command,omitempty"`  // scripts: the failing command
	Output   string `json:"output,omitempty"`   // scripts: last lines of output
	ExitCode int    `json:"exitCode,omitempty"` // scripts: exit status, -1 if killed
}

// Summary returns a short description of the change, e.g. "3 files, +4 -7".
func (r *Report) Summary() string {
	n := len(r.Files)
	unit := "files"
	if n == 1 {
		unit = "file"
	}
	return fmt.Sprintf("%d %s, +%d -%d", n, unit, r.Added, r.Removed)
}

var hexCommit = regexp.MustCompile(`^[0-9a-f]{12,64}$`)

// shortCommit shortens a full hexadecimal commit id to 8 characters.
func shortCommit(c string) string {
	if hexCommit.MatchString(c) {
		return c[:8]
	}
	return c
}

// Err turns the report into an error for the user, naming the patch, the
// commit of the upstream tree it was applied to (full ids are shortened to
// 8 characters; "" leaves the commit out), and the hunk, file or command
// that failed. It returns nil when the patch applied or was an allowed
// (optional) no-op. The error wraps [errs.ErrUnsafePatch] for unsafe
// patches and [errs.ErrPatchFailed] otherwise, and is a [*ReportError].
func (r *Report) Err(commit string) error {
	if r == nil {
		return fmt.Errorf("reading patch report: no report: %w", errs.ErrPatchFailed)
	}
	switch {
	case r.Status == StatusApplied && r.Failure == nil:
		return nil
	case r.Status == StatusNoop && r.Failure == nil:
		return nil
	}
	return &ReportError{Report: r, Commit: commit}
}

// ReportError is the error [Report.Err] returns.
type ReportError struct {
	Report *Report
	Commit string
}

func (e *ReportError) Error() string {
	r := e.Report
	at := ""
	if e.Commit != "" {
		at = " at commit " + shortCommit(e.Commit)
	}
	what := "patch"
	if r.Kind == KindScript {
		what = "script"
	}
	f := r.Failure
	if f == nil {
		return fmt.Sprintf("%s %q failed%s: status %q", what, r.Patch, at, r.Status)
	}
	switch f.Reason {
	case ReasonNoop:
		return fmt.Sprintf("patch %q made no change%s", r.Patch, at)
	case ReasonUnsafe:
		return fmt.Sprintf("%s %q refused%s: %s", what, r.Patch, at, f.Message)
	}
	return fmt.Sprintf("%s %q failed%s: %s", what, r.Patch, at, f.Message)
}

// Unwrap returns errs.ErrUnsafePatch or errs.ErrPatchFailed.
func (e *ReportError) Unwrap() error {
	if e.Report.Failure != nil && e.Report.Failure.Reason == ReasonUnsafe {
		return errs.ErrUnsafePatch
	}
	return errs.ErrPatchFailed
}

// finish fills the totals and sorts the file list.
func (r *Report) finish() {
	if r.Files == nil {
		r.Files = []FileStat{}
	}
	sort.Slice(r.Files, func(i, j int) bool { return r.Files[i].Path < r.Files[j].Path })
	r.Added, r.Removed = 0, 0
	for _, f := range r.Files {
		r.Added += f.Added
		r.Removed += f.Removed
	}
}

func failedReport(name string, kind Kind, e *Error) *Report {
	return &Report{Patch: name, Kind: kind, Status: StatusFailed, Files: []FileStat{}, Failure: e.failure()}
}

func noopReport(name string, kind Kind, optional bool) *Report {
	r := &Report{Patch: name, Kind: kind, Status: StatusNoop, Files: []FileStat{}}
	if !optional {
		r.Failure = &Failure{Reason: ReasonNoop, Message: fmt.Sprintf("patch %s made no change", name)}
	}
	return r
}
