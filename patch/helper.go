package patch

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
)

// Exit codes of [HelperMain].
const (
	ExitOK       = 0 // a report was written (whatever the patch's outcome)
	ExitInternal = 1 // the patch could not be run or the report not written
	ExitUsage    = 2 // bad subcommand or flags
)

const helperUsage = `usage:
  vmbuild-helper apply-diff --tree DIR --patch FILE --name NAME --report FILE [--offset] [--fuzz N] [--optional]
  vmbuild-helper run-script --tree DIR --script FILE --name NAME --report FILE [--shell /bin/sh] [--optional]

Applies one vmbuild patch to the source tree DIR and writes a JSON report
to FILE. The exit status is 0 whenever a report is written, also when the
patch failed: read the report. It is 1 for internal errors and 2 for usage
errors.
`

// HelperMain is the vmbuild-helper program: args are the arguments after
// the program name (args[0] is the subcommand, "apply-diff" or
// "run-script"). It runs one patch, writes the [Report] as JSON to the
// --report file, prints a one-line summary to stdout and diagnostics (and
// a script's output) to stderr, and returns the exit code: ExitOK when
// the report was written, even for a failed patch; ExitInternal or
// ExitUsage otherwise.
func HelperMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, helperUsage)
		return ExitUsage
	}
	switch args[0] {
	case "apply-diff":
		return helperRun(KindDiff, args[1:], stdout, stderr)
	case "run-script":
		return helperRun(KindScript, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, helperUsage)
		return ExitOK
	}
	fmt.Fprintf(stderr, "vmbuild-helper: unknown command %q\n%s", args[0], helperUsage)
	return ExitUsage
}

func helperRun(k Kind, args []string, stdout, stderr io.Writer) int {
	cmdName := "apply-diff"
	if k == KindScript {
		cmdName = "run-script"
	}
	fl := flag.NewFlagSet("vmbuild-helper "+cmdName, flag.ContinueOnError)
	fl.SetOutput(stderr)
	tree := fl.String("tree", "", "source tree to patch (required)")
	name := fl.String("name", "", "patch name for the report (default: base name of the patch or script)")
	report := fl.String("report", "", "file to write the JSON report to (required)")
	optional := fl.Bool("optional", false, "a patch that changes nothing is not a failure")
	var patchFile, script, shell *string
	var offset *bool
	var fuzz *int
	if k == KindDiff {
		patchFile = fl.String("patch", "", "unified diff to apply (required)")
		offset = fl.Bool("offset", false, "let hunks apply at other lines than their headers say")
		fuzz = fl.Int("fuzz", 0, fmt.Sprintf("ignore up to N (0..%d) leading and trailing context lines", MaxFuzz))
	} else {
		script = fl.String("script", "", "shell script to run in the tree (required)")
		shell = fl.String("shell", DefaultShell, "shell that runs the script")
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "vmbuild-helper %s: %s\n", cmdName, fmt.Sprintf(format, a...))
		return ExitUsage
	}
	if fl.NArg() > 0 {
		return usage("unexpected argument %q", fl.Arg(0))
	}
	if *tree == "" || *report == "" {
		return usage("--tree and --report are required")
	}
	input := ""
	if k == KindDiff {
		input = *patchFile
		if input == "" {
			return usage("--patch is required")
		}
		if *fuzz < 0 || *fuzz > MaxFuzz {
			return usage("--fuzz must be between 0 and %d", MaxFuzz)
		}
	} else {
		input = *script
		if input == "" {
			return usage("--script is required")
		}
	}
	if *name == "" {
		*name = filepath.Base(input)
	}

	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var (
		r   *Report
		err error
	)
	if k == KindDiff {
		var data []byte
		data, err = readLimited(input, MaxPatchSize)
		if err == nil {
			r, err = ApplyDiff(ctx, *tree, *name, data,
				WithOffset(*offset), WithFuzz(*fuzz), WithOptional(*optional), WithLogger(logger))
		}
	} else {
		r, err = RunScript(ctx, *tree, input,
			WithName(*name), WithShell(*shell), WithOptional(*optional), WithLogger(logger), WithOutput(stderr))
	}
	if err != nil {
		fmt.Fprintf(stderr, "vmbuild-helper %s: %v\n", cmdName, err)
		return ExitInternal
	}
	out, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		fmt.Fprintf(stderr, "vmbuild-helper %s: encoding report: %v\n", cmdName, err)
		return ExitInternal
	}
	if err := os.WriteFile(*report, append(out, '\n'), 0o644); err != nil {
		fmt.Fprintf(stderr, "vmbuild-helper %s: writing report: %v\n", cmdName, err)
		return ExitInternal
	}
	switch {
	case r.Failure != nil:
		fmt.Fprintf(stdout, "%s: %s: %s\n", r.Patch, r.Status, r.Failure.Message)
	default:
		fmt.Fprintf(stdout, "%s: %s: %s\n", r.Patch, r.Status, r.Summary())
	}
	return ExitOK
}

// readLimited reads a file of at most limit bytes; a larger file is
// returned truncated to limit+1 bytes so that Parse reports the limit.
func readLimited(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("reading patch: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading patch: %w", err)
	}
	return data, nil
}
