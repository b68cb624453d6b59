// Package harness runs vmbuild's benchmark (bench/run): vmbuild's native
// and dockerfile modes against `buildctl build` with BuildKit's dockerfile
// frontend on upstream's Dockerfile and on a hand-tuned one, over a
// Mastodon-shaped upstream (package gen) and a sequence of commits, on one
// buildkitd of its own, each contender pushing to a loopback registry
// through a byte-counting proxy.
package harness

import (
	"bytes"
	"context"
	"fmt"
	"github.com/vmbuild/vmbuild/internal/localsvc"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vmbuild/vmbuild/bench/internal/gen"
	"github.com/vmbuild/vmbuild/internal/baseimage"
	"github.com/vmbuild/vmbuild/internal/testenv/detgit"
)

// Contender is one way of building the upstream.
type Contender struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	// Tool is "vmbuild" or "buildctl".
	Tool string `json:"tool"`
	// Epoch says how the commit time reaches the build: "exporter"
	// (rewrite-timestamp and source-date-epoch on the exporter only),
	// "build-arg" (SOURCE_DATE_EPOCH build arg, which BuildKit also hands
	// to the exporter, plus rewrite-timestamp) or "none".
	Epoch string `json:"epoch"`
}

// Contenders, in the order of the tables.
var Contenders = []Contender{
	{ID: "native", Title: "vmbuild native", Tool: "vmbuild", Epoch: "exporter"},
	{ID: "dockerfile", Title: "vmbuild dockerfile mode", Tool: "vmbuild", Epoch: "exporter"},
	{ID: "peer-epoch", Title: "peer, upstream Dockerfile, epoch build-arg", Tool: "buildctl", Epoch: "build-arg"},
	{ID: "peer", Title: "peer, upstream Dockerfile, no epoch", Tool: "buildctl", Epoch: "none"},
	{ID: "tuned", Title: "hand-tuned Dockerfile", Tool: "buildctl", Epoch: "exporter"},
}

// ContenderByID finds a contender.
func ContenderByID(id string) (Contender, bool) {
	for _, c := range Contenders {
		if c.ID == id {
			return c, true
		}
	}
	return Contender{}, false
}

// Config configures a benchmark run.
type Config struct {
	// Root is the vmbuild checkout (its bin/ holds the programs).
	Root string
	Size gen.Size
	// Reps is the number of repetitions of every sequence (>= 1).
	Reps int
	// WorkDir holds everything the run makes; it must be on a file system
	// that can hold overlayfs upper dirs, with a short path.
	WorkDir string
	// Contenders to run (IDs); default all.
	Contenders []string
	// SkipSigning skips the separate signing and verification figures.
	SkipSigning bool
	// Command is recorded in the results (how to reproduce).
	Command string
	Logger  *slog.Logger
}

// Measurement is one build of one run.
type Measurement struct {
	Contender string        `json:"contender"`
	Run       string        `json:"run"`
	Rep       int           `json:"rep"`
	Commit    string        `json:"commit"`
	Wall      time.Duration `json:"wallNs"`
	// Exec steps (Dockerfile RUNs or native layers) reported, and those
	// that ran (not cache hits), by tool name.
	ExecSteps int      `json:"execSteps"`
	Ran       []string `json:"ran"`
	// ToolTime is the summed duration of the exec steps that ran, as
	// BuildKit reported them (start to completion of each vertex).
	ToolTime time.Duration `json:"toolTimeNs"`
	// Bytes uploaded to the registry (counted by the proxy).
	Pushed Upload `json:"pushed"`
	// VMBuildBytesPushed is vmbuild's own count (metadata bytesPushed).
	VMBuildBytesPushed int64  `json:"vmbuildBytesPushed,omitempty"`
	Digest             string `json:"digest"`
	// Layers of the pushed image, and those not in the previous image of
	// the sequence (for the cold build: not in the base image), with the
	// sum of their compressed sizes.
	Layers        int   `json:"layers"`
	NewLayers     int   `json:"newLayers"`
	NewLayerBytes int64 `json:"newLayerBytes"`
	// Signed and Attested as vmbuild's metadata reports them.
	Signed   bool   `json:"signed,omitempty"`
	Attested bool   `json:"attested,omitempty"`
	Err      string `json:"error,omitempty"`
	Log      string `json:"log"`
	// LockWall is the time of `vmbuild lock --commit` before the build
	// (not part of Wall).
	LockWall time.Duration `json:"lockWallNs,omitempty"`
}

