// Command hermetic is vmbuild's benchmark of hermetic dependencies
// (issues #12, #13, #14); run it as bench/run-hermetic.
//
// It starts its own buildkitd for every sequence (a fresh state directory:
// a cold build is really cold) and its own loopback services (a counting
// proxy in front of the npm registry, a gem source), and measures, with
// the library vmbuild's CLI uses (lock.Resolver, build.Build):
//
//   - yarn: the real Mastodon streaming server (a clone of the bundle),
//     hermetic (the committed recipe) against a baseline layer that runs
//     Yarn with the network: lock, cold build, no-op rebuild, and a real
//     one-package bump made by Yarn on the host; and the streaming image's
//     cold and bump builds (#14);
//   - bundler: ~36 gems built here (a few with C extensions), hermetic per
//     gem, hermetic all at once, and `bundle install` with the network;
//   - npm: a real package-lock.json, hermetic (cold, no-op, bump);
//   - debian: the sid nodejs base: lock with a cold and a warm index cache,
//     cold and warm builds (#13).
//
// It writes bench/RESULTS-hermetic.md and .json, and the section of
// bench/RESULTS.md between harness.SectionBegin and SectionEnd (which
// bench/run keeps); --quick: 1 repetition, one buildkitd per scenario,
// bench/RESULTS-hermetic-quick.md, gitignored. --reps 3,bundler=1 runs a
// slow scenario fewer times; --scenarios X --merge FILE.json measures some
// scenarios again and keeps the others' figures (each scenario records the
// command that measured it). It fails (exit 1) on a
// harness error (a lock or build that fails, a check that does not hold:
// a no-op rebuild that fetched, a cold build that was not cold); it asserts
// no times. It needs root, runc, git, node, ruby (gem) and bin/ (make
// tools build), and the network: registry.npmjs.org, registry.yarnpkg.com
// and deb.debian.org.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/log"

	"github.com/vmbuild/vmbuild/bench/internal/harness"
)

var allScenarios = []string{"yarn", "bundler", "npm", "debian"}

func main() { os.Exit(run()) }

