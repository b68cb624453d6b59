package patch

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/vmbuild/vmbuild/errs"
)

// MaxFuzz is the largest fuzz factor [WithFuzz] accepts.
const MaxFuzz = 3

// DefaultShell runs script patches unless [WithShell] says otherwise.
const DefaultShell = "/bin/sh"

// Option configures [Patch.Apply], [ApplyDiff] and [RunScript].
type Option func(*options)

type options struct {
	offset   bool
	fuzz     int
	optional bool
	logger   *slog.Logger
	shell    string
	name     string
	output   io.Writer
}

// WithOffset lets a hunk apply at another line than its header says,
// trying the nearest lines first. Default: off (hunks must apply exactly
// where their header says).
func WithOffset(on bool) Option { return func(o *options) { o.offset = on } }

// WithFuzz lets a hunk apply while ignoring up to n (0..MaxFuzz) of its
// leading and trailing context lines, like GNU patch's --fuzz. Default 0.
func WithFuzz(n int) Option { return func(o *options) { o.fuzz = n } }

// WithOptional makes a patch that changes nothing a success (status
// "noop" without a failure). Default: a no-op patch fails.
func WithOptional(on bool) Option { return func(o *options) { o.optional = on } }

// WithLogger sets the logger. Default: silent.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithShell sets the shell that runs script patches. Default "/bin/sh".
func WithShell(path string) Option { return func(o *options) { o.shell = path } }

// WithName sets the patch name used in a script's report and errors.
// Default: the script's base name.
func WithName(name string) Option { return func(o *options) { o.name = name } }

// WithOutput receives a copy of a script's combined output as it runs.
// Default: none.
func WithOutput(w io.Writer) Option { return func(o *options) { o.output = w } }

func newOptions(opts []Option) (*options, error) {
	o := &options{shell: DefaultShell}
	for _, opt := range opts {
		opt(o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.fuzz < 0 || o.fuzz > MaxFuzz {
		return nil, fmt.Errorf("checking options: fuzz %d is not in 0..%d: %w", o.fuzz, MaxFuzz, errs.ErrUsage)
	}
	if o.shell == "" {
		return nil, fmt.Errorf("checking options: empty shell: %w", errs.ErrUsage)
	}
	return o, nil
}
