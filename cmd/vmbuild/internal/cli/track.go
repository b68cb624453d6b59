package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/moby/buildkit/session"
	"github.com/spf13/cobra"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/publish"
	"github.com/vmbuild/vmbuild/recipe"
	"github.com/vmbuild/vmbuild/track"
	"github.com/vmbuild/vmbuild/track/history"
)

func init() { extraCommands = append(extraCommands, (*app).trackCommand) }

type trackFlags struct {
	build        buildFlags
	ref          string
	once         bool
	interval     time.Duration
	maxCommits   int
	headOnly     bool
	tags         []string
	buildTimeout time.Duration
	wait         bool
	retryFailed  bool
	report       bool
	format       string
}

func (a *app) trackCommand() *cobra.Command {
	f := &trackFlags{}
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
  vmbuild track R --report --format html > report.html

Exit status (--once): 0 when every commit built and published, 1 when one
failed, 2 for usage and configuration errors. With --interval, failures are
logged and the next pass goes on.`,
		Args: usageArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.report {
				return a.trackReport(args[0], f.format)
			}
			return a.runTrack(cmd.Context(), args[0], f)
		},
	}
	fs := cmd.Flags()
	f.build.conn.register(fs)
	f.build.sign.register(fs)
	fs.StringVar(&f.build.push, "push", "", "repository to publish to (REG/REPO; tags are --tag)")
	fs.StringVarP(&f.build.output, "output", "o", "", "without --push: oci:DIR to build into (default oci:out/NAME)")
	fs.StringVar(&f.build.progress, "progress", "quiet", "BuildKit progress: auto, tty, plain, quiet, rawjson")
	fs.StringVar(&f.build.helper, "helper", "", "vmbuild-helper binary (default $VMBUILD_HELPER, beside vmbuild, $PATH)")
	fs.StringSliceVar(&f.build.cacheFrom, "cache-from", nil, "import build cache, e.g. type=registry,ref=REG/REPO:buildcache (share a cache among builders)")
	fs.StringSliceVar(&f.build.cacheTo, "cache-to", nil, "export build cache, e.g. type=registry,ref=REG/REPO:buildcache (mode=max by default)")
	fs.StringVar(&f.ref, "ref", "", "track this ref instead of the recipe's upstream.ref")
	fs.BoolVar(&f.once, "once", false, "one pass, then exit (the default without --interval)")
	fs.DurationVar(&f.interval, "interval", 0, "run a pass every interval, forever")
	fs.IntVar(&f.maxCommits, "max-commits", 0, "build at most N new commits per pass, oldest first (0: all)")
	fs.BoolVar(&f.headOnly, "head-only", false, "build only the ref's head")
	fs.StringSliceVar(&f.tags, "tag", []string{"edge", "sha-{short}"}, "tags moved to each good build ({short}, {commit} are replaced)")
	fs.DurationVar(&f.buildTimeout, "build-timeout", time.Hour, "deadline for each commit's build and publish")
	fs.BoolVar(&f.wait, "wait", false, "wait for another track run on this recipe instead of exiting")
	fs.BoolVar(&f.retryFailed, "retry-failed", false, "rebuild commits that already failed with the same recipe and patches")
	fs.BoolVar(&f.report, "report", false, "print the history as a table and exit")
	fs.StringVar(&f.format, "format", "md", "--report format: md or html")
	return cmd
}

func (a *app) trackReport(path, format string) error {
	r, err := recipe.Load(path)
	if err != nil {
		return err
	}
	entries, err := history.Read(r.HistoryPath())
	if err != nil {
		return err
	}
	if format != "md" && format != "html" {
		return fmt.Errorf("%w: --format must be md or html", errs.ErrUsage)
	}
	return track.Report(a.stdout, r.Name, entries, format)
}

func (a *app) runTrack(ctx context.Context, path string, f *trackFlags) error {
	if f.once && f.interval > 0 {
		return fmt.Errorf("%w: give --once or --interval, not both", errs.ErrUsage)
	}
	if f.headOnly && f.maxCommits > 0 {
		return fmt.Errorf("%w: give --max-commits or --head-only, not both", errs.ErrUsage)
	}
	b := &f.build
	mode, err := progressMode(b.progress)
	if err != nil {
		return err
	}
	var repo string
	if b.push != "" {
		if err := b.sign.requireForPush(); err != nil {
			return err
		}
		if repo, _, err = pushTarget(b.push); err != nil {
			return err
		}
	}
	if err := b.sign.validate(); err != nil {
		return err
	}
	helper, err := findHelper(b.helper)
	if err != nil {
		return err
	}
	conn, err := b.conn.connect(ctx, a)
	if err != nil {
		return withCode(2, err)
	}
	defer conn.Close()
	reg := b.conn.registryClient(a)
	r0, err := recipe.Load(path)
	if err != nil {
		return withCode(2, err)
	}
	opts := track.Options{
		Build: build.Options{
			Client: conn.Client, BuildKitVersion: conn.Version, HelperPath: helper,
			Session: []session.Attachable{dockerAuth(a.stderr)}, GitCredentials: lock.GitCLI{}.Credential,
			Progress: a.stderr, ProgressMode: mode,
			WorkDir: filepath.Join(cacheDir(), "work"), Logger: a.log,
		},
		Resolver:     a.resolver(reg, r0),
		Ref:          f.ref,
		Tags:         f.tags,
		MaxCommits:   f.maxCommits,
		HeadOnly:     f.headOnly,
		BuildTimeout: f.buildTimeout,
		Wait:         f.wait,
		RetryFailed:  f.retryFailed,
		BuilderName:  conn.Addr,
		Registry:     reg,
		Logger:       a.log,
	}
	if repo != "" {
		opts.Repo = repo
	} else if b.output != "" {
		opts.OCIDir = b.output[len("oci:"):]
	}
	if opts.Build.CacheImports, opts.Build.CacheExports, err = cacheOptions(b.cacheFrom, b.cacheTo); err != nil {
		return err
	}
	if b.sign.key != "" {
		// Read before building: a wrong password should fail now, not
		// after an hour of building. It stays in this process.
		signer, err := a.loadSigner(b.sign.key)
		if err != nil {
			return withCode(2, err)
		}
		formats, _ := b.sign.formats()
		opts.Publish = publish.Options{Signer: signer, Formats: formats, BuilderID: b.sign.builderID, Logger: a.log}
	} else {
		if b.push != "" && b.sign.noSign {
			return fmt.Errorf("%w: track publishes signed images only; --no-sign is not supported here", errs.ErrUsage)
		}
	}
	report := func(res *track.Result) {
		if res == nil {
			return
		}
		for _, e := range res.Entries {
			fmt.Fprintf(a.stdout, "%s\t%s\t%s\t%s\n", e.Commit, e.Outcome, e.Digest, e.Duration().Round(time.Millisecond))
		}
	}
	if f.interval > 0 {
		return track.Loop(ctx, path, f.interval, opts, func(res *track.Result, err error) {
			report(res)
			if err != nil {
				a.log.Error("track pass failed", "err", err)
			} else if rerr := res.Err(); rerr != nil {
				a.log.Error("some commits failed", "err", rerr)
			}
		})
	}
	res, err := track.Once(ctx, path, opts)
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
