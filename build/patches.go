package build

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/moby/buildkit/client"
	gateway "github.com/moby/buildkit/frontend/gateway/client"

	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/patch"
	"github.com/vmbuild/vmbuild/recipe"
)

// checkPatches is [BuildKit.CheckPatches].
func checkPatches(ctx context.Context, r *recipe.Recipe, l *lock.Lock, opts Options) ([]patch.Report, error) {
	var reports []patch.Report
	_, _, err := run(ctx, r, l, opts, nil, func(ctx context.Context, gw gateway.Client, x *runner) (*gateway.Result, error) {
		if _, err := x.graph(ctx, gw); err != nil {
			return nil, err
		}
		var err error
		reports, err = x.applyPatches(ctx, gw, false)
		var pe *PatchError
		if err != nil && !errors.As(err, &pe) {
			return nil, err
		}
		if pe != nil {
			return nil, pe
		}
		return gateway.NewResult(), nil
	})
	return reports, err
}

// Tree selects what ExportTree writes.
type Tree int

const (
	// Upstream is the pinned upstream tree, unpatched.
	Upstream Tree = iota
	// Patched is the tree after every patch.
	Patched
)

// ExportTree writes the upstream or patched source tree at the lock's
// commit into dir (which must not exist or be empty), for review. A patch
// that fails stops it with the *PatchError.
func ExportTree(ctx context.Context, r *recipe.Recipe, l *lock.Lock, which Tree, dir string, opts Options) error {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("exporting tree: %s is not empty", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("exporting tree: %w", err)
	}
	exports := []client.ExportEntry{{Type: client.ExporterLocal, OutputDir: dir}}
	_, _, err := run(ctx, r, l, opts, exports, func(ctx context.Context, gw gateway.Client, x *runner) (*gateway.Result, error) {
		g, err := x.graph(ctx, gw)
		if err != nil {
			return nil, err
		}
		st := g.Source
		if which == Patched {
			if _, err := x.applyPatches(ctx, gw, true); err != nil {
				return nil, err
			}
			st = g.Patched
		}
		_, res, err := x.solveRef(ctx, gw, st)
		return res, err
	})
	return err
}
