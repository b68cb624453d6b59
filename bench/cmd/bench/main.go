// Command bench is vmbuild's benchmark (run it as bench/run).
//
// It generates a Mastodon-shaped upstream (bench/internal/gen), serves it
// with git daemon, starts its own buildkitd and a loopback registry behind
// a byte-counting proxy, and builds a cold build, a no-op rebuild and a
// sequence of commits with vmbuild (native and dockerfile mode) and with
// `buildctl build` (upstream's Dockerfile in two configurations, and a
// hand-tuned Dockerfile); then measures signing and verification once. It
// writes bench/RESULTS.md (with RESULTS.svg and RESULTS.json beside it).
//
//	bench/run            full run: 3 repetitions, tools of ~3 s each
//	bench/run --quick    harness check: 1 repetition, tools of ~0.2 s,
//	                     writes bench/RESULTS-quick.md (gitignored)
//
// It fails (exit 1) on a harness error: a build that fails, a figure that
// could not be measured. It asserts no times.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/log"

	"github.com/vmbuild/vmbuild/bench/internal/gen"
	"github.com/vmbuild/vmbuild/bench/internal/harness"
)

func main() {
	os.Exit(run())
}

func run() int {
	quick := flag.Bool("quick", false, "small run: 1 repetition, tiny tool costs (a check that the harness works); writes bench/RESULTS-quick.md")
	reps := flag.Int("reps", 0, "repetitions of every sequence (default 3, or 1 with --quick)")
	out := flag.String("out", "", "results markdown file (default bench/RESULTS.md, or bench/RESULTS-quick.md with --quick)")
	only := flag.String("contenders", "", "comma-separated contenders to run (default all: native,dockerfile,peer-epoch,peer,tuned)")
	skipSigning := flag.Bool("skip-signing", false, "skip the signing and verification figures")
	keep := flag.Bool("keep", false, "keep the work directory (logs, registry, buildkitd state) after a successful run")
	size := flag.String("size", "", "tool cost size: full or quick (default by --quick)")
	render := flag.String("render", "", "only re-render the markdown and plot from a results JSON file (e.g. bench/RESULTS.json); measures nothing")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: bench/run [--quick] [flags]\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	// containerd's libraries log through their own global logger.
	_ = log.SetLevel("error")

	if *render != "" {
		return rerender(logger, *render, *out)
	}
	root, err := harness.FindRoot()
	if err != nil {
		logger.Error(err.Error())
		return 1
	}
	cfg := harness.Config{Root: root, Reps: *reps, SkipSigning: *skipSigning, Logger: logger}
	sz := "full"
	if *quick {
		sz = "quick"
	}
	if *size != "" {
		sz = *size
	}
	if cfg.Size, err = gen.SizeByName(sz); err != nil {
		logger.Error(err.Error())
		return 2
	}
	if cfg.Reps == 0 {
		cfg.Reps = 3
		if *quick {
			cfg.Reps = 1
		}
	}
	if *only != "" {
		cfg.Contenders = strings.Split(*only, ",")
	}
	mdPath := *out
	if mdPath == "" {
		mdPath = filepath.Join(root, "bench", "RESULTS.md")
		if *quick {
			mdPath = filepath.Join(root, "bench", "RESULTS-quick.md")
		}
	}
	if !*quick && *out == "" && (cfg.Reps < 3 || sz != "full" || *only != "" || *skipSigning) {
		logger.Error("a partial run (fewer than 3 repetitions, another size, some contenders, or no signing figures) must not overwrite bench/RESULTS.md: give --out")
		return 2
	}
	command := "bench/run"
	if len(os.Args) > 1 {
		command += " " + strings.Join(os.Args[1:], " ")
	}
	cfg.Command = command

	cfg.WorkDir, err = os.MkdirTemp("", "vmbench-")
	if err != nil {
		logger.Error(err.Error())
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	logger.Info("benchmark starting", "size", cfg.Size.Name, "reps", cfg.Reps, "work", cfg.WorkDir, "out", mdPath)
	res, runErr := harness.Run(ctx, cfg)
	logger.Info("benchmark finished", "took", time.Since(start).Round(time.Second))

	code := 0
	if res != nil && len(res.Measurements) > 0 {
		if err := write(res, mdPath, command); err != nil {
			logger.Error("writing results", "err", err)
			code = 1
		} else {
			logger.Info("wrote results", "file", mdPath)
		}
		printTargets(res)
	}
	if runErr != nil {
		logger.Error("benchmark failed", "err", runErr)
		code = 1
	}
	if res != nil {
		for _, e := range res.Errors {
			fmt.Fprintln(os.Stderr, "error:", harness.FirstLine(e))
		}
	}
	if code != 0 || *keep {
		logger.Info("work directory kept (logs under logs/, metadata under meta/)", "dir", cfg.WorkDir)
	} else if err := os.RemoveAll(cfg.WorkDir); err != nil {
		logger.Warn("removing the work directory", "dir", cfg.WorkDir, "err", err)
	}
	return code
}

// rerender writes the markdown and the plot again from a results file
// (after a change to the report's presentation), measuring nothing.
func rerender(logger *slog.Logger, jsonPath, mdPath string) int {
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		logger.Error(err.Error())
		return 1
	}
	var res harness.Results
	if err := json.Unmarshal(b, &res); err != nil {
		logger.Error("reading results", "file", jsonPath, "err", err)
		return 1
	}
	if mdPath == "" {
		mdPath = strings.TrimSuffix(jsonPath, filepath.Ext(jsonPath)) + ".md"
	}
	if err := writeReport(&res, mdPath, "", false); err != nil {
		logger.Error("writing results", "err", err)
		return 1
	}
	logger.Info("re-rendered", "from", jsonPath, "file", mdPath)
	printTargets(&res)
	return 0
}

func write(res *harness.Results, mdPath, command string) error {
	return writeReport(res, mdPath, command, true)
}

func writeReport(res *harness.Results, mdPath, command string, withJSON bool) error {
	base := strings.TrimSuffix(mdPath, filepath.Ext(mdPath))
	svgPath := base + ".svg"
	jsonPath := base + ".json"
	if err := os.MkdirAll(filepath.Dir(mdPath), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(svgPath, []byte(res.SVG()), 0o644); err != nil {
		return err
	}
	if withJSON {
		j, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(jsonPath, append(j, '\n'), 0o644); err != nil {
			return err
		}
	}
	md := res.Markdown(filepath.Base(svgPath), command)
	md = strings.Replace(md, "the JSON file beside this one", "`"+filepath.Base(jsonPath)+"`", 1)
	// bench/run-hermetic's section of the file stays.
	md = harness.KeepSection(mdPath, md)
	return os.WriteFile(mdPath, []byte(md), 0o644)
}

func printTargets(res *harness.Results) {
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	fmt.Fprintf(w, "\nTargets (%s size, %d repetition(s)):\n", res.Size.Name, res.Reps)
	for _, t := range res.Targets() {
		fmt.Fprintf(w, "  [%s] %s: %s\n", t.Status, t.Name, t.Figure)
	}
}
