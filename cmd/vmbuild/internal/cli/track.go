package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/publish"
	"github.com/vmbuild/vmbuild/recipe"
	"github.com/vmbuild/vmbuild/sign"
	"github.com/vmbuild/vmbuild/track"
	"github.com/vmbuild/vmbuild/track/history"
)

func init() { extraCommands = append(extraCommands, (*app).trackCommand) }

// trackJob is `vmbuild track`, translated from its flags.
type trackJob struct {
	recipe string
	conn   connFlags
	// opts are the track options but for the client, the resolver, the
	// registry and the signer.
	opts     track.Options
	sign     signFlags
	formats  sign.Format
	interval time.Duration
}

// trackReportJob is `vmbuild track --report`.
type trackReportJob struct {
	recipe, format string
}

func (a *app) trackCommand() *cobra.Command {
	var (
		bf             buildFlags
		of             outputFlags
		sf             signFlags
		once, report   bool
		format         string
		maxCommits     int
		headOnly, wait bool
	)
	j := &trackJob{}
	cmd := &cobra.Command{
		Use:   "track RECIPE",
		Short: "Build, sign and publish every new upstream commit (for cron, CI or a timer)",
		Long: `Resolve the tracked ref's head and build each commit since the locked one,
oldest first (or only the head with --head-only). After each success the image
is pushed by digest, signed and attested, then the tags move (default "edge"
and "sha-<short commit>") and the lock advances. A commit whose patches or build
fail is recorded in the history (NAME.history.jsonl beside the recipe) with its
patch report and failing step, and nothing is published for it.

  vmbuild track R --push REG/REPO --key cosign.key --once
  vmbuild track R --push REG/REPO --key cosign.key --interval 10m
  vmbuild track R --output oci:out/R --once
  vmbuild track R --report --format html > report.html

Exit status (--once): 0 when every commit built and published, 1 when one
failed, 2 for usage and configuration errors. With --interval, failures are
logged and the next pass goes on.`,
		Args: usageArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if report {
				if format != "md" && format != "html" {
					return fmt.Errorf("%w: --format must be md or html", errs.ErrUsage)
				}
				return a.run(cmd.Context(), &trackReportJob{recipe: args[0], format: format})
			}
			switch {
			case once && j.interval > 0:
				return fmt.Errorf("%w: give --once or --interval, not both", errs.ErrUsage)
			case headOnly && maxCommits > 0:
				return fmt.Errorf("%w: give --max-commits or --head-only, not both", errs.ErrUsage)
			}
			out, err := parseTarget(of.output, of.push)
			if err != nil {
				return err
			}
			if out.tag != "" {
				return fmt.Errorf("%w: --push %q: track pushes to a repository, REG/REPO; the tags are --tag", errs.ErrUsage, of.push)
			}
			if j.formats, err = sf.validate(out.repo != ""); err != nil {
				return err
			}
			if out.repo != "" && sf.noSign {
				return fmt.Errorf("%w: track publishes signed images only; --no-sign is not supported with --push", errs.ErrUsage)
			}
			j.recipe, j.conn, j.sign = args[0], bf.conn, sf
			j.opts.Repo, j.opts.OCIDir = out.repo, out.ociDir
			j.opts.MaxCommits, j.opts.HeadOnly, j.opts.Wait = maxCommits, headOnly, wait
			j.opts.Logger = a.log
			if j.opts.Build, err = bf.options(a); err != nil {
				return err
			}
			return a.run(cmd.Context(), j)
		},
	}
	fs := cmd.Flags()
	bf.register(fs, "quiet", true)
	sf.register(fs)
	fs.StringVar(&of.push, "push", "", "repository to publish to, REG/REPO (the tags are --tag)")
	fs.StringVarP(&of.output, "output", "o", "", "without --push: oci:DIR, the OCI image layout to build into (default oci:out/NAME)")
	fs.StringVar(&j.opts.Ref, "ref", "", "track this ref instead of the recipe's upstream.ref")
	fs.BoolVar(&once, "once", false, "one pass, then exit (the default without --interval)")
	fs.DurationVar(&j.interval, "interval", 0, "run a pass every interval, e.g. 10m, forever")
	fs.IntVar(&maxCommits, "max-commits", 0, "build at most N new commits per pass, oldest first (0: all)")
	fs.BoolVar(&headOnly, "head-only", false, "build only the ref's head")
	fs.StringSliceVar(&j.opts.Tags, "tag", []string{"edge", "sha-{short}"}, "tags moved to each good build ({short}, {commit} are replaced); repeat, or separate with commas")
	fs.DurationVar(&j.opts.BuildTimeout, "build-timeout", time.Hour, "deadline for each commit's build and publish")
	fs.BoolVar(&wait, "wait", false, "wait for another track run on this recipe instead of exiting")
	fs.BoolVar(&j.opts.RetryFailed, "retry-failed", false, "rebuild commits that already failed with the same recipe and patches")
	fs.BoolVar(&report, "report", false, "print the history as a table and exit")
	fs.StringVar(&format, "format", "md", "--report format: md or html")
	return cmd
}

func (j *trackReportJob) run(ctx context.Context, a *app) error {
	r, err := recipe.Load(j.recipe)
	if err != nil {
		return err
	}
	entries, err := history.Read(r.HistoryPath())
	if err != nil {
		return err
	}
	return track.Report(a.stdout, r.Name, entries, j.format)
}

func (j *trackJob) run(ctx context.Context, a *app) error {
	r0, err := recipe.Load(j.recipe)
	if err != nil {
		return withCode(2, err)
	}
	opts := j.opts
	conn, err := j.conn.connect(ctx, a, &opts.Build, len(r0.NetworkedLayers()) > 0)
	if err != nil {
		return withCode(2, err)
	}
	defer conn.Close()
	opts.Registry = j.conn.registryClient(a)
	opts.Resolver = a.resolver(opts.Registry, r0)
	opts.BuilderName = conn.Addr
	if j.sign.key != "" {
		// Read before building: a wrong password should fail now, not
		// after an hour of building. It stays in this process.
		signer, err := a.loadSigner(j.sign.key)
		if err != nil {
			return withCode(2, err)
		}
		opts.Publish = publish.Options{Signer: signer, Formats: j.formats, BuilderID: j.sign.builderID, Logger: a.log}
	}
	report := func(res *track.Result) {
		if res == nil {
			return
		}
		for _, e := range res.Entries {
			fmt.Fprintf(a.stdout, "%s\t%s\t%s\t%s\n", e.Commit, e.Outcome, e.Digest, e.Duration().Round(time.Millisecond))
		}
	}
	if j.interval > 0 {
		return track.Loop(ctx, j.recipe, j.interval, opts, func(res *track.Result, err error) {
			report(res)
			if err != nil {
				a.log.Error("track pass failed", "err", err)
			} else if rerr := res.Err(); rerr != nil {
				a.log.Error("some commits failed", "err", rerr)
			}
		})
	}
	res, err := track.Once(ctx, j.recipe, opts)
	report(res)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		return withCode(2, err)
	}
	if res.UpToDate {
		fmt.Fprintln(a.stderr, "up to date")
	}
	return res.Err()
}