func run() int {
	quick := flag.Bool("quick", false, "harness check (CI): 1 repetition of every scenario; writes bench/RESULTS-hermetic-quick.md")
	reps := flag.String("reps", "", "repetitions of every sequence: N, or N,SCENARIO=M,… (default 3, or 1 with --quick)")
	out := flag.String("out", "", "results markdown file (default bench/RESULTS-hermetic.md, or bench/RESULTS-hermetic-quick.md with --quick); the JSON goes beside it")
	only := flag.String("scenarios", "", "comma-separated scenarios to run (default all: "+strings.Join(allScenarios, ",")+")")
	keep := flag.Bool("keep", false, "keep the work directory after a successful run")
	render := flag.String("render", "", "only re-render the markdown from a results JSON file; measures nothing")
	verbose := flag.Bool("verbose", false, "log vmbuild's own lines (lock and build) too")
	section := flag.String("results", "", "the file whose hermetic section to rewrite (default bench/RESULTS.md when writing bench/RESULTS-hermetic.md; \"none\": none)")
	merge := flag.String("merge", "", "a results JSON file whose scenarios this run does not run are kept in its results (a scenario measured again, or apart)")
	bundle := flag.String("bundle", "", "the Mastodon git bundle (default ../shared/fixtures/mastodon/mastodon-main.bundle from the checkout, read in place)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: bench/run-hermetic [--quick] [flags]\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	_ = log.SetLevel("error")

	root, err := harness.FindRoot()
	if err != nil {
		logger.Error(err.Error())
		return 1
	}
	defaultMD := filepath.Join(root, "bench", "RESULTS-hermetic.md")
	sectionFor := func(md string) string {
		switch {
		case *section == "none":
			return ""
		case *section != "":
			return *section
		case sameFile(md, defaultMD):
			return filepath.Join(root, "bench", "RESULTS.md")
		}
		return ""
	}
	if *render != "" {
		md := *out
		if md == "" {
			md = strings.TrimSuffix(*render, filepath.Ext(*render)) + ".md"
		}
		return rerender(logger, *render, md, sectionFor(md))
	}
	n := 3
	if *quick {
		n = 1
	}
	repsBy, err := parseReps(*reps, &n)
	if err != nil {
		logger.Error(err.Error())
		return 2
	}
	scen := allScenarios
	if *only != "" {
		scen = strings.Split(*only, ",")
		for _, s := range scen {
			if !slices.Contains(allScenarios, s) {
				logger.Error("unknown scenario", "scenario", s, "known", allScenarios)
				return 2
			}
		}
	}
	mdPath := *out
	if mdPath == "" {
		mdPath = defaultMD
		if *quick {
			mdPath = filepath.Join(root, "bench", "RESULTS-hermetic-quick.md")
		}
	}
	var merged *Results
	if *merge != "" {
		if merged, err = readResults(*merge); err != nil {
			logger.Error(err.Error())
			return 2
		}
	}
	if !*quick && *out == "" && !covers(scen, merged) {
		logger.Error("a partial run (some scenarios, and no --merge of the others) must not overwrite bench/RESULTS-hermetic.md: give --out")
		return 2
	}
	bundlePath := *bundle
	if bundlePath == "" {
		bundlePath = filepath.Join(filepath.Dir(root), "shared", "fixtures", "mastodon", "mastodon-main.bundle")
		if _, err := os.Stat(bundlePath); err != nil {
			// A worktree beside the main checkout: /work/wt-x → /work/shared.
			if alt := filepath.Join(filepath.Dir(filepath.Dir(root)), "shared", "fixtures", "mastodon", "mastodon-main.bundle"); fileExists(alt) {
				bundlePath = alt
			}
		}
	}
	if err := preflight(root, bundlePath, scen); err != nil {
		logger.Error(err.Error())
		return 1
	}
	command := "bench/run-hermetic"
	if len(os.Args) > 1 {
		command += " " + strings.Join(os.Args[1:], " ")
	}

	work, err := os.MkdirTemp("", "vmbench-hermetic-")
	if err != nil {
		logger.Error(err.Error())
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	b := &bench{
		root: root, work: work, quick: *quick, reps: n, repsBy: repsBy, log: logger,
		bins: map[string]string{
			"buildkitd":      filepath.Join(root, "bin", "buildkitd"),
			"buildctl":       filepath.Join(root, "bin", "buildctl"),
			"vmbuild":        filepath.Join(root, "bin", "vmbuild"),
			"vmbuild-helper": filepath.Join(root, "bin", "vmbuild-helper"),
		},
		res:      &Results{Command: command, Quick: *quick, Reps: n, Started: time.Now().UTC()},
		debCache: filepath.Join(work, "cache", "debian"),
	}
	if *verbose {
		b.verbose = logger.With("from", "vmbuild")
	}
	if b.archive, err = harness.NewProxyCounter("https://deb.debian.org"); err != nil {
		logger.Error("starting the archive proxy", "err", err)
		return 1
	}
	defer b.archive.Close()
	defer func() { b.gitd.Stop() }()
	b.res.Machine = harness.DescribeMachine(ctx, root, b.bins)
	addVersions(ctx, b.res.Machine.Versions)
	logger.Info("hermetic benchmark starting", "scenarios", scen, "reps", n, "work", work, "out", mdPath)
	b.res.Machine.StartSampling()
	for _, sc := range scen {
		if ctx.Err() != nil {
			break
		}
		t0, load0 := time.Now(), harness.LoadAvg()
		before := len(b.res.Scenarios)
		switch sc {
		case "yarn":
			b.yarn(ctx, bundlePath)
		case "bundler":
			b.bundler(ctx)
		case "npm":
			b.npm(ctx)
		case "debian":
			b.debian(ctx)
		}
		b.endScenario()
		for _, s := range b.res.Scenarios[before:] {
			s.Command, s.Started, s.Finished = command, t0.UTC(), time.Now().UTC()
			s.Load = load0 + " → " + harness.LoadAvg()
		}
		logger.Info("scenario done", "scenario", sc, "took", time.Since(t0).Round(time.Second))
	}
	b.res.Machine.StopSampling()
	b.res.Finished = time.Now().UTC()
	if ctx.Err() != nil {
		b.errorf("interrupted: %v", ctx.Err())
	}
	for _, s := range b.res.Scenarios {
		for _, r := range s.Runs {
			if !r.OK() {
				b.res.Errors = appendOnce(b.res.Errors, fmt.Sprintf("%s: %s %s rep %d: %s", s.ID, r.Contender, r.Phase, r.Rep, harness.FirstLine(r.Err)))
			}
		}
	}
	if merged != nil {
		mergeResults(b.res, merged)
	}
	logger.Info("hermetic benchmark finished", "took", b.res.Finished.Sub(b.res.Started).Round(time.Second))

	code := 0
	if err := write(b.res, mdPath, sectionFor(mdPath)); err != nil {
		logger.Error("writing results", "err", err)
		code = 1
	} else {
		logger.Info("wrote results", "file", mdPath)
	}
	for _, e := range b.res.Errors {
		fmt.Fprintln(os.Stderr, "error:", harness.FirstLine(e))
	}
	if len(b.res.Errors) > 0 {
		code = 1
	}
	fmt.Println(summary(b.res))
	if code != 0 || *keep {
		logger.Info("work directory kept", "dir", work)
	} else if err := os.RemoveAll(work); err != nil {
		logger.Warn("removing the work directory", "dir", work, "err", err)
	}
	return code
}

// readResults reads a results JSON file.
func readResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading results: %w", err)
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("reading results %s: %w", path, err)
	}
	return &res, nil
}

