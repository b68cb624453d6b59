package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/check"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/patch"
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

type patchFlags struct {
	conn     connFlags
	helper   string
	progress string
}

func (f *patchFlags) register(cmd *cobra.Command) {
	f.conn.register(cmd.Flags())
	cmd.Flags().StringVar(&f.helper, "helper", "", "vmbuild-helper binary (default $VMBUILD_HELPER, beside vmbuild, $PATH)")
	cmd.Flags().StringVar(&f.progress, "progress", "quiet", "BuildKit progress: auto, tty, plain, quiet, rawjson")
}

func (a *app) patchSession(ctx context.Context, path string, f *patchFlags) (*buildPlan, error) {
	mode, err := progressMode(f.progress)
	if err != nil {
		return nil, err
	}
	p := &buildPlan{reg: f.conn.registryClient(a)}
	p.r, p.l, err = a.loadRecipeAndLock(ctx, path, false, p.reg)
	if err != nil {
		return nil, err
	}
	helper, err := findHelper(f.helper)
	if err != nil {
		return nil, err
	}
	conn, err := f.conn.connect(ctx, a)
	if err != nil {
		return nil, err
	}
	p.conn = conn
	p.opts = build.Options{Client: conn.Client, BuildKitVersion: conn.Version, HelperPath: helper,
		GitCredentials: lock.GitCLI{}.Credential,
		Progress:       a.stderr, ProgressMode: mode, WorkDir: filepath.Join(cacheDir(), "work"), Logger: a.log}
	return p, nil
}

func (a *app) patchCheckCommand() *cobra.Command {
	f := &patchFlags{}
	var rng, output string
	var last int
	cmd := &cobra.Command{
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
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("%w: --output must be text or json", errs.ErrUsage)
			}
			if rng != "" && cmd.Flags().Changed("last") {
				return fmt.Errorf("%w: give --range or --last, not both", errs.ErrUsage)
			}
			ctx := cmd.Context()
			p, err := a.patchSession(ctx, args[0], f)
			if err != nil {
				return withCode(2, err)
			}
			defer p.conn.Close()
			res, err := check.Patches(ctx, p.r, p.l, check.PatchesOptions{
				Build: p.opts, Git: lock.GitCLI{CacheDir: gitCacheDir()}, Range: rng, Last: last, Logger: a.log,
			})
			if err != nil {
				return withCode(2, err)
			}
			if output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(res); err != nil {
					return err
				}
			} else if err := res.Table(a.stdout); err != nil {
				return err
			}
			return res.Err()
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&rng, "range", "", "commits A..B of the upstream (refs or full hashes)")
	cmd.Flags().IntVar(&last, "last", 10, "check the newest N commits of the recipe's ref")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func (a *app) patchExportCommand() *cobra.Command {
	f := &patchFlags{}
	var to string
	var diff, upstream bool
	cmd := &cobra.Command{
		Use:   "export RECIPE",
		Short: "Write the patched tree (or the combined diff against upstream) for review",
		Long: `Apply the patch set at the locked commit inside BuildKit and write the patched
tree to --to DIR. With --diff, print the combined diff of all patches against
the upstream tree (git diff format) on stdout. --upstream writes the
unpatched tree instead.`,
		Args: usageArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" && !diff {
				return fmt.Errorf("%w: give --to DIR, --diff, or both", errs.ErrUsage)
			}
			ctx := cmd.Context()
			p, err := a.patchSession(ctx, args[0], f)
			if err != nil {
				return err
			}
			defer p.conn.Close()
			which := build.Patched
			if upstream {
				which = build.Upstream
			}
			if to != "" {
				if err := build.ExportTree(ctx, p.r, p.l, which, to, p.opts); err != nil {
					return err
				}
				a.log.Info("wrote tree", "dir", to, "commit", p.l.Upstream.Commit)
			}
			if diff {
				tmp, err := os.MkdirTemp("", "vmbuild-export-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				up, pa := filepath.Join(tmp, "upstream"), filepath.Join(tmp, "patched")
				if err := build.ExportTree(ctx, p.r, p.l, build.Upstream, up, p.opts); err != nil {
					return err
				}
				if err := build.ExportTree(ctx, p.r, p.l, build.Patched, pa, p.opts); err != nil {
					return err
				}
				d, err := patch.DiffTrees(ctx, up, pa)
				if err != nil {
					return err
				}
				if _, err := a.stdout.Write(d); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&to, "to", "", "directory to write the tree to (must be empty or absent)")
	cmd.Flags().BoolVar(&diff, "diff", false, "print the combined diff against the upstream tree")
	cmd.Flags().BoolVar(&upstream, "upstream", false, "write the unpatched upstream tree")
	return cmd
}
