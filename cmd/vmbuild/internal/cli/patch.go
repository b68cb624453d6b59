package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/buildkit"
	"github.com/vmbuild/vmbuild/check"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/patch"
	"github.com/vmbuild/vmbuild/recipe"
)

func init() { extraCommands = append(extraCommands, (*app).patchCommand) }

func (a *app) patchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "patch check|export",
		Short: "Check the patch set across upstream commits, or export the patched tree",
	}
	cmd.AddCommand(a.patchCheckCommand(), a.patchExportCommand())
	return cmd
}

// patchSession is what `patch check` and `patch export` share: the
// recipe, its lock, and the build options of the common flags.
type patchSession struct {
	recipe string
	conn   connFlags
	opts   build.Options
}

func (p *patchSession) command(a *app, cmd *cobra.Command, run func(*cobra.Command, []string) error) *cobra.Command {
	var bf buildFlags
	bf.register(cmd.Flags(), "quiet", false)
	cmd.RunE = func(c *cobra.Command, args []string) error {
		var err error
		p.recipe, p.conn = args[0], bf.conn
		if p.opts, err = bf.options(a); err != nil {
			return err
		}
		return run(c, args)
	}
	return cmd
}

// open loads the recipe and its lock and connects.
func (p *patchSession) open(ctx context.Context, a *app) (*recipe.Recipe, *lock.Lock, build.Options, *buildkit.Conn, error) {
	opts := p.opts
	r, l, err := a.loadRecipeAndLock(ctx, p.recipe, false, p.conn.registryClient(a))
	if err != nil {
		return nil, nil, opts, nil, err
	}
	conn, err := p.conn.connect(ctx, a, &opts, false)
	return r, l, opts, conn, err
}

// patchCheckJob is `vmbuild patch check`.
type patchCheckJob struct {
	patchSession
	rng  string
	last int
	json bool
}

// patchExportJob is `vmbuild patch export`.
type patchExportJob struct {
	patchSession
	to             string
	diff, upstream bool
}

func (a *app) patchCheckCommand() *cobra.Command {
	j := &patchCheckJob{}
	var output string
	cmd := j.command(a, &cobra.Command{
		Use:   "check RECIPE",
		Short: "Report, for each upstream commit, whether each patch applies, fails or changes nothing",
		Long: `For every commit of --range A..B (commits after A up to B) or the --last N
commits of the recipe's ref (default 10), apply the patch set inside BuildKit
and report per patch: applies (with files changed, lines added and removed),
fails (with the hunk or the failing command) or no-op; and the first commit at
which each patch started to fail. The locked commit is always checked too.

Exit status: 0 when the locked and the newest commit apply cleanly, 1 when
either fails, 2 for usage or connection errors.`,
		Args: usageArgs(1),
	}, func(cmd *cobra.Command, args []string) error {
		if output != "text" && output != "json" {
			return fmt.Errorf("%w: --output must be text or json", errs.ErrUsage)
		}
		if j.rng != "" && cmd.Flags().Changed("last") {
			return fmt.Errorf("%w: give --range or --last, not both", errs.ErrUsage)
		}
		j.json = output == "json"
		return a.run(cmd.Context(), j)
	})
	cmd.Flags().StringVar(&j.rng, "range", "", "commits A..B of the upstream (refs or full hashes)")
	cmd.Flags().IntVar(&j.last, "last", 10, "check the newest N commits of the recipe's ref")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func (j *patchCheckJob) run(ctx context.Context, a *app) error {
	r, l, opts, conn, err := j.open(ctx, a)
	if err != nil {
		return withCode(2, err)
	}
	defer conn.Close()
	res, err := check.Patches(ctx, r, l, check.PatchesOptions{
		Build: opts, Git: lock.GitCLI{CacheDir: gitCacheDir()}, Range: j.rng, Last: j.last, Logger: a.log,
	})
	if err != nil {
		return withCode(2, err)
	}
	if j.json {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
		return res.Err()
	}
	// Commit subjects come from the upstream: escaped.
	var b strings.Builder
	if err := res.Table(&b); err != nil {
		return err
	}
	if _, err := io.WriteString(a.stdout, safeLines(b.String())); err != nil {
		return err
	}
	return res.Err()
}

func (a *app) patchExportCommand() *cobra.Command {
	j := &patchExportJob{}
	cmd := j.command(a, &cobra.Command{
		Use:   "export RECIPE",
		Short: "Write the patched tree (or the combined diff against upstream) for review",
		Long: `Apply the patch set at the locked commit inside BuildKit and write the patched
tree to --to DIR. With --diff, print the combined diff of all patches against
the upstream tree (git diff format) on stdout. --upstream writes the
unpatched tree instead.`,
		Args: usageArgs(1),
	}, func(cmd *cobra.Command, args []string) error {
		if j.to == "" && !j.diff {
			return fmt.Errorf("%w: give --to DIR, --diff, or both", errs.ErrUsage)
		}
		return a.run(cmd.Context(), j)
	})
	cmd.Flags().StringVar(&j.to, "to", "", "directory to write the tree to (must be empty or absent)")
	cmd.Flags().BoolVar(&j.diff, "diff", false, "print the combined diff against the upstream tree")
	cmd.Flags().BoolVar(&j.upstream, "upstream", false, "write the unpatched upstream tree")
	return cmd
}

func (j *patchExportJob) run(ctx context.Context, a *app) error {
	r, l, opts, conn, err := j.open(ctx, a)
	if err != nil {
		return err
	}
	defer conn.Close()
	which := build.Patched
	if j.upstream {
		which = build.Upstream
	}
	if j.to != "" {
		if err := build.ExportTree(ctx, r, l, which, j.to, opts); err != nil {
			return err
		}
		a.log.Info("wrote tree", "dir", j.to, "commit", l.Upstream.Commit)
	}
	if !j.diff {
		return nil
	}
	tmp, err := os.MkdirTemp("", "vmbuild-export-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	up, pa := filepath.Join(tmp, "upstream"), filepath.Join(tmp, "patched")
	if err := build.ExportTree(ctx, r, l, build.Upstream, up, opts); err != nil {
		return err
	}
	if err := build.ExportTree(ctx, r, l, build.Patched, pa, opts); err != nil {
		return err
	}
	d, err := patch.DiffTrees(ctx, up, pa)
	if err != nil {
		return err
	}
	_, err = a.stdout.Write(d)
	return err
}