// covers reports whether the scenarios run, with those of merged, are
// all of them.
func covers(scen []string, merged *Results) bool {
	for _, id := range allScenarios {
		if !slices.Contains(scen, id) && (merged == nil || merged.scenario(id) == nil) {
			return false
		}
	}
	return true
}

// mergeResults adds to res the scenarios of old that res does not have,
// with their errors, in the order of allScenarios.
func mergeResults(res, old *Results) {
	for _, s := range old.Scenarios {
		if s == nil || res.scenario(s.ID) != nil {
			continue
		}
		if s.Reps == 0 {
			s.Reps = old.Reps
		}
		if s.Command == "" {
			s.Command, s.Started, s.Finished = old.Command, old.Started, old.Finished
		}
		res.Scenarios = append(res.Scenarios, s)
		for _, e := range old.Errors {
			if strings.HasPrefix(e, s.ID+":") {
				res.Errors = append(res.Errors, e)
			}
		}
	}
	slices.SortStableFunc(res.Scenarios, func(a, b *Scenario) int {
		return slices.Index(allScenarios, a.ID) - slices.Index(allScenarios, b.ID)
	})
	if old.Started.Before(res.Started) {
		res.Started = old.Started
	}
}

// parseReps parses --reps: "N" sets *n, "SCENARIO=M" one scenario's.
func parseReps(spec string, n *int) (map[string]int, error) {
	by := map[string]int{}
	if spec == "" {
		return by, nil
	}
	for _, part := range strings.Split(spec, ",") {
		name, v, named := strings.Cut(part, "=")
		if !named {
			v = name
		}
		k, err := strconv.Atoi(v)
		if err != nil || k < 1 {
			return nil, fmt.Errorf("parsing --reps %q: %q is not a positive number", spec, v)
		}
		switch {
		case !named:
			*n = k
		case slices.Contains(allScenarios, name):
			by[name] = k
		default:
			return nil, fmt.Errorf("parsing --reps %q: unknown scenario %q (known: %s)", spec, name, strings.Join(allScenarios, ", "))
		}
	}
	return by, nil
}

