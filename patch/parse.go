package patch

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Op is what a diff does to a file.
type Op string

// File operations.
const (
	OpModified Op = "modified" // content (and maybe mode) changes in place
	OpAdded    Op = "added"    // a new file
	OpDeleted  Op = "deleted"  // a file is removed
	OpRenamed  Op = "renamed"  // OldPath moves to NewPath (maybe modified)
	OpCopied   Op = "copied"   // OldPath is copied to NewPath (maybe modified)
	OpMode     Op = "mode"     // only the mode changes
)

// Git file modes a diff may carry.
const (
	ModeRegular    uint32 = 0o100644
	ModeExecutable uint32 = 0o100755
	ModeGroupWrite uint32 = 0o100664 // old git; treated as ModeRegular
	ModeSymlink    uint32 = 0o120000 // parsed, refused by CheckSafe
)

// Limits on untrusted patch text.
const (
	// MaxPatchSize is the largest patch Parse accepts.
	MaxPatchSize = 64 << 20
	maxLineNum   = 1 << 30
)

// Patch is a parsed unified diff: a list of per-file diffs, in the order
// they appear in the patch text.
type Patch struct {
	Name  string
	Files []*FileDiff
}

// FileDiff is the part of a patch about one file. Paths are relative to
// the tree, with the a/ b/ style prefix already stripped; they are not yet
// checked for safety (see [Patch.CheckSafe]).
type FileDiff struct {
	OldPath string // path before; "" when Op is OpAdded
	NewPath string // path after; "" when Op is OpDeleted
	Op      Op
	// OldMode and NewMode are git modes (ModeRegular, ModeExecutable,
	// ModeSymlink), 0 when the diff does not say.
	OldMode uint32
	NewMode uint32
	Hunks   []*Hunk
	Git     bool // the diff had a "diff --git" header
	Line    int  // 1-based line in the patch where this file's diff starts

	// extra holds the names a traditional diff gives that are neither
	// OldPath nor NewPath (after prefix stripping): the backup name of
	// "diff -u x.orig x", the old name of a file "diff -N" creates, the new
	// name of one it deletes. [Patch.CheckSafe] checks them too.
	extra []extraName
}

// extraName is a file name from a ---/+++ line that is not patched.
type extraName struct {
	name string
	line int // 1-based line in the patch
}

// Path returns the path the diff is reported under: NewPath, or OldPath
// for deletions.
func (f *FileDiff) Path() string {
	if f.Op == OpDeleted {
		return f.OldPath
	}
	return f.NewPath
}

// Stats returns the number of added and removed lines in f's hunks.
func (f *FileDiff) Stats() (added, removed int) {
	for _, h := range f.Hunks {
		for _, l := range h.Lines {
			switch l.Kind {
			case '+':
				added++
			case '-':
				removed++
			}
		}
	}
	return added, removed
}

// Hunk is one "@@ -a,b +c,d @@" block.
type Hunk struct {
	OldStart, OldLines int
	NewStart, NewLines int
	Section            string // text after the closing "@@", if any
	Lines              []HunkLine
	Line               int // 1-based line of the "@@" header in the patch
}

// HunkLine is one line of a hunk body.
type HunkLine struct {
	Kind      byte   // ' ' context, '-' removed, '+' added
	Text      string // without the line terminator
	NoNewline bool   // followed by "\ No newline at end of file"
}

// Range returns the hunk header without the section text, e.g.
// "@@ -12,7 +12,6 @@".
func (h *Hunk) Range() string {
	return fmt.Sprintf("@@ -%s +%s @@", fmtRange(h.OldStart, h.OldLines), fmtRange(h.NewStart, h.NewLines))
}

// Header returns the full hunk header, e.g. "@@ -12,7 +12,6 @@ def foo".
func (h *Hunk) Header() string {
	if h.Section != "" {
		return h.Range() + " " + h.Section
	}
	return h.Range()
}

func fmtRange(start, n int) string {
	if n == 1 {
		return strconv.Itoa(start)
	}
	return fmt.Sprintf("%d,%d", start, n)
}

