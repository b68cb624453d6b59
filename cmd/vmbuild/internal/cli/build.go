package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/buildkit"
	"github.com/vmbuild/vmbuild/check"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/recipe"
	"github.com/vmbuild/vmbuild/sign"
	"github.com/vmbuild/vmbuild/store"
)

// buildJob is `vmbuild build`, translated from its flags.
type buildJob struct {
	recipe string
	conn   connFlags
	// opts are the build options but for the client and the output.
	opts         build.Options
	out          target
	sign         signFlags
	formats      sign.Format
	updateLock   bool
	check        bool
	metadataFile string
	timeout      time.Duration
}

func (a *app) buildCommand() *cobra.Command {
	var (
		bf  buildFlags
		of  outputFlags
		sf  signFlags
		tag string
	)
	j := &buildJob{}
	cmd := &cobra.Command{
		Use:   "build RECIPE",
		Short: "Build the recipe's image from its lock",
		Long: `Build the recipe's image on BuildKit from its lock file, and print the image
digest on stdout.

Outputs:
  --output oci:DIR     an OCI image layout (default oci:out/NAME); the image is
                       added under --tag (default "latest")
  --push REPO[:TAG]    push by digest, sign, attest, then move TAG (default
                       "latest"); needs --key (or --no-sign)

The lock must exist and match the recipe and its patches; --update-lock
(re)writes it first. SOURCE_DATE_EPOCH is the locked commit time: the same
recipe and lock give the same digest anywhere. --check rebuilds with the cache
disabled and compares (like nix build --check).

Build cache, in BuildKit's (buildx's) syntax, one cache per flag:
  --cache-to type=registry,ref=REG/REPO:buildcache,mode=max
  --cache-from type=registry,ref=REG/REPO:buildcache`,
		Args: usageArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			j.recipe, j.conn = args[0], bf.conn
			if j.out, err = parseTarget(of.output, of.push); err != nil {
				return err
			}
			if j.out.repo != "" && cmd.Flags().Changed("tag") {
				return fmt.Errorf("%w: --tag names the image in an OCI layout; with --push give the tag as REPO:TAG", errs.ErrUsage)
			}
			if j.out.tag == "" {
				j.out.tag = tag
			}
			if j.check && j.out.repo != "" {
				return fmt.Errorf("%w: --check builds to temporary OCI layouts; drop --push", errs.ErrUsage)
			}
			if j.formats, err = sf.validate(j.out.repo != ""); err != nil {
				return err
			}
			j.sign = sf
			if j.opts, err = bf.options(a); err != nil {
				return err
			}
			return a.run(cmd.Context(), j)
		},
	}
	fs := cmd.Flags()
	bf.register(fs, "auto", true)
	fs.StringVarP(&of.output, "output", "o", "", "output: oci:DIR, an OCI image layout (default oci:out/NAME)")
	fs.StringVar(&of.push, "push", "", "push to REPO[:TAG] (by digest; the tag, default latest, moves after signing)")
	fs.StringVar(&tag, "tag", "latest", "tag (ref name) for the image in an OCI layout output")
	fs.StringVar(&j.metadataFile, "metadata-file", "", "write build metadata (digest, commit, steps, patches) as JSON to this file")
	fs.BoolVar(&j.updateLock, "update-lock", false, "write or refresh the lock first when it is missing or stale")
	fs.DurationVar(&j.timeout, "timeout", 0, "give up on the build after this long, e.g. 30m (0: no limit)")
	fs.BoolVar(&j.check, "check", false, "rebuild with the cache disabled and compare digests (reproducibility check)")
	sf.register(fs)
	return cmd
}

