package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/util/progress/progressui"
	"github.com/spf13/cobra"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/buildkit"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/recipe"
	"github.com/vmbuild/vmbuild/registry"
	"github.com/vmbuild/vmbuild/store"
)

// buildFlags are `vmbuild build`'s options (CLI only; library options are
// build.Options).
type buildFlags struct {
	conn         connFlags
	output       string
	push         string
	tag          string
	metadataFile string
	progress     string
	updateLock   bool
	helper       string
	cacheFrom    []string
	cacheTo      []string
	timeout      time.Duration
	sign         signFlags
	check        bool
}

func (a *app) buildCommand() *cobra.Command {
	f := &buildFlags{}
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
disabled and compares (like nix build --check).`,
		Args: usageArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runBuild(cmd.Context(), args[0], f)
		},
	}
	fs := cmd.Flags()
	f.conn.register(fs)
	fs.StringVarP(&f.output, "output", "o", "", "output: oci:DIR (an OCI image layout; default oci:out/NAME)")
	fs.StringVar(&f.push, "push", "", "push to REPO[:TAG] (by digest; the tag moves after signing)")
	fs.StringVar(&f.tag, "tag", "latest", "tag (ref name) for the image in an OCI layout output")
	fs.StringVar(&f.metadataFile, "metadata-file", "", "write build metadata (digest, commit, steps, patches) as JSON to this file")
	fs.StringVar(&f.progress, "progress", "auto", "progress output: auto, tty, plain, quiet, rawjson")
	fs.BoolVar(&f.updateLock, "update-lock", false, "write or refresh the lock first when it is missing or stale")
	fs.StringVar(&f.helper, "helper", "", "vmbuild-helper binary for patch steps (default $VMBUILD_HELPER, beside vmbuild, $PATH)")
	fs.StringSliceVar(&f.cacheFrom, "cache-from", nil, "import build cache: type=registry,ref=R (BuildKit cache syntax)")
	fs.StringSliceVar(&f.cacheTo, "cache-to", nil, "export build cache: type=registry,ref=R,mode=max")
	fs.DurationVar(&f.timeout, "timeout", 0, "give up on the build after this long (0: no limit)")
	fs.BoolVar(&f.check, "check", false, "rebuild with the cache disabled and compare digests (reproducibility check)")
	f.sign.register(fs)
	return cmd
}

func progressMode(s string) (progressui.DisplayMode, error) {
	switch s {
	case "auto", "":
		return progressui.AutoMode, nil
	case "tty":
		return progressui.TtyMode, nil
	case "plain":
		return progressui.PlainMode, nil
	case "quiet":
		return progressui.QuietMode, nil
	case "rawjson":
		return progressui.RawJSONMode, nil
	}
	return "", fmt.Errorf("%w: --progress must be auto, tty, plain, quiet or rawjson, not %q", errs.ErrUsage, s)
}

// ParseCacheOption parses BuildKit's --cache-from/--cache-to syntax
// (type=registry,ref=R,mode=max).
func parseCacheOption(s string) (client.CacheOptionsEntry, error) {
	e := client.CacheOptionsEntry{Attrs: map[string]string{}}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			// buildx accepts a bare ref for type=registry
			if !strings.Contains(s, "=") {
				e.Type = "registry"
				e.Attrs["ref"] = s
				continue
			}
			return e, fmt.Errorf("%w: cache option %q: expected key=value", errs.ErrUsage, kv)
		}
		if k == "type" {
			e.Type = v
		} else {
			e.Attrs[k] = v
		}
	}
	if e.Type == "" {
		return e, fmt.Errorf("%w: cache option %q needs type=", errs.ErrUsage, s)
	}
	return e, nil
}

// pushTarget splits REPO[:TAG] into the repository and tag.
func pushTarget(ref string) (repo, tag string, err error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", "", fmt.Errorf("%w: --push %q: %v", errs.ErrUsage, ref, err)
	}
	if _, ok := named.(reference.Digested); ok {
		return "", "", fmt.Errorf("%w: --push %q: give a repository and optional tag, not a digest", errs.ErrUsage, ref)
	}
	tag = "latest"
	if t, ok := named.(reference.Tagged); ok {
		tag = t.Tag()
	}
	return reference.TrimNamed(named).String(), tag, nil
}

// cacheOptions parses --cache-from and --cache-to (build fills in a
// registry export's defaults).
func cacheOptions(from, to []string) (imports, exports []client.CacheOptionsEntry, err error) {
	for _, s := range from {
		e, err := parseCacheOption(s)
		if err != nil {
			return nil, nil, err
		}
		imports = append(imports, e)
	}
	for _, s := range to {
		e, err := parseCacheOption(s)
		if err != nil {
			return nil, nil, err
		}
		exports = append(exports, e)
	}
	return imports, exports, nil
}

type buildPlan struct {
	r        *recipe.Recipe
	l        *lock.Lock
	conn     *buildkit.Conn
	opts     build.Options
	repo     string
	tags     []string
	reg      *registry.Client
	auth     session.Attachable
	progress progressui.DisplayMode
	// signer resolves to the decrypted signing key (loaded while building).
	signer *pendingKey
}

func (a *app) prepareBuild(ctx context.Context, path string, f *buildFlags) (*buildPlan, error) {
	mode, err := progressMode(f.progress)
	if err != nil {
		return nil, err
	}
	if f.output != "" && f.push != "" {
		return nil, fmt.Errorf("%w: give --output or --push, not both", errs.ErrUsage)
	}
	p := &buildPlan{reg: f.conn.registryClient(a), progress: mode}
	if f.push != "" {
		p.repo, p.tags, err = "", nil, nil
		repo, tag, err := pushTarget(f.push)
		if err != nil {
			return nil, err
		}
		p.repo, p.tags = repo, []string{tag}
		if err := f.sign.requireForPush(); err != nil {
			return nil, err
		}
	}
	if err := f.sign.validate(); err != nil {
		return nil, err
	}
	p.r, p.l, err = a.loadRecipeAndLock(ctx, path, f.updateLock, p.reg)
	if err != nil {
		return nil, err
	}
	if f.sign.key != "" && !f.check {
		p.signer = a.loadSignerAsync(f.sign.key)
	}
	helper, err := findHelper(f.helper)
	if err != nil {
		return nil, err
	}
	imports, exports, err := cacheOptions(f.cacheFrom, f.cacheTo)
	if err != nil {
		return nil, err
	}
	p.auth = dockerAuth(a.stderr)
	p.opts = build.Options{
		HelperPath:   helper,
		CacheImports: imports,
		CacheExports: exports,
		Session:      []session.Attachable{p.auth},
		// git's own credential helpers; lock.GitCLI asks them.
		GitCredentials: lock.GitCLI{}.Credential,
		Progress:       a.stderr,
		ProgressMode:   mode,
		WorkDir:        filepath.Join(cacheDir(), "work"),
		Logger:         a.log,
	}
	if p.repo != "" {
		p.opts.Output.PushRepo = p.repo
	} else {
		dir := strings.TrimPrefix(f.output, "oci:")
		if f.output != "" && !strings.HasPrefix(f.output, "oci:") {
			return nil, fmt.Errorf("%w: --output %q: only oci:DIR is supported (use --push to push)", errs.ErrUsage, f.output)
		}
		if dir == "" {
			dir = filepath.Join("out", p.r.Name)
		}
		p.opts.Output.OCIDir = dir
		p.opts.Output.OCITag = f.tag
	}
	return p, nil
}

func (a *app) runBuild(ctx context.Context, path string, f *buildFlags) error {
	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, f.timeout, fmt.Errorf("build deadline (--timeout %s) exceeded", f.timeout))
		defer cancel()
	}
	p, err := a.prepareBuild(ctx, path, f)
	if err != nil {
		return err
	}
	// The managed daemon grants network.host only for a recipe that asks.
	f.conn.networkHost = len(p.r.NetworkedLayers()) > 0
	conn, err := f.conn.connect(ctx, a)
	if err != nil {
		return err
	}
	defer conn.Close()
	p.conn = conn
	p.opts.Client = conn.Client
	p.opts.BuildKitVersion = conn.Version
	if f.check {
		return a.runCheck(ctx, p)
	}
	ctx, stopWatch := buildkit.Watchdog(ctx, conn.Client, buildkit.WatchdogOptions{})
	defer stopWatch()
	if p.signer != nil && p.signer.pub == nil {
		// A key that does not decrypt stops the build before it pushes
		// (a key decrypted before is decrypted only if something is to
		// be signed, after the push by digest and before any tag moves).
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		go func() {
			if _, err := p.signer.load(); err != nil {
				cancel(err)
			}
		}()
	}
	a.log.Info("building", "recipe", p.r.Name, "commit", p.l.Upstream.Commit, "buildkit", conn.Addr)
	res, err := build.Build(ctx, p.r, p.l, p.opts)
	if res != nil {
		a.printPatchReports(res)
	}
	if err != nil {
		if res != nil && f.metadataFile != "" {
			_ = writeMetadata(f.metadataFile, res, nil)
		}
		return err
	}
	filled := make(chan struct{})
	go func() {
		// Concurrently with publishing: two round trips fewer on the way.
		defer close(filled)
		if p.repo != "" {
			st, err := store.NewRegistry(p.reg, p.repo)
			if err == nil {
				err = res.ReadManifest(ctx, st)
			}
			if err != nil {
				a.log.Warn("could not read back the pushed manifest", "err", err)
			}
		}
	}()
	pub, err := a.publish(ctx, p, res, &f.sign)
	<-filled
	if f.metadataFile != "" {
		if werr := writeMetadata(f.metadataFile, res, pub); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		return err
	}
	ref := res.Digest.String()
	if p.repo != "" {
		ref = p.repo + "@" + res.Digest.String()
	}
	a.log.Info("built", "image", ref, "commit", p.l.ShortCommit())
	fmt.Fprintln(a.stdout, res.Digest)
	return nil
}

func (a *app) printPatchReports(res *build.Result) {
	for _, rep := range res.Patches {
		status := string(rep.Status)
		a.log.Info(fmt.Sprintf("patch %s: %s, %s", rep.Patch, status, rep.Summary()))
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