// oldNew returns the hunk's old-side and new-side lines, each with its
// "\n" terminator unless marked NoNewline.
func (h *Hunk) oldNew() (old, new []string) {
	for _, l := range h.Lines {
		s := l.Text
		if !l.NoNewline {
			s += "\n"
		}
		if l.Kind != '+' {
			old = append(old, s)
		}
		if l.Kind != '-' {
			new = append(new, s)
		}
	}
	return old, new
}

// context returns the number of context lines before the first and after
// the last change. A hunk without changes has (0, 0).
func (h *Hunk) context() (lead, trail int) {
	first, last := -1, -1
	for i, l := range h.Lines {
		if l.Kind != ' ' {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return 0, 0
	}
	return first, len(h.Lines) - 1 - last
}

// Parse parses a unified diff: `git diff` / `git format-patch` output
// (mail headers, commit message, diffstat and signature are skipped) or
// `diff -u` / `diff -ruN` output. name is used in errors only. Errors are
// [*Error] values with Reason ReasonParse. Parse refuses a file section
// whose names disagree (a traditional diff of two unrelated files, a git
// diff whose ---/+++ names are not its diff --git or rename/copy names),
// but does not check paths for safety; call [Patch.CheckSafe].
func Parse(name string, data []byte) (*Patch, error) {
	if len(data) > MaxPatchSize {
		return nil, &Error{Patch: name, Reason: ReasonParse,
			Msg: fmt.Sprintf("patch is %d bytes, larger than the %d byte limit", len(data), MaxPatchSize)}
	}
	p := &parser{name: name, lines: splitPatchLines(data)}
	if err := p.parse(); err != nil {
		return nil, err
	}
	return &Patch{Name: name, Files: p.files}, nil
}

// splitPatchLines splits on "\n", dropping the terminators. A final line
// without "\n" is kept.
func splitPatchLines(data []byte) []string {
	if len(data) == 0 {
		return nil
	}
	s := string(data)
	s = strings.TrimSuffix(s, "\n")
	return strings.Split(s, "\n")
}

type parser struct {
	name  string
	lines []string
	i     int // index of the current line
	files []*FileDiff
	trad  []*tradNames // traditional (non-git) diffs, fixed up at the end
}

// tradNames holds the raw names of a traditional diff until the -p level
// is known.
type tradNames struct {
	fd                 *FileDiff
	oldRaw, newRaw     string
	oldEpoch, newEpoch bool
}

func (p *parser) errf(line int, format string, args ...any) *Error {
	return &Error{Patch: p.name, Reason: ReasonParse, Line: line,
		Msg: fmt.Sprintf("line %d: ", line) + fmt.Sprintf(format, args...)}
}

func (p *parser) parse() error {
	for p.i < len(p.lines) {
		l := p.lines[p.i]
		switch {
		case strings.HasPrefix(l, "diff --git "):
			if err := p.parseGit(); err != nil {
				return err
			}
		case strings.HasPrefix(l, "--- ") && p.i+1 < len(p.lines) && strings.HasPrefix(p.lines[p.i+1], "+++ "):
			if err := p.parseTraditional(); err != nil {
				return err
			}
		case strings.HasPrefix(l, "@@ -"):
			return p.errf(p.i+1, "hunk without a file header (--- / +++ lines)")
		case strings.HasPrefix(l, "GIT binary patch"), strings.HasPrefix(l, "Binary files "):
			return p.errf(p.i+1, "binary patches are not supported")
		default:
			p.i++ // mail headers, commit message, diffstat, signature, "Index:" ...
		}
	}
	if len(p.files) == 0 {
		return &Error{Patch: p.name, Reason: ReasonParse, Msg: "no diffs found in patch"}
	}
	if err := p.fixTraditional(); err != nil {
		return err
	}
	for _, f := range p.files {
		if err := p.checkFile(f); err != nil {
			return err
		}
	}
	return nil
}

// parseGit parses one "diff --git" section.
func (p *parser) parseGit() error {
	start := p.i + 1
	hdr := strings.TrimSuffix(p.lines[p.i], "\r")[len("diff --git "):]
	aName, bName, err := splitGitHeader(hdr)
	if err != nil {
		return p.errf(start, "%v", err)
	}
	p.i++
	fd := &FileDiff{Git: true, Line: start, Op: OpModified}
	var (
		renameFrom, renameTo, copyFrom, copyTo string
		isNew, isDeleted                       bool
		minus, plus                            string
		haveMinusPlus                          bool
		minusLine                              int // 1-based line of "---"
		indexMode                              uint32
	)
	parseMode := func(s string) (uint32, error) {
		m, err := strconv.ParseUint(strings.TrimSpace(s), 8, 32)
		if err != nil {
			return 0, p.errf(p.i+1, "invalid file mode %q", s)
		}
		switch uint32(m) {
		case ModeRegular, ModeExecutable, ModeSymlink:
			return uint32(m), nil
		case ModeGroupWrite:
			return ModeRegular, nil
		case 0o160000:
			return 0, p.errf(p.i+1, "submodule (gitlink) changes are not supported")
		}
		return 0, p.errf(p.i+1, "unsupported file mode %s", s)
	}
	quotedArg := func(s string) (string, error) {
		if strings.HasPrefix(s, `"`) {
			n, rest, err := unquoteC(s)
			if err != nil || strings.TrimSpace(rest) != "" {
				return "", p.errf(p.i+1, "bad quoted file name %s", s)
			}
			return n, nil
		}
		return s, nil
	}
header:
	for p.i < len(p.lines) {
		l := strings.TrimSuffix(p.lines[p.i], "\r")
		var err error
		switch {
		case strings.HasPrefix(l, "old mode "):
			fd.OldMode, err = parseMode(l[len("old mode "):])
		case strings.HasPrefix(l, "new mode "):
			fd.NewMode, err = parseMode(l[len("new mode "):])
		case strings.HasPrefix(l, "deleted file mode "):
			isDeleted = true
			fd.OldMode, err = parseMode(l[len("deleted file mode "):])
		case strings.HasPrefix(l, "new file mode "):
			isNew = true
			fd.NewMode, err = parseMode(l[len("new file mode "):])
		case strings.HasPrefix(l, "rename from "):
			renameFrom, err = quotedArg(l[len("rename from "):])
		case strings.HasPrefix(l, "rename to "):
			renameTo, err = quotedArg(l[len("rename to "):])
		case strings.HasPrefix(l, "rename old "):
			renameFrom, err = quotedArg(l[len("rename old "):])
		case strings.HasPrefix(l, "rename new "):
			renameTo, err = quotedArg(l[len("rename new "):])
		case strings.HasPrefix(l, "copy from "):
			copyFrom, err = quotedArg(l[len("copy from "):])
		case strings.HasPrefix(l, "copy to "):
			copyTo, err = quotedArg(l[len("copy to "):])
		case strings.HasPrefix(l, "similarity index "), strings.HasPrefix(l, "dissimilarity index "):
		case strings.HasPrefix(l, "index "):
			// "index abc..def 100644": the mode of an unchanged-mode file.
			if f := strings.Fields(l); len(f) == 3 {
				indexMode, err = parseMode(f[2])
			}
		case strings.HasPrefix(l, "GIT binary patch"), strings.HasPrefix(l, "Binary files "):
			return p.errf(p.i+1, "binary patches are not supported (%s)", gitName(aName, bName))
		case strings.HasPrefix(l, "--- "):
			if p.i+1 >= len(p.lines) || !strings.HasPrefix(p.lines[p.i+1], "+++ ") {
				return p.errf(p.i+1, "--- line not followed by +++ line")
			}
			var e1, e2 error
			minus, _, e1 = parseFileLine(l[len("--- "):])
			plus, _, e2 = parseFileLine(strings.TrimSuffix(p.lines[p.i+1], "\r")[len("+++ "):])
			if e1 != nil || e2 != nil {
				return p.errf(p.i+1, "bad file name in ---/+++ lines")
			}
			haveMinusPlus, minusLine = true, p.i+1
			p.i += 2
			break header
		default:
			break header
		}
		if err != nil {
			return err
		}
		p.i++
	}

	// Work out the paths.
	strip := func(s string, n int) string {
		if n == 0 {
			return s
		}
		return strip1(s)
	}
	switch {
	case renameFrom != "" || renameTo != "":
		if renameFrom == "" || renameTo == "" {
			return p.errf(start, "rename without both \"rename from\" and \"rename to\"")
		}
		fd.Op, fd.OldPath, fd.NewPath = OpRenamed, renameFrom, renameTo
	case copyFrom != "" || copyTo != "":
		if copyFrom == "" || copyTo == "" {
			return p.errf(start, "copy without both \"copy from\" and \"copy to\"")
		}
		fd.Op, fd.OldPath, fd.NewPath = OpCopied, copyFrom, copyTo
	}
	switch fd.Op {
	case OpRenamed, OpCopied:
		// Every other name the section gives must be the source or the
		// target, with or without a prefix, as git apply requires:
		// CheckSafe checks only those two.
		verb := "rename"
		if fd.Op == OpCopied {
			verb = "copy"
		}
		for _, c := range []struct {
			name, where string
			line        int
			want, side  string
		}{
			{aName, "diff --git line", start, fd.OldPath, "from"},
			{bName, "diff --git line", start, fd.NewPath, "to"},
			{minus, "--- line", minusLine, fd.OldPath, "from"},
			{plus, "+++ line", minusLine + 1, fd.NewPath, "to"},
		} {
			if c.name == "" || c.name == devNull || c.name == c.want || strip1(c.name) == c.want {
				continue
			}
			return p.errf(c.line, "file name %q in the %s does not match %q in the \"%s %s\" line",
				truncate(c.name, 256), c.where, truncate(c.want, 256), verb, c.side)
		}
	default:
		var name string
		switch {
		case aName != "" && aName == bName: // --no-prefix
			name = aName
			if haveMinusPlus {
				for _, n := range []string{minus, plus} {
					if n != devNull && n != name {
						return p.errf(start, "file name %q in ---/+++ lines does not match %q in the diff --git line", n, name)
					}
				}
			}
		case aName != "":
			name = strip1(aName)
			if name == "" || name != strip1(bName) {
				return p.errf(start, "diff --git line names two different files (%q, %q) without a rename or copy", aName, bName)
			}
			if haveMinusPlus {
				for _, n := range []string{minus, plus} {
					if n != devNull && strip(n, 1) != name {
						return p.errf(start, "file name %q in ---/+++ lines does not match %q in the diff --git line", n, name)
					}
				}
			}
		case haveMinusPlus:
			m, pl := strip(minus, 1), strip(plus, 1)
			switch {
			case minus == devNull:
				name = pl
			case plus == devNull:
				name = m
			case m == pl:
				name = m
			default:
				return p.errf(start, "cannot tell the file name from the diff --git line")
			}
		default:
			return p.errf(start, "cannot tell the file name from the diff --git line")
		}
		fd.OldPath, fd.NewPath = name, name
	}
	if haveMinusPlus {
		if minus == devNull {
			isNew = true
		}
		if plus == devNull {
			isDeleted = true
		}
	}
	switch {
	case isNew && isDeleted:
		return p.errf(start, "diff both creates and deletes %s", gitName(aName, bName))
	case isNew:
		if fd.Op != OpModified {
			return p.errf(start, "new file diff cannot also be a rename or copy")
		}
		fd.Op, fd.OldPath = OpAdded, ""
		if fd.NewMode == 0 {
			fd.NewMode = ModeRegular
		}
	case isDeleted:
		if fd.Op != OpModified {
			return p.errf(start, "deleted file diff cannot also be a rename or copy")
		}
		fd.Op, fd.NewPath = OpDeleted, ""
	}
	if fd.OldMode == 0 && fd.Op != OpAdded {
		fd.OldMode = indexMode
	}
	if fd.NewMode == 0 && fd.Op != OpDeleted {
		if indexMode != 0 {
			fd.NewMode = indexMode
		} else {
			fd.NewMode = fd.OldMode
		}
	}

	if haveMinusPlus {
		if p.i >= len(p.lines) || !strings.HasPrefix(p.lines[p.i], "@@ ") {
			return p.errf(p.i+1, "---/+++ lines not followed by a hunk")
		}
		if err := p.parseHunks(fd); err != nil {
			return err
		}
	} else if p.i < len(p.lines) && strings.HasPrefix(p.lines[p.i], "@@ ") {
		return p.errf(p.i+1, "hunk without ---/+++ lines")
	}
	if fd.Op == OpModified && len(fd.Hunks) == 0 {
		if fd.OldMode != 0 && fd.NewMode != 0 && fd.OldMode != fd.NewMode {
			fd.Op = OpMode
		} else {
			return p.errf(start, "diff for %s has no changes", fd.NewPath)
		}
	}
	p.files = append(p.files, fd)
	return nil
}

const devNull = "/dev/null"

func gitName(a, b string) string {
	if b != "" {
		return strip1(b)
	}
	return a
}

// splitGitHeader splits the names on a "diff --git" line. Unquoted names
// may contain spaces; the split is found where both halves name the same
// file (after stripping one component), as git does. If no such split
// exists (renames), it returns empty names.
func splitGitHeader(s string) (a, b string, err error) {
	if strings.HasPrefix(s, `"`) {
		a, rest, err := unquoteC(s)
		if err != nil {
			return "", "", fmt.Errorf("bad quoted name in diff --git line: %w", err)
		}
		rest = strings.TrimPrefix(rest, " ")
		if strings.HasPrefix(rest, `"`) {
			b, rest, err = unquoteC(rest)
			if err != nil || rest != "" {
				return "", "", fmt.Errorf("bad quoted name in diff --git line")
			}
			return a, b, nil
		}
		return a, rest, nil
	}
	if i := strings.Index(s, ` "`); i >= 0 && strings.HasSuffix(s, `"`) {
		b, rest, err := unquoteC(s[i+1:])
		if err == nil && rest == "" {
			return s[:i], b, nil
		}
	}
	for i := 0; i < len(s); i++ {
		if s[i] != ' ' {
			continue
		}
		l, r := s[:i], s[i+1:]
		if l == r {
			return l, r, nil
		}
		if sl := strip1(l); sl != "" && sl == strip1(r) {
			return l, r, nil
		}
	}
	return "", "", nil
}

// strip1 removes the first path component ("a/x/y" -> "x/y"); "" if there
// is only one.
func strip1(s string) string {
	i := strings.IndexByte(s, '/')
	if i < 0 {
		return ""
	}
	return s[i+1:]
}

// parseFileLine parses the text after "--- " or "+++ ": a possibly quoted
// name, then an optional tab and timestamp. epoch reports a timestamp of
// the Unix epoch, which `diff -N` uses for absent files.
func parseFileLine(s string) (name string, epoch bool, err error) {
	s = strings.TrimSuffix(s, "\r")
	if strings.HasPrefix(s, `"`) {
		name, rest, err := unquoteC(s)
		if err != nil {
			return "", false, err
		}
		return name, isEpoch(strings.TrimLeft(rest, " \t")), nil
	}
	if i := strings.IndexByte(s, '\t'); i >= 0 {
		return s[:i], isEpoch(s[i+1:]), nil
	}
	return s, false, nil
}

func isEpoch(ts string) bool {
	ts = strings.TrimSpace(ts)
	if ts == "" {
		return false
	}
	for _, layout := range []string{
		"2006-01-02 15:04:05.999999999 -0700",
		"2006-01-02 15:04:05 -0700",
		"Mon Jan _2 15:04:05 2006",
		"Mon Jan _2 15:04:05.999999999 2006",
	} {
		if t, err := time.Parse(layout, ts); err == nil {
			return t.Unix() == 0
		}
	}
	return false
}

// unquoteC decodes a git C-style quoted string at the start of s and
// returns it and the rest of s after the closing quote.
func unquoteC(s string) (string, string, error) {
	if !strings.HasPrefix(s, `"`) {
		return "", "", fmt.Errorf("not quoted")
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			return b.String(), s[i+1:], nil
		case '\\':
			i++
			if i >= len(s) {
				return "", "", fmt.Errorf("unterminated escape")
			}
			switch e := s[i]; e {
			case 'a':
				b.WriteByte('\a')
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'v':
				b.WriteByte('\v')
			case '\\', '"':
				b.WriteByte(e)
			case '0', '1', '2', '3':
				if i+2 >= len(s) || !isOctal(s[i+1]) || !isOctal(s[i+2]) {
					return "", "", fmt.Errorf("bad octal escape")
				}
				b.WriteByte((e-'0')<<6 | (s[i+1]-'0')<<3 | (s[i+2] - '0'))
				i += 2
			default:
				return "", "", fmt.Errorf("unknown escape \\%c", e)
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", "", fmt.Errorf("unterminated quoted name")
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// parseTraditional parses a "--- / +++" section without a git header.
func (p *parser) parseTraditional() error {
	start := p.i + 1
	oldRaw, oldEpoch, err1 := parseFileLine(p.lines[p.i][len("--- "):])
	newRaw, newEpoch, err2 := parseFileLine(p.lines[p.i+1][len("+++ "):])
	if err1 != nil || err2 != nil {
		return p.errf(start, "bad file name in ---/+++ lines")
	}
	p.i += 2
	if p.i >= len(p.lines) || !strings.HasPrefix(p.lines[p.i], "@@ ") {
		return p.errf(p.i+1, "---/+++ lines not followed by a hunk")
	}
	fd := &FileDiff{Line: start, Op: OpModified}
	if err := p.parseHunks(fd); err != nil {
		return err
	}
	p.files = append(p.files, fd)
	p.trad = append(p.trad, &tradNames{fd: fd, oldRaw: oldRaw, newRaw: newRaw, oldEpoch: oldEpoch, newEpoch: newEpoch})
	return nil
}

// fixTraditional decides the -p level for traditional diffs, refuses pairs
// of unrelated names, and sets their paths and operations; the name that
// is not patched is kept in FileDiff.extra for CheckSafe. Names are
// stripped of one leading component when every old name starts with "a/"
// and every new name with "b/", or when every diff compares two different
// top directories (diff -ruN old/ new/).
func (p *parser) fixTraditional() error {
	if len(p.trad) == 0 {
		return nil
	}
	clean := func(s string) string {
		for strings.HasPrefix(s, "./") {
			s = s[2:]
		}
		return s
	}
	ab, dirs, pairs := true, true, 0
	for _, t := range p.trad {
		t.oldRaw, t.newRaw = clean(t.oldRaw), clean(t.newRaw)
		if t.oldRaw != devNull && !strings.HasPrefix(t.oldRaw, "a/") {
			ab = false
		}
		if t.newRaw != devNull && !strings.HasPrefix(t.newRaw, "b/") {
			ab = false
		}
		for _, n := range []string{t.oldRaw, t.newRaw} {
			if n != devNull && strip1(n) == "" {
				dirs = false
			}
		}
		if t.oldRaw != devNull && t.newRaw != devNull {
			pairs++
			o, n := t.oldRaw, t.newRaw
			if strip1(o) == "" || strip1(o) != strip1(n) || o[:len(o)-len(strip1(o))] == n[:len(n)-len(strip1(n))] {
				dirs = false
			}
		}
	}
	level := 0
	if ab || (dirs && pairs > 0) {
		level = 1
	}
	for _, t := range p.trad {
		fd := t.fd
		name := func(s string) string {
			if s == devNull || level == 0 {
				return s
			}
			return strip1(s)
		}
		o, n := name(t.oldRaw), name(t.newRaw)
		// Two names must be the same file, or a file and its backup. A
		// name that fails the safety check is left to CheckSafe, so that
		// the patch is refused as unsafe rather than as unparsable.
		if o != devNull && n != devNull && o != n && checkPath(o) == nil && checkPath(n) == nil && !backupPair(o, n) {
			return p.errf(fd.Line, "--- and +++ lines name unrelated files %q and %q (names may differ only by a backup suffix: %s)",
				truncate(o, 256), truncate(n, 256), strings.Join(backupSuffixes, " "))
		}
		added := t.oldRaw == devNull || (t.oldEpoch && !t.newEpoch)
		deleted := t.newRaw == devNull || (t.newEpoch && !t.oldEpoch)
		if !added && !deleted && len(fd.Hunks) == 1 && fd.Hunks[0].OldStart == 0 && fd.Hunks[0].OldLines == 0 {
			added = true // "@@ -0,0 +1,n @@": the old file is empty or absent
		}
		switch {
		case added && deleted:
			return p.errf(fd.Line, "diff both creates and deletes a file")
		case added:
			if n == devNull {
				return p.errf(fd.Line, "new file has no name")
			}
			fd.Op, fd.NewPath = OpAdded, n
		case deleted:
			if o == devNull {
				return p.errf(fd.Line, "deleted file has no name")
			}
			fd.Op, fd.OldPath = OpDeleted, o
		default:
			t := pickName(o, n)
			fd.OldPath, fd.NewPath = t, t
		}
		// Keep the name that is not patched, for CheckSafe.
		if o != devNull && o != fd.OldPath && o != fd.NewPath {
			fd.extra = append(fd.extra, extraName{o, fd.Line})
		}
		if n != devNull && n != fd.OldPath && n != fd.NewPath {
			fd.extra = append(fd.extra, extraName{n, fd.Line + 1})
		}
	}
	return nil
}

// backupSuffixes are the suffixes by which the two names of a traditional
// diff may differ: the backups GNU patch (-b), quilt, editors and
// hand-made "diff -u x.orig x" / "diff -u x x.new" leave.
var backupSuffixes = []string{".orig", "~", ".bak", ".old", ".new"}

// backupPair reports whether one of a and b is the other plus a backup
// suffix.
func backupPair(a, b string) bool {
	for _, s := range backupSuffixes {
		if a == b+s || b == a+s {
			return true
		}
	}
	return false
}

// pickName chooses the file to patch when a traditional diff names a file
// and its backup (diff -u x.orig x), as GNU patch does: fewest path
// components, then shortest base name, then shortest name; the old name
// on a tie.
func pickName(o, n string) string {
	if o == n {
		return o
	}
	key := func(s string) [3]int {
		base := s[strings.LastIndexByte(s, '/')+1:]
		return [3]int{strings.Count(s, "/"), len(base), len(s)}
	}
	ko, kn := key(o), key(n)
	for i := range ko {
		if kn[i] < ko[i] {
			return n
		}
		if kn[i] > ko[i] {
			return o
		}
	}
	return o
}

// parseHunks parses consecutive hunks starting at the current line.
func (p *parser) parseHunks(fd *FileDiff) error {
	for p.i < len(p.lines) && strings.HasPrefix(p.lines[p.i], "@@ ") {
		h, err := p.parseHunk()
		if err != nil {
			return err
		}
		fd.Hunks = append(fd.Hunks, h)
	}
	// A line right after the last hunk that looks like a hunk body line
	// means the header counts are too small.
	if p.i < len(p.lines) {
		l := p.lines[p.i]
		if strings.HasPrefix(l, "+") && !strings.HasPrefix(l, "+++ ") ||
			strings.HasPrefix(l, " ") ||
			strings.HasPrefix(l, "-") && !strings.HasPrefix(l, "--- ") && l != "-- " && l != "--" && l != "---" {
			return p.errf(p.i+1, "hunk has more lines than its header %s says", fd.Hunks[len(fd.Hunks)-1].Range())
		}
	}
	return nil
}

func (p *parser) parseHunk() (*Hunk, error) {
	hdrLine := p.i + 1
	h := &Hunk{Line: hdrLine}
	if err := parseHunkHeader(strings.TrimSuffix(p.lines[p.i], "\r"), h); err != nil {
		return nil, p.errf(hdrLine, "bad hunk header %q: %v", p.lines[p.i], err)
	}
	if h.OldLines == 0 && h.NewLines == 0 {
		return nil, p.errf(hdrLine, "empty hunk %s", h.Range())
	}
	p.i++
	oldLeft, newLeft := h.OldLines, h.NewLines
	oldEnded, newEnded := false, false // a "\ No newline" closed that side
	for oldLeft > 0 || newLeft > 0 || (p.i < len(p.lines) && strings.HasPrefix(p.lines[p.i], `\`) && len(h.Lines) > 0) {
		if p.i >= len(p.lines) {
			return nil, p.errf(hdrLine, "hunk %s is truncated: %d old and %d new lines missing", h.Range(), oldLeft, newLeft)
		}
		l := p.lines[p.i]
		kind := byte(' ')
		text := ""
		if l != "" {
			kind, text = l[0], l[1:]
		}
		switch kind {
		case ' ', '-', '+':
			if (kind != '+' && (oldLeft == 0 || oldEnded)) || (kind != '-' && (newLeft == 0 || newEnded)) {
				return nil, p.errf(p.i+1, "hunk %s: line does not fit the header's line counts", h.Range())
			}
			if kind != '+' {
				oldLeft--
			}
			if kind != '-' {
				newLeft--
			}
			h.Lines = append(h.Lines, HunkLine{Kind: kind, Text: text})
		case '\\':
			if len(h.Lines) == 0 {
				return nil, p.errf(p.i+1, "\"\\ No newline\" marker before any hunk line")
			}
			last := &h.Lines[len(h.Lines)-1]
			if last.NoNewline {
				return nil, p.errf(p.i+1, "repeated \"\\ No newline\" marker")
			}
			last.NoNewline = true
			if last.Kind != '+' {
				oldEnded = true
			}
			if last.Kind != '-' {
				newEnded = true
			}
		default:
			return nil, p.errf(p.i+1, "hunk %s: expected %d more old and %d more new lines, found %q", h.Range(), oldLeft, newLeft, truncate(l, 60))
		}
		p.i++
	}
	// Lines after a "\ No newline" marker on the same side are rejected
	// above; lines of the other side may follow.
	return h, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// parseHunkHeader parses "@@ -a[,b] +c[,d] @@[ section]".
func parseHunkHeader(s string, h *Hunk) error {
	rest, ok := strings.CutPrefix(s, "@@ -")
	if !ok {
		return fmt.Errorf("missing \"@@ -\"")
	}
	var err error
	rest, h.OldStart, h.OldLines, err = parseRange(rest)
	if err != nil {
		return err
	}
	rest, ok = strings.CutPrefix(rest, " +")
	if !ok {
		return fmt.Errorf("missing \" +\"")
	}
	rest, h.NewStart, h.NewLines, err = parseRange(rest)
	if err != nil {
		return err
	}
	rest, ok = strings.CutPrefix(rest, " @@")
	if !ok {
		return fmt.Errorf("missing closing \"@@\"")
	}
	if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
		return fmt.Errorf("junk after closing \"@@\"")
	}
	h.Section = strings.TrimSpace(rest)
	if h.OldStart == 0 && h.OldLines != 0 || h.NewStart == 0 && h.NewLines != 0 {
		return fmt.Errorf("line 0 with a non-zero count")
	}
	return nil
}

func parseRange(s string) (rest string, start, count int, err error) {
	num := func() (int, error) {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 || i > 10 {
			return 0, fmt.Errorf("bad number")
		}
		n, _ := strconv.Atoi(s[:i])
		if n > maxLineNum {
			return 0, fmt.Errorf("line number too large")
		}
		s = s[i:]
		return n, nil
	}
	if start, err = num(); err != nil {
		return "", 0, 0, err
	}
	count = 1
	if strings.HasPrefix(s, ",") {
		s = s[1:]
		if count, err = num(); err != nil {
			return "", 0, 0, err
		}
	}
	return s, start, count, nil
}

// checkFile validates a parsed file diff: hunks in order and not
// overlapping, creation/deletion hunks shaped right.
func (p *parser) checkFile(f *FileDiff) error {
	if (f.Op != OpAdded && f.OldPath == "") || (f.Op != OpDeleted && f.NewPath == "") {
		return p.errf(f.Line, "diff has no file name")
	}
	prevEnd := 0
	for i, h := range f.Hunks {
		begin := h.OldStart - 1
		if h.OldLines == 0 {
			begin = h.OldStart
		}
		if i > 0 && begin < prevEnd {
			return p.errf(h.Line, "hunk %s overlaps or comes before the previous hunk in %s", h.Range(), f.Path())
		}
		prevEnd = begin + h.OldLines
		if f.Op == OpAdded && (h.OldLines != 0 || len(f.Hunks) != 1) {
			return p.errf(h.Line, "hunk %s of new file %s must be a single \"-0,0\" hunk", h.Range(), f.NewPath)
		}
		if f.Op == OpDeleted && (h.NewLines != 0 || len(f.Hunks) != 1) {
			return p.errf(h.Line, "hunk %s of deleted file %s must be a single \"+0,0\" hunk", h.Range(), f.OldPath)
		}
	}
	if (f.Op == OpRenamed || f.Op == OpCopied) && f.OldPath == f.NewPath {
		return p.errf(f.Line, "%s of %s onto itself", f.Op, f.OldPath)
	}
	return nil
}
