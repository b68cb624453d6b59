package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/vmbuild/vmbuild/llb"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/recipe"
)

// lockJob is `vmbuild lock`.
type lockJob struct {
	recipe   string
	opts     lock.Options
	insecure []string
}

func (a *app) lockCommand() *cobra.Command {
	j := &lockJob{}
	cmd := &cobra.Command{
		Use:   "lock RECIPE",
		Short: "Pin the recipe's inputs in NAME.lock.json",
		Long: `Resolve the upstream ref to a commit and its commit time, the base image and
the Dockerfile's images (and its # syntax= frontend) to digests, and record the
sha256 of the recipe and each patch, in NAME.lock.json beside the recipe.

Without --update an existing lock keeps its pinned commit and image digests
(only what the recipe changed is re-resolved). --update moves to the ref's
current head. --commit pins a commit by hand.`,
		Args: usageArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			j.recipe = args[0]
			return a.run(cmd.Context(), j)
		},
	}
	cmd.Flags().BoolVar(&j.opts.Update, "update", false, "move to the ref's current head and re-resolve image tags")
	cmd.Flags().StringVar(&j.opts.Commit, "commit", "", "pin this commit (hash, or a ref resolved once)")
	cmd.Flags().StringSliceVar(&j.insecure, "insecure-registry", nil, "registry host:port reached over plain http (loopback registries always are)")
	return cmd
}

func (j *lockJob) run(ctx context.Context, a *app) error {
	r, err := recipe.Load(j.recipe)
	if err != nil {
		return err
	}
	var prev *lock.Lock
	if _, err := os.Stat(r.LockPath()); err == nil {
		if prev, err = lock.Read(r.LockPath()); err != nil {
			return err
		}
	}
	conn := connFlags{insecure: j.insecure}
	l, err := a.relock(ctx, r, prev, j.opts, conn.registryClient(a))
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%s: %s %s (%s)\n", r.LockPath(), r.Upstream.Ref, l.Upstream.Commit, l.Upstream.CommitTime.Format("2006-01-02T15:04:05Z"))
	return nil
}

func (a *app) graphCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "graph RECIPE",
		Short: "Print the recipe's layer graph as Graphviz DOT (no daemon needed)",
		Long: `Print the recipe's layer graph as Graphviz DOT: source, patches, layers with
their inputs, and the image. Needs no daemon and no network. Without a lock
file the graph shows placeholder pins.

  vmbuild graph recipes/demo/demo.yaml | dot -Tsvg > graph.svg`,
		Args: usageArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := recipe.Load(args[0])
			if err != nil {
				return err
			}
			l, err := lock.Read(r.LockPath())
			if err != nil {
				l = placeholderLock(r)
			}
			g, err := llb.Build(r, l, llb.Options{})
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(a.stdout, g.DOT())
			return err
		},
	}
}

// placeholderLock stands in for a missing lock in `vmbuild graph`.
func placeholderLock(r *recipe.Recipe) *lock.Lock {
	l := &lock.Lock{LockVersion: lock.Version,
		Upstream: lock.Upstream{URL: r.Upstream.Git, Ref: r.Upstream.Ref, Commit: "0000000000000000000000000000000000000000"}}
	zero := "sha256:" + fmt.Sprintf("%064d", 0)
	if r.Base != "" {
		l.Base = &lock.ImagePin{Ref: lock.NormalizeImageRef(r.Base), Digest: zero}
	}
	for _, p := range r.Patches {
		l.Patches = append(l.Patches, lock.PatchPin{Name: p.Name, Kind: string(p.Kind), File: p.File, SHA256: p.SHA256})
	}
	return l
}
