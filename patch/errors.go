package patch

import (
	"fmt"

	"github.com/vmbuild/vmbuild/errs"
)

// Reason classifies a patch-level failure. It is the "reason" field of a
// [Failure] in the report.
type Reason string

// Failure reasons.
const (
	// ReasonHunk: a hunk's context or removed lines do not match the target.
	ReasonHunk Reason = "hunk"
	// ReasonContext: the target is in a state the patch does not expect,
	// outside any single hunk: a file to modify is a directory, a deleted
	// file still has content after its hunks, a file must be created where
	// a file remains in place as a parent directory.
	ReasonContext Reason = "context"
	// ReasonMissingFile: a file the patch modifies, deletes or renames does
	// not exist.
	ReasonMissingFile Reason = "missing-file"
	// ReasonExists: a file the patch creates (or renames/copies to) exists.
	ReasonExists Reason = "exists"
	// ReasonUnsafe: the patch names a path outside the tree, inside .git,
	// through or onto a symbolic link, or changes a symbolic link.
	ReasonUnsafe Reason = "unsafe"
	// ReasonScript: a script patch exited non-zero or could not start.
	ReasonScript Reason = "script"
	// ReasonNoop: the patch changed nothing.
	ReasonNoop Reason = "noop"
	// ReasonParse: the patch text is not a diff this package accepts.
	ReasonParse Reason = "parse"
)

// Error is a patch-level failure: the patch does not parse, is unsafe, or
// does not apply. It wraps [errs.ErrUnsafePatch] for ReasonUnsafe and
// [errs.ErrPatchFailed] otherwise.
type Error struct {
	Patch  string // the patch's name
	Reason Reason
	File   string // target file, if any
	Hunk   string // full hunk header ("@@ -1,3 +1,4 @@ func"), if any
	// Line is the 1-based line in the target file for hunk failures, and
	// the 1-based line in the patch text for parse failures and for unsafe
	// paths found by [Patch.CheckSafe].
	Line int
	Msg  string // what went wrong, without the patch name
}

func (e *Error) Error() string {
	return fmt.Sprintf("patch %q: %s", e.Patch, e.Msg)
}

// Unwrap returns the errs sentinel that classifies e.
func (e *Error) Unwrap() error {
	if e.Reason == ReasonUnsafe {
		return errs.ErrUnsafePatch
	}
	return errs.ErrPatchFailed
}

func (e *Error) failure() *Failure {
	return &Failure{
		Reason:  e.Reason,
		Message: e.Msg,
		File:    e.File,
		Hunk:    e.Hunk,
		Line:    e.Line,
	}
}
