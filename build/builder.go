package build

import (
	"context"

	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/patch"
	"github.com/vmbuild/vmbuild/recipe"
)

// Builder builds a recipe pinned by a lock into an image: the seam through
// which track and check build, in the manner of ko's build.Interface, so
// that what sits on top can be tested without a BuildKit daemon. [New]
// returns the real one.
type Builder interface {
	// Build solves r pinned by l and exports the image where req says.
	// Errors are as [Build]'s: a *PatchError (errs.ErrPatchFailed) for a
	// patch that does not apply, a *StepError (errs.ErrBuildFailed) for a
	// failing step, errs.ErrBuildKitUnavailable for a lost daemon. The
	// Result may be partial (patch reports, steps) when err is not nil.
	Build(ctx context.Context, r *recipe.Recipe, l *lock.Lock, req Request) (*Result, error)
}

// PatchChecker applies a recipe's patches to the upstream tree at the
// lock's commit without building the image: the seam through which
// check.Patches runs. [New] returns the real one.
type PatchChecker interface {
	// CheckPatches returns one report per patch that was tried; the
	// error, if any, is the first *PatchError, or why the patches could
	// not be tried at all (a report per patch is returned either way).
	CheckPatches(ctx context.Context, r *recipe.Recipe, l *lock.Lock) ([]patch.Report, error)
}

// Request is what varies between the builds of one Builder.
type Request struct {
	// Output says where the image goes; the zero Output takes the
	// builder's Options.Output.
	Output Output
	// NoCache rebuilds every step (vmbuild build --check); a builder
	// whose Options.NoCache is set never uses the cache.
	NoCache bool
}

// BuildKit is the Builder and PatchChecker over a BuildKit daemon: each
// call is one gateway session on Options.Client.
type BuildKit struct{ opts Options }

var (
	_ Builder      = (*BuildKit)(nil)
	_ PatchChecker = (*BuildKit)(nil)
)

// New returns the Builder and PatchChecker that build with opts (a
// connected Options.Client is required, and checked when building).
// opts.Output and opts.NoCache are the defaults of each Request.
func New(opts Options) *BuildKit { return &BuildKit{opts: opts} }

// Build builds r at l as [Build] does, with the Request's output and
// cache setting.
func (b *BuildKit) Build(ctx context.Context, r *recipe.Recipe, l *lock.Lock, req Request) (*Result, error) {
	opts := b.opts
	if req.Output != (Output{}) {
		opts.Output = req.Output
	}
	opts.NoCache = opts.NoCache || req.NoCache
	return Build(ctx, r, l, opts)
}

// CheckPatches applies the recipe's patches to the upstream tree at the
// lock's commit, inside BuildKit, and returns one report per patch. It
// costs one source fetch and the patch steps (cached by BuildKit per
// commit). Every patch is tried; the error, if any, is the first
// *PatchError (a report per patch is returned either way).
func (b *BuildKit) CheckPatches(ctx context.Context, r *recipe.Recipe, l *lock.Lock) ([]patch.Report, error) {
	return checkPatches(ctx, r, l, b.opts)
}
