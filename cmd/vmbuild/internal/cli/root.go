// Package cli is vmbuild's command line: flag parsing, environment, and
// printing, over the library packages (which do none of that).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/termsafe"
	"github.com/vmbuild/vmbuild/patch"
)

// Version is set at link time (-X).
var Version = "dev"

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// app holds what every command shares.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	log            *slog.Logger
	verbose, quiet bool
	// run executes a command's job: its flags, parsed and checked into
	// library options. Tests replace it to see what the flags produced.
	run func(context.Context, job) error
}

// A job is one command's work, built from its arguments and flags: the
// command line is translated into it, then it runs.
type job interface {
	run(ctx context.Context, a *app) error
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *app {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	a.run = func(ctx context.Context, j job) error { return j.run(ctx, a) }
	return a
}

// Main runs the CLI and returns the process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	// Inside a build step the helper runs as /vmbuild-helper; a static
	// vmbuild binary staged under that name is the helper.
	if len(args) > 0 && filepath.Base(args[0]) == "vmbuild-helper" {
		return patch.HelperMain(args[1:], stdout, stderr)
	}
	// containerd and BuildKit log through logrus; keep their chatter
	// (e.g. "failed check for fsverity support") out of the user's way.
	logrus.SetOutput(io.Discard)
	return newApp(stdin, stdout, stderr).main(ctx, args)
}

// main runs the command line args (args[0] is the program) and returns
// the exit code.
func (a *app) main(ctx context.Context, args []string) int {
	err := a.execute(ctx, a.rootCommand(), args[1:])
	if err == nil {
		return 0
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if errors.Is(err, errs.ErrUsage) {
		code = 2
	}
	// An error may quote a remote party (registry, git server): escaped,
	// line by line.
	fmt.Fprintf(a.stderr, "vmbuild: %s\n", safeLines(strings.TrimRight(err.Error(), "\n")))
	return code
}

// execute runs root with args.
func (a *app) execute(ctx context.Context, root *cobra.Command, args []string) error {
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	return root.ExecuteContext(ctx)
}

// safeLines escapes, with termsafe, what each line of s would make a
// terminal do, keeping the line breaks.
func safeLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = termsafe.Text(l)
	}
	return strings.Join(lines, "\n")
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "vmbuild",
		Short: "Reproducible, signed container images from stock upstream plus a reviewed patch set",
		Long: `vmbuild builds a container image from an upstream git repository, pinned to an
exact commit by a lock file, with a small reviewed patch set applied, on BuildKit.
The image is bit-for-bit reproducible, signed (cosign-compatible) and carries
SLSA v1 provenance naming the commit and patches.

  vmbuild lock recipes/demo/demo.yaml        pin commit, base image and patches
  vmbuild build recipes/demo/demo.yaml       build (to ./out/NAME as an OCI layout)
  vmbuild build R --push REG/REPO:TAG --key cosign.key
  vmbuild verify REG/REPO@sha256:… --key cosign.pub --policy policy.yaml
  vmbuild track R --push REG/REPO --key cosign.key --interval 10m`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		Version:           Version,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: true},
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			level := slog.LevelInfo
			if a.verbose {
				level = slog.LevelDebug
			}
			if a.quiet {
				level = slog.LevelWarn
			}
			a.log = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level, ReplaceAttr: dropTime}))
		},
	}
	root.PersistentFlags().BoolVarP(&a.verbose, "verbose", "v", false, "log more")
	root.PersistentFlags().BoolVarP(&a.quiet, "quiet", "q", false, "log only warnings and errors")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w: %v (see `%s --help`)", errs.ErrUsage, err, c.CommandPath())
	})
	root.AddCommand(
		a.buildCommand(),
		a.lockCommand(),
		a.graphCommand(),
		a.daemonCommand(),
		a.schemaCommand(),
		a.versionCommand(),
		a.helperCommand(),
	)
	for _, extra := range extraCommands {
		root.AddCommand(extra(a))
	}
	return root
}

// extraCommands lets other files of this package register commands.
var extraCommands []func(*app) *cobra.Command

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey && len(groups) == 0 {
		return slog.Attr{}
	}
	return a
}

func usageArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%w: %s takes %d argument(s), got %d (usage: %s)", errs.ErrUsage, cmd.Name(), n, len(args), cmd.UseLine())
		}
		return nil
	}
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print vmbuild's version",
		Args:  usageArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(a.stdout, "vmbuild", Version)
			return nil
		},
	}
}

func (a *app) schemaCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the recipe JSON Schema (for editors)",
		Args:  usageArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := a.stdout.Write(recipeSchema())
			return err
		},
	}
}

func (a *app) helperCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "helper",
		Short:              "Run the in-build patch helper (internal)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := patch.HelperMain(args, a.stdout, a.stderr); code != 0 {
				return withCode(code, errors.New("helper failed"))
			}
			return nil
		},
	}
}