// RunInfo describes one run of the sequence.
type RunInfo struct {
	ID     string `json:"id"`
	Title  string `json:"title"`
	Commit string `json:"commit"`
	Epoch  int64  `json:"epoch"`
}

// Results is everything a benchmark run measured.
type Results struct {
	Size         gen.Size      `json:"size"`
	Reps         int           `json:"reps"`
	Machine      Machine       `json:"machine"`
	Contenders   []Contender   `json:"contenders"`
	Runs         []RunInfo     `json:"runs"`
	Base         string        `json:"base"`
	Measurements []Measurement `json:"measurements"`
	Signing      *Signing      `json:"signing,omitempty"`
	Capabilities Capabilities  `json:"capabilities"`
	Notes        []string      `json:"notes"`
	Errors       []string      `json:"errors"`
	// Command is how the run was started.
	Command  string    `json:"command,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
}

// Capabilities are the vmbuild commands the run found.
type Capabilities struct {
	Keygen bool `json:"keygen"`
	Verify bool `json:"verify"`
	// Signs is whether `vmbuild build --push --key` reported a signature
	// and an attestation in its metadata.
	Signs bool `json:"signs"`
}

// bench is one run's state.
type bench struct {
	cfg   Config
	log   *slog.Logger
	bins  map[string]string
	reg   *Registry
	git   *GitDaemon
	bk    *BuildKitd
	base  string
	repo  string // git URL
	runs  []RunInfo
	res   *Results
	keys  string // directory with cosign.key and cosign.pub
	env   []string
	tuned string // directory holding Dockerfile.tuned
	// recipes by contender ID (vmbuild contenders)
	recipes map[string]string
	locked  map[string]string // recipe → locked commit
}

// Password is the cosign key password the benchmark uses.
const Password = "vmbuild-bench"

// Run runs the benchmark. It returns the results even on error (with what
// was measured, and the errors listed).
func Run(ctx context.Context, cfg Config) (*Results, error) {
	if cfg.Reps < 1 {
		cfg.Reps = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	b := &bench{cfg: cfg, log: cfg.Logger, recipes: map[string]string{}, locked: map[string]string{}}
	b.res = &Results{Size: cfg.Size, Reps: cfg.Reps, Command: cfg.Command, Started: time.Now().UTC(), Notes: []string{}, Errors: []string{}}
	if len(cfg.Contenders) == 0 {
		for _, c := range Contenders {
			cfg.Contenders = append(cfg.Contenders, c.ID)
		}
		b.cfg.Contenders = cfg.Contenders
	}
	for _, id := range cfg.Contenders {
		c, ok := ContenderByID(id)
		if !ok {
			return b.res, fmt.Errorf("unknown contender %q", id)
		}
		b.res.Contenders = append(b.res.Contenders, c)
	}
	defer b.stop()
	if err := b.setup(ctx); err != nil {
		b.res.Finished = time.Now().UTC()
		return b.res, err
	}
	b.res.Machine = describeMachine(ctx, cfg.Root, b.bins)
	b.res.Machine.Versions["buildkitd (running)"] = b.bk.Version
	b.res.Machine.startSampling()

	for rep := 1; rep <= cfg.Reps; rep++ {
		// Rotate the order of contenders between repetitions, so that
		// none always runs first (or right after another's cold build).
		n := len(b.res.Contenders)
		for i := 0; i < n; i++ {
			c := b.res.Contenders[(i+rep-1)%n]
			if err := ctx.Err(); err != nil {
				return b.finish(err)
			}
			b.sequence(ctx, c, rep)
		}
	}
	if !cfg.SkipSigning {
		if err := ctx.Err(); err != nil {
			return b.finish(err)
		}
		b.res.Signing = b.signing(ctx)
	}
	return b.finish(nil)
}

func (b *bench) finish(err error) (*Results, error) {
	b.res.Finished = time.Now().UTC()
	b.res.Machine.stopSampling()
	if err == nil && len(b.res.Errors) > 0 {
		err = fmt.Errorf("%d harness errors, first: %s", len(b.res.Errors), b.res.Errors[0])
	}
	return b.res, err
}

func (b *bench) errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	b.log.Error(msg)
	b.res.Errors = append(b.res.Errors, msg)
}

func (b *bench) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	b.log.Info("note: " + msg)
	b.res.Notes = append(b.res.Notes, msg)
}

func (b *bench) stop() {
	b.bk.Stop()
	b.git.Stop()
	b.reg.Stop()
}

// setup checks the programs, starts the services, pushes the base image,
// writes the upstream's commits, the keys and the recipes.
func (b *bench) setup(ctx context.Context) error {
	cfg := b.cfg
	b.bins = map[string]string{}
	var missing []string
	for _, name := range []string{"buildkitd", "buildctl", "registry", "vmbuild", "cosign"} {
		p := filepath.Join(cfg.Root, "bin", name)
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			missing = append(missing, "bin/"+name)
		}
		b.bins[name] = p
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: run `make tools build` in %s", strings.Join(missing, ", "), cfg.Root)
	}
	for _, p := range []string{"git", "runc"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("%s is not in $PATH: run `make deps`", p)
		}
	}
	if _, err := os.Stat(baseimage.DefaultBusyboxPath); err != nil {
		return fmt.Errorf("%s is missing: install busybox-static (`make deps`)", baseimage.DefaultBusyboxPath)
	}
	for _, d := range []string{"logs", "keys", "recipes", "tuned", "vmcache", "tuf", "meta"} {
		if err := os.MkdirAll(filepath.Join(cfg.WorkDir, d), 0o755); err != nil {
			return err
		}
	}
	b.env = append(os.Environ(),
		"COSIGN_PASSWORD="+Password,
		"VMBUILD_CACHE_DIR="+filepath.Join(cfg.WorkDir, "vmcache"),
		"TUF_ROOT="+filepath.Join(cfg.WorkDir, "tuf"),
		"BUILDKIT_HOST=", // every command gets --addr
	)

	b.res.Capabilities.Keygen = b.hasCommand(ctx, "keygen")
	b.res.Capabilities.Verify = b.hasCommand(ctx, "verify")

	var err error
	b.log.Info("starting registry (behind a byte-counting proxy)")
	if b.reg, err = StartRegistry(ctx, b.bins["registry"], filepath.Join(cfg.WorkDir, "registry")); err != nil {
		return err
	}
	gitBase := filepath.Join(cfg.WorkDir, "git")
	if err := os.MkdirAll(gitBase, 0o755); err != nil {
		return err
	}
	b.log.Info("starting git daemon")
	if b.git, err = StartGitDaemon(ctx, gitBase, filepath.Join(cfg.WorkDir, "logs", "git-daemon.log"), detgit.Env()); err != nil {
		return err
	}
	b.log.Info("starting buildkitd", "state", filepath.Join(cfg.WorkDir, "bk"))
	if b.bk, err = StartBuildKitd(ctx, b.bins["buildkitd"], filepath.Join(cfg.WorkDir, "bk"), []string{b.reg.Host}); err != nil {
		return err
	}

	img, err := baseimage.Build(ctx, baseimage.Options{})
	if err != nil {
		return fmt.Errorf("building the busybox base image: %w", err)
	}
	if err := baseimage.Push(ctx, img, b.reg.Ref("bench/busybox")+":latest", true); err != nil {
		return fmt.Errorf("pushing the base image: %w", err)
	}
	b.base = b.reg.Ref("bench/busybox") + "@" + img.Digest().String()
	b.res.Base = b.base

	b.log.Info("generating the upstream", "size", cfg.Size.Name)
	up := gen.New(cfg.Size)
	repo, err := detgit.Init(ctx, filepath.Join(gitBase, "mastodon.git"), filepath.Join(cfg.WorkDir, "worktree"))
	if err != nil {
		return err
	}
	commits, err := up.WriteGit(ctx, repo)
	if err != nil {
		return err
	}
	b.repo = b.git.URL("mastodon")
	b.runs = []RunInfo{
		{ID: "cold", Title: "cold (cache pruned)", Commit: commits[0].SHA, Epoch: commits[0].Time.Unix()},
		{ID: "noop", Title: "no-op rebuild", Commit: commits[0].SHA, Epoch: commits[0].Time.Unix()},
	}
	for i, c := range up.Changes {
		b.runs = append(b.runs, RunInfo{ID: c.ID, Title: c.Title, Commit: commits[i+1].SHA, Epoch: commits[i+1].Time.Unix()})
	}
	b.res.Runs = b.runs

	if err := os.WriteFile(filepath.Join(cfg.WorkDir, "tuned", gen.TunedDockerfileName), []byte(gen.TunedDockerfile), 0o644); err != nil {
		return err
	}
	b.tuned = filepath.Join(cfg.WorkDir, "tuned")

	if err := b.makeKeys(ctx); err != nil {
		return err
	}
	for _, c := range b.res.Contenders {
		if c.Tool != "vmbuild" {
			continue
		}
		name := "bench-" + c.ID
		var body string
		if c.ID == "native" {
			body = gen.NativeRecipe(name, b.repo, b.base)
		} else {
			body = gen.DockerfileRecipe(name, b.repo, b.base)
		}
		dir := filepath.Join(cfg.WorkDir, "recipes", c.ID)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		p := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return err
		}
		b.recipes[c.ID] = p
	}
	return nil
}

// hasCommand reports whether `vmbuild CMD --help` works.
func (b *bench) hasCommand(ctx context.Context, cmd string) bool {
	c := exec.CommandContext(ctx, b.bins["vmbuild"], cmd, "--help")
	c.Env = b.env
	out, err := c.CombinedOutput()
	return err == nil && !bytes.Contains(out, []byte("unknown command"))
}

// makeKeys writes cosign.key and cosign.pub: with `vmbuild keygen` when
// vmbuild has it, else with stock cosign (the same key format).
func (b *bench) makeKeys(ctx context.Context) error {
	b.keys = filepath.Join(b.cfg.WorkDir, "keys")
	var argv []string
	if b.res.Capabilities.Keygen {
		argv = []string{b.bins["vmbuild"], "keygen"}
	} else {
		argv = []string{b.bins["cosign"], "generate-key-pair"}
		b.note("`vmbuild keygen` is not in this vmbuild: the key pair was made with `cosign generate-key-pair` (the same format)")
	}
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Dir = b.keys
	c.Env = b.env
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("making the signing key (%s): %w: %s", strings.Join(argv, " "), err, out)
	}
	for _, f := range []string{"cosign.key", "cosign.pub"} {
		if _, err := os.Stat(filepath.Join(b.keys, f)); err != nil {
			return fmt.Errorf("making the signing key (%s): %s was not written", strings.Join(argv, " "), f)
		}
	}
	return nil
}

// repoName is the registry repository of a contender's repetition: fresh
// for every repetition, so that no blob of an earlier one is already there.
func repoName(contender string, rep int) string {
	return fmt.Sprintf("bench/%s-r%d", contender, rep)
}

// prune empties BuildKit's cache.
func (b *bench) prune(ctx context.Context, logPath string) error {
	c := exec.CommandContext(ctx, b.bins["buildctl"], "--addr", b.bk.Addr, "prune", "--all")
	c.Env = b.env
	out, err := c.CombinedOutput()
	_ = os.WriteFile(logPath, out, 0o644)
	if err != nil {
		return fmt.Errorf("buildctl prune --all: %w: %s", err, TailLines(string(out), 10))
	}
	return nil
}

// sequence builds every run of the sequence for one contender, from a
// pruned cache.
func (b *bench) sequence(ctx context.Context, c Contender, rep int) {
	logDir := filepath.Join(b.cfg.WorkDir, "logs", fmt.Sprintf("r%d", rep), c.ID)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		b.errorf("%s rep %d: %v", c.ID, rep, err)
		return
	}
	if err := b.prune(ctx, filepath.Join(logDir, "prune.log")); err != nil {
		b.errorf("%s rep %d: %v", c.ID, rep, err)
		return
	}
	var prevLayers []string
	for _, run := range b.runs {
		if ctx.Err() != nil {
			return
		}
		m := b.measure(ctx, c, rep, run, logDir)
		// The layers already in the registry: the base's for the cold
		// build, the previous image's after it.
		if run.ID == "cold" {
			prevLayers = b.baseLayers(ctx)
		}
		if m.Err == "" {
			layers, err := b.layers(ctx, b.reg.Ref(repoName(c.ID, rep))+"@"+m.Digest)
			if err != nil {
				m.Err = fmt.Sprintf("reading the pushed manifest: %v", err)
			} else {
				m.Layers = len(layers)
				have := map[string]bool{}
				for _, d := range prevLayers {
					have[d] = true
				}
				var cur []string
				for _, l := range layers {
					cur = append(cur, l.Digest.String())
					if !have[l.Digest.String()] {
						m.NewLayers++
						m.NewLayerBytes += l.Size
					}
				}
				prevLayers = cur
			}
		}
		if m.Err != "" {
			b.errorf("%s rep %d run %s: %s (log: %s)", c.ID, rep, run.ID, m.Err, m.Log)
		} else {
			b.log.Info("measured", "contender", c.ID, "rep", rep, "run", run.ID, "wall", m.Wall.Round(time.Millisecond),
				"ran", strings.Join(m.Ran, ","), "pushedKiB", m.Pushed.Total()/1024, "newLayersKiB", m.NewLayerBytes/1024)
		}
		b.res.Measurements = append(b.res.Measurements, m)
		if m.Err != "" {
			return // the rest of this sequence would not measure what it says
		}
	}
}

func (b *bench) measure(ctx context.Context, c Contender, rep int, run RunInfo, logDir string) Measurement {
	m := Measurement{Contender: c.ID, Run: run.ID, Rep: rep, Commit: run.Commit, Log: filepath.Join(logDir, run.ID+".log")}
	repo := repoName(c.ID, rep)
	before := b.reg.Uploaded(repo)
	var err error
	switch c.Tool {
	case "vmbuild":
		err = b.runVMBuild(ctx, c, run, repo, &m)
	case "buildctl":
		err = b.runBuildctl(ctx, c, run, repo, &m)
	default:
		err = fmt.Errorf("unknown tool %q", c.Tool)
	}
	after := b.reg.Uploaded(repo)
	m.Pushed = Upload{Blobs: after.Blobs - before.Blobs, Manifests: after.Manifests - before.Manifests, Requests: after.Requests - before.Requests}
	if err != nil {
		m.Err = err.Error()
		return m
	}
	if m.Digest == "" {
		m.Err = "no image digest reported"
	}
	if m.ExecSteps == 0 {
		m.Err = "no exec step found in the build's status (cannot count steps re-run)"
	}
	if run.ID == "cold" && len(m.Ran) != 3 {
		m.Err = fmt.Sprintf("the cold build ran %d exec steps (%v), not the 3 tools: the step count is wrong", len(m.Ran), m.Ran)
	}
	return m
}

// command runs argv with the benchmark's environment, stdout captured,
// stderr to logPath (appended), and returns stdout and the wall time.
func (b *bench) command(ctx context.Context, logPath string, argv ...string) ([]byte, time.Duration, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, 0, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "$ %s\n", strings.Join(argv, " "))
	var stdout, stderr bytes.Buffer
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Env = b.env
	c.Stdout = &stdout
	c.Stderr = io.MultiWriter(logf, &stderr)
	start := time.Now()
	err = c.Run()
	wall := time.Since(start)
	fmt.Fprintf(logf, "\n[exit: %v, wall %s]\n", err, wall)
	if err != nil {
		return stdout.Bytes(), wall, &CommandError{Command: filepath.Base(argv[0]) + " " + argv[1], Err: err, Reason: reason(stderr.String()), Log: logPath}
	}
	return stdout.Bytes(), wall, nil
}

// CommandError is a command of the benchmark that failed.
type CommandError struct {
	Command string
	Err     error
	// Reason is the command's own error message (its last "Error:" line,
	// else its last line of output).
	Reason string
	Log    string
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("%s failed (%v): %s (log: %s)", e.Command, e.Err, e.Reason, e.Log)
}

func (e *CommandError) Unwrap() error { return e.Err }

// reason picks the error message out of a command's output.
func reason(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, "Error:") || strings.HasPrefix(l, "error:") || strings.Contains(l, "level=ERROR") {
			return l
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return l
		}
	}
	return "(no output)"
}

func (b *bench) lock(ctx context.Context, c Contender, commit, logPath string) (time.Duration, error) {
	r := b.recipes[c.ID]
	if b.locked[r] == commit {
		return 0, nil
	}
	_, wall, err := b.command(ctx, logPath, b.bins["vmbuild"], "lock", r, "--commit", commit)
	if err != nil {
		return wall, err
	}
	b.locked[r] = commit
	return wall, nil
}

func (b *bench) runVMBuild(ctx context.Context, c Contender, run RunInfo, repo string, m *Measurement) error {
	lw, err := b.lock(ctx, c, run.Commit, m.Log)
	m.LockWall = lw
	if err != nil {
		return err
	}
	meta := filepath.Join(b.cfg.WorkDir, "meta", fmt.Sprintf("%s-r%d-%s.json", c.ID, m.Rep, run.ID))
	out, wall, err := b.command(ctx, m.Log, b.bins["vmbuild"], "build", b.recipes[c.ID],
		"--addr", b.bk.Addr,
		"--push", b.reg.Ref(repo)+":"+run.ID,
		"--key", filepath.Join(b.keys, "cosign.key"),
		"--metadata-file", meta,
		"--progress", "plain")
	m.Wall = wall
	if err != nil {
		return err
	}
	md, err := ReadVMBuildMetadata(meta)
	if err != nil {
		return err
	}
	m.Digest = md.Digest
	if d := strings.TrimSpace(string(out)); d != "" && md.Digest != "" && d != md.Digest {
		return fmt.Errorf("vmbuild printed digest %s but its metadata says %s", d, md.Digest)
	}
	steps := md.ExecSteps()
	m.ExecSteps = len(steps)
	m.Ran = RanNames(steps)
	m.ToolTime = ranTime(steps)
	m.VMBuildBytesPushed = md.BytesPushed
	if md.Published != nil {
		m.Signed, m.Attested = md.Published.Signed, md.Published.Attested
	}
	return nil
}

func (b *bench) runBuildctl(ctx context.Context, c Contender, run RunInfo, repo string, m *Measurement) error {
	meta := filepath.Join(b.cfg.WorkDir, "meta", fmt.Sprintf("%s-r%d-%s.json", c.ID, m.Rep, run.ID))
	progress := filepath.Join(b.cfg.WorkDir, "meta", fmt.Sprintf("%s-r%d-%s.rawjson", c.ID, m.Rep, run.ID))
	_ = os.Remove(progress)
	epoch := strconv.FormatInt(run.Epoch, 10)
	argv := []string{b.bins["buildctl"], "--addr", b.bk.Addr, "build",
		"--progress", "rawjson",
		"--metadata-file", meta,
		"--frontend", "dockerfile.v0",
		"--opt", "context=" + b.repo + "#" + run.Commit,
		"--opt", "target=mastodon",
		"--opt", "build-arg:BASE_IMAGE=" + b.base,
	}
	output := "type=image,name=" + b.reg.Ref(repo) + ":" + run.ID + ",push=true"
	switch c.Epoch {
	case "build-arg":
		argv = append(argv, "--opt", "build-arg:SOURCE_DATE_EPOCH="+epoch)
		output += ",rewrite-timestamp=true"
	case "exporter":
		output += ",rewrite-timestamp=true,source-date-epoch=" + epoch
	}
	if c.ID == "tuned" {
		argv = append(argv, "--local", "dockerfile="+b.tuned, "--opt", "dockerfilekey=dockerfile", "--opt", "filename="+gen.TunedDockerfileName)
	}
	argv = append(argv, "--output", output)

	// rawjson goes to stderr, with everything else buildctl says: keep
	// it in its own file and append it to the log afterwards.
	logf, err := os.OpenFile(m.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "$ %s\n", strings.Join(argv, " "))
	pf, err := os.Create(progress)
	if err != nil {
		logf.Close()
		return err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = b.env
	cmd.Stdout = logf
	cmd.Stderr = pf
	start := time.Now()
	err = cmd.Run()
	m.Wall = time.Since(start)
	pf.Close()
	fmt.Fprintf(logf, "[exit: %v, wall %s; progress (rawjson) in %s]\n", err, m.Wall, progress)
	logf.Close()
	if err != nil {
		return fmt.Errorf("buildctl build failed: %w; last lines of %s:\n%s", err, progress, localsvc.Tail(progress, 8))
	}
	md, err := ReadBuildctlMetadata(meta)
	if err != nil {
		return err
	}
	m.Digest = md.Digest
	f, err := os.Open(progress)
	if err != nil {
		return err
	}
	defer f.Close()
	steps, err := ParseRawJSON(f)
	if err != nil {
		return fmt.Errorf("parsing %s: %w", progress, err)
	}
	m.ExecSteps = len(steps)
	m.Ran = RanNames(steps)
	m.ToolTime = ranTime(steps)
	return nil
}
