package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/vmbuild/vmbuild/check"
)

// runCheck is `vmbuild build --check`: build, rebuild without cache,
// compare.
func (a *app) runCheck(ctx context.Context, p *buildPlan) error {
	if p.repo != "" {
		return fmt.Errorf("--check builds to temporary OCI layouts; drop --push")
	}
	dir, err := check.TempDir("")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	a.log.Info("building, then rebuilding with the cache disabled", "recipe", p.r.Name, "commit", p.l.ShortCommit())
	res, _, err := check.Reproducible(ctx, p.r, p.l, dir, check.ReproOptions{Build: p.opts})
	if err != nil {
		return err
	}
	if err := res.Err(); err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "reproducible: two builds of %s at %s, the second without cache, gave %s\n", p.r.Name, p.l.ShortCommit(), res.First)
	fmt.Fprintln(a.stdout, res.First)
	return nil
}