func (j *buildJob) run(ctx context.Context, a *app) error {
	if j.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, j.timeout, fmt.Errorf("build deadline (--timeout %s) exceeded", j.timeout))
		defer cancel()
	}
	reg := j.conn.registryClient(a)
	r, l, err := a.loadRecipeAndLock(ctx, j.recipe, j.updateLock, reg)
	if err != nil {
		return err
	}
	var signer *sign.PendingKey
	if j.sign.key != "" && !j.check {
		signer = a.loadSignerAsync(j.sign.key)
	}
	opts := j.opts
	if j.out.repo != "" {
		opts.Output.PushRepo = j.out.repo
	} else {
		opts.Output.OCIDir, opts.Output.OCITag = j.out.ociDir, j.out.tag
		if opts.Output.OCIDir == "" {
			opts.Output.OCIDir = filepath.Join("out", r.Name)
		}
	}
	// The managed daemon grants network.host only for a recipe that asks.
	conn, err := j.conn.connect(ctx, a, &opts, len(r.NetworkedLayers()) > 0)
	if err != nil {
		return err
	}
	defer conn.Close()
	if j.check {
		return a.runCheck(ctx, r, l, opts)
	}
	ctx, stopWatch := buildkit.Watchdog(ctx, conn.Client, buildkit.WatchdogOptions{})
	defer stopWatch()
	if signer != nil && signer.Public == nil {
		// A key that does not decrypt stops the build before it pushes
		// (a key decrypted before is decrypted only if something is to
		// be signed, after the push by digest and before any tag moves).
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		go func() {
			if _, err := signer.Load(); err != nil {
				cancel(err)
			}
		}()
	}
	a.log.Info("building", "recipe", r.Name, "commit", l.Upstream.Commit, "buildkit", conn.Addr)
	res, err := build.Build(ctx, r, l, opts)
	if res != nil {
		a.printPatchReports(res)
	}
	if err != nil {
		if res != nil && j.metadataFile != "" {
			_ = writeMetadata(j.metadataFile, res, nil)
		}
		return err
	}
	var st store.Store // the registry repository; a layout is opened to sign in it
	if j.out.repo != "" {
		if st, err = store.NewRegistry(reg, j.out.repo); err != nil {
			return err
		}
	}
	filled := make(chan struct{})
	go func() {
		// Concurrently with publishing: two round trips fewer on the way.
		defer close(filled)
		if st != nil {
			if err := res.ReadManifest(ctx, st); err != nil {
				a.log.Warn("could not read back the pushed manifest", "err", err)
			}
		}
	}()
	pub, err := j.publish(ctx, a, st, opts.Output.OCIDir, r, l, res, signer)
	<-filled
	if j.metadataFile != "" {
		if werr := writeMetadata(j.metadataFile, res, pub); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		return err
	}
	a.log.Info("built", "image", pub.Image, "commit", l.ShortCommit())
	fmt.Fprintln(a.stdout, res.Digest)
	return nil
}

// runCheck is `vmbuild build --check`: build, rebuild without cache,
// compare.
func (a *app) runCheck(ctx context.Context, r *recipe.Recipe, l *lock.Lock, opts build.Options) error {
	dir, err := check.TempDir("")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	a.log.Info("building, then rebuilding with the cache disabled", "recipe", r.Name, "commit", l.ShortCommit())
	res, _, err := check.Reproducible(ctx, r, l, dir, check.ReproOptions{Build: opts})
	if err != nil {
		return err
	}
	if err := res.Err(); err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "reproducible: two builds of %s at %s, the second without cache, gave %s\n", r.Name, l.ShortCommit(), res.First)
	fmt.Fprintln(a.stdout, res.First)
	return nil
}

func (a *app) printPatchReports(res *build.Result) {
	for _, rep := range res.Patches {
		a.log.Info(fmt.Sprintf("patch %s: %s, %s", rep.Patch, rep.Status, rep.Summary()))
	}
}

// metadata is the --metadata-file document.
type metadata struct {
	Digest      string             `json:"containerimage.digest,omitempty"`
	Commit      string             `json:"commit"`
	CommitTime  time.Time          `json:"commitTime"`
	Epoch       int64              `json:"sourceDateEpoch"`
	LLBDigest   string             `json:"llbDigest,omitempty"`
	BuildKit    string             `json:"buildkitVersion,omitempty"`
	Steps       []build.StepResult `json:"steps"`
	Patches     any                `json:"patches"`
	Vertices    []build.Vertex     `json:"vertices,omitempty"`
	BytesPushed int64              `json:"bytesPushed"`
	StartedOn   time.Time          `json:"startedOn"`
	FinishedOn  time.Time          `json:"finishedOn,omitzero"`
	Published   *publishReport     `json:"published,omitempty"`
}

func writeMetadata(path string, res *build.Result, pub *publishReport) error {
	m := metadata{
		Digest: res.Digest.String(), Commit: res.Commit, CommitTime: res.CommitTime, Epoch: res.Epoch,
		LLBDigest: res.LLBDigest.String(), BuildKit: res.BuildKit, Steps: res.Steps, Patches: res.Patches,
		Vertices: res.Vertices, BytesPushed: res.BytesPushed, StartedOn: res.StartedOn, FinishedOn: res.FinishedOn, Published: pub,
	}
	if m.Steps == nil {
		m.Steps = []build.StepResult{}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