// preflight checks the tools the scenarios need, before anything starts.
func preflight(root, bundle string, scen []string) error {
	var missing []string
	for _, b := range []string{"buildkitd", "vmbuild", "vmbuild-helper"} {
		if !fileExists(filepath.Join(root, "bin", b)) {
			missing = append(missing, "bin/"+b+" (make tools build)")
		}
	}
	need := []string{"git", "runc"}
	if slices.Contains(scen, "yarn") || slices.Contains(scen, "npm") {
		need = append(need, "node")
	}
	if slices.Contains(scen, "bundler") {
		need = append(need, "gem")
	}
	for _, p := range need {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p+" in $PATH")
		}
	}
	if slices.Contains(scen, "yarn") && !fileExists(bundle) {
		missing = append(missing, "the Mastodon bundle at "+bundle+" (--bundle)")
	}
	if os.Geteuid() != 0 {
		missing = append(missing, "root (buildkitd with runc)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("bench/run-hermetic needs: %s", strings.Join(missing, "; "))
	}
	return nil
}

func addVersions(ctx context.Context, v map[string]string) {
	for name, argv := range map[string][]string{
		"node": {"node", "--version"},
		"ruby": {"ruby", "--version"},
		"gem":  {"gem", "--version"},
	} {
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).Output()
		if err == nil {
			v[name] = strings.TrimSpace(string(out))
		}
	}
}

// write writes the report and its JSON, and the hermetic section of
// sectionPath (bench/RESULTS.md) unless it is empty.
func write(res *Results, mdPath, sectionPath string) error {
	if err := os.MkdirAll(filepath.Dir(mdPath), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(mdPath), err)
	}
	j, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding results: %w", err)
	}
	jsonPath := strings.TrimSuffix(mdPath, filepath.Ext(mdPath)) + ".json"
	if err := os.WriteFile(jsonPath, append(j, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	return render(res, mdPath, jsonPath, sectionPath)
}

// render writes the markdown report of res and, unless sectionPath is
// empty, the hermetic section of that file.
func render(res *Results, mdPath, jsonPath, sectionPath string) error {
	if err := os.WriteFile(mdPath, []byte(res.Markdown(filepath.Base(jsonPath))), 0o644); err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	if sectionPath == "" {
		return nil
	}
	rel := func(p string) string {
		abs, err := filepath.Abs(p)
		if err != nil {
			return p
		}
		dir, err := filepath.Abs(filepath.Dir(sectionPath))
		if err != nil {
			return p
		}
		if r, err := filepath.Rel(dir, abs); err == nil {
			return filepath.ToSlash(r)
		}
		return p
	}
	if err := harness.WriteSection(sectionPath, res.Section(rel(mdPath), rel(jsonPath))); err != nil {
		return fmt.Errorf("writing the hermetic section: %w", err)
	}
	return nil
}

// rerender writes the report (and the section) again from a results file,
// measuring nothing.
func rerender(logger *slog.Logger, jsonPath, mdPath, sectionPath string) int {
	res, err := readResults(jsonPath)
	if err != nil {
		logger.Error(err.Error())
		return 1
	}
	if err := render(res, mdPath, jsonPath, sectionPath); err != nil {
		logger.Error(err.Error())
		return 1
	}
	logger.Info("re-rendered", "from", jsonPath, "file", mdPath, "section", sectionPath)
	return 0
}

// sameFile reports whether a and b are the same path once absolute.
func sameFile(a, b string) bool {
	x, err1 := filepath.Abs(a)
	y, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && x == y
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func appendOnce(xs []string, x string) []string {
	for _, y := range xs {
		if strings.Contains(y, x) || strings.Contains(x, y) {
			return xs
		}
	}
	return append(xs, x)
}
