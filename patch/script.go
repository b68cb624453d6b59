package patch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// scriptEnv returns the whole environment a script patch runs with.
func scriptEnv() []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/tmp",
		"LC_ALL=C",
	}
}

const (
	outputTailLines = 30
	outputKeepBytes = 1 << 20
)

// RunScript runs a script patch: `SHELL -e -x SCRIPT` with the working
// directory set to tree and only PATH=/usr/local/sbin:/usr/local/bin:
// /usr/sbin:/usr/bin:/sbin:/bin, HOME=/tmp and LC_ALL=C in the
// environment. It reports the files the script changed, comparing
// snapshots of the tree (mode and SHA-256 of every file, .git directories
// ignored) taken before and after.
//
// A non-zero exit is reported in the Report (reason "script") with the
// last command the shell traced, the last lines of output and the exit
// code; a script that changes nothing is a no-op. The error is non-nil
// only for internal problems (the tree cannot be read, ctx is done, bad
// options). Unlike a diff, a failed script may leave the tree modified.
func RunScript(ctx context.Context, tree, script string, opts ...Option) (*Report, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	name := o.name
	if name == "" {
		name = filepath.Base(script)
	}
	absScript, err := filepath.Abs(script)
	if err != nil {
		return nil, fmt.Errorf("running script %q: %w", name, err)
	}
	absTree, err := filepath.Abs(tree)
	if err != nil {
		return nil, fmt.Errorf("running script %q: %w", name, err)
	}
	source, err := os.ReadFile(absScript)
	if err != nil {
		return nil, fmt.Errorf("running script %q: reading script: %w", name, err)
	}
	root, err := os.OpenRoot(absTree)
	if err != nil {
		return nil, fmt.Errorf("running script %q: opening source tree: %w", name, err)
	}
	defer root.Close()

	budget := int64(maxKeepTotal)
	before, err := snapshot(ctx, root, true, &budget)
	if err != nil {
		return nil, fmt.Errorf("running script %q: reading the tree before: %w", name, err)
	}

	tail := &tailBuffer{max: outputKeepBytes}
	var w io.Writer = tail
	if o.output != nil {
		w = io.MultiWriter(tail, o.output)
	}
	cmd := exec.CommandContext(ctx, o.shell, "-e", "-x", absScript)
	cmd.Dir = absTree
	cmd.Env = scriptEnv()
	cmd.Stdout, cmd.Stderr = w, w
	cmd.WaitDelay = 10 * time.Second
	o.logger.Debug("running script", "patch", name, "shell", o.shell, "script", absScript)
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("running script %q: %w", name, ctx.Err())
	}
	if runErr != nil {
		return scriptFailure(name, o.shell, runErr, tail.String(), source), nil
	}

	after, err := snapshot(ctx, root, false, nil)
	if err != nil {
		return nil, fmt.Errorf("running script %q: reading the tree after: %w", name, err)
	}
	files := compareSnapshots(root, before, after)
	if len(files) == 0 {
		return noopReport(name, KindScript, o.optional), nil
	}
	r := &Report{Patch: name, Kind: KindScript, Status: StatusApplied, Files: files}
	r.finish()
	return r, nil
}

func scriptFailure(name, shell string, runErr error, output string, source []byte) *Report {
	f := &Failure{Reason: ReasonScript, Output: lastLines(output, outputTailLines)}
	var ee *exec.ExitError
	if !errors.As(runErr, &ee) {
		f.ExitCode = -1
		f.Message = fmt.Sprintf("cannot run %s: %v", shell, runErr)
		return &Report{Patch: name, Kind: KindScript, Status: StatusFailed, Files: []FileStat{}, Failure: f}
	}
	f.ExitCode = ee.ExitCode()
	cmd, msg := lastCommand(output)
	if cmd != "" {
		f.Command = sourceLine(cmd, source)
	}
	status := fmt.Sprintf("exited %d", f.ExitCode)
	if f.ExitCode < 0 {
		status = "failed (" + ee.String() + ")"
	}
	switch {
	case f.Command != "":
		f.Message = fmt.Sprintf("command %q %s", f.Command, status)
	default:
		f.Message = "script " + status
	}
	if msg != "" {
		f.Message += ": " + msg
	}
	return &Report{Patch: name, Kind: KindScript, Status: StatusFailed, Files: []FileStat{}, Failure: f}
}

// xtrace returns the command of a shell trace line ("+ cmd", "++ cmd").
func xtrace(line string) (string, bool) {
	s := strings.TrimLeft(line, "+")
	if len(s) == len(line) || !strings.HasPrefix(s, " ") {
		return "", false
	}
	return s[1:], true
}

// lastCommand finds the last traced command in output and the last line
// of output that follows it (usually the error message). A trailing
// assignment ("+ x=") is skipped in favour of the command before it: with
// `x=$(cmd)` the shell traces cmd, then the assignment, and then fails.
func lastCommand(output string) (cmd, msg string) {
	lines := strings.Split(strings.TrimRight(output, "\n"), "\n")
	traces := 0
	for i := len(lines) - 1; i >= 0; i-- {
		c, ok := xtrace(lines[i])
		if !ok {
			if l := strings.TrimSpace(lines[i]); l != "" && msg == "" && traces <= 1 {
				msg = l
			}
			continue
		}
		traces++
		if isAssignment(c) && traces == 1 {
			cmd = c
			continue
		}
		return c, msg
	}
	return cmd, msg
}

// isAssignment reports whether a traced command only assigns variables.
func isAssignment(c string) bool {
	words, ok := shellWords(c)
	if !ok || len(words) == 0 {
		return false
	}
	for _, w := range words {
		name, _, found := strings.Cut(w, "=")
		if !found || name == "" {
			return false
		}
		for i, r := range name {
			if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
				return false
			}
		}
	}
	return true
}

// sourceLine maps a traced command back to the script line it came from,
// so that the report shows it quoted as written. Shells trace commands
// after quote removal (dash) or re-quoted (bash, busybox); both forms are
// compared word by word. It returns the traced command if no line matches.
func sourceLine(traced string, source []byte) string {
	tracedWords, tracedOK := shellWords(traced)
	lines := strings.Split(string(source), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		words, ok := shellWords(l)
		if !ok || len(words) == 0 {
			continue
		}
		if strings.Join(words, " ") == traced {
			return l
		}
		if tracedOK && len(words) == len(tracedWords) && strings.Join(words, "\x00") == strings.Join(tracedWords, "\x00") {
			return l
		}
	}
	return traced
}

// shellWords splits a simple shell command line into words, handling
// single and double quotes and backslashes. It fails on unterminated
// quotes and stops at a comment.
func shellWords(s string) ([]string, bool) {
	var words []string
	var cur strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, false
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			in = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, false
			}
			in = true
		case c == '\\':
			if i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			}
			in = true
		case c == '#' && !in:
			i = len(s)
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words, true
}

func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if len(b) > t.max {
		b = b[len(b)-t.max:]
	}
	return string(b)
}
