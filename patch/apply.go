package patch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
)

// ApplyDiff parses data as a unified diff named name and applies it to the
// directory tree, like [Parse] followed by [Patch.Apply]. Parse errors are
// reported in the Report (reason "parse"), not as an error.
func ApplyDiff(ctx context.Context, tree, name string, data []byte, opts ...Option) (*Report, error) {
	if _, err := newOptions(opts); err != nil {
		return nil, err
	}
	p, err := Parse(name, data)
	if err != nil {
		var pe *Error
		if errors.As(err, &pe) {
			return failedReport(name, KindDiff, pe), nil
		}
		return nil, err
	}
	return p.Apply(ctx, tree, opts...)
}

// Apply applies the patch to the directory tree. Patch-level failures (a
// hunk does not apply, a file is missing or exists, an unsafe path, a
// no-op) are returned in the Report with status "failed" or "noop", and
// the tree is left unmodified: all results are computed in memory before
// anything is written. The error is non-nil only for internal problems
// (the tree cannot be opened, read or written, bad options); the tree may
// then be partly written.
//
// All file system access goes through an [os.Root] opened on tree, and
// every path is checked with [Patch.CheckSafe] and for symbolic links in
// the tree before anything is written.
func (p *Patch) Apply(ctx context.Context, tree string, opts ...Option) (*Report, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := p.CheckSafe(); err != nil {
		var pe *Error
		errors.As(err, &pe)
		return failedReport(p.Name, KindDiff, pe), nil
	}
	root, err := os.OpenRoot(tree)
	if err != nil {
		return nil, fmt.Errorf("opening source tree: %w", err)
	}
	defer root.Close()

	a := &applier{p: p, o: o, root: root, entries: map[string]*entry{}}
	fail := func(err error) (*Report, error) {
		var pe *Error
		if errors.As(err, &pe) {
			return failedReport(p.Name, KindDiff, pe), nil
		}
		return nil, fmt.Errorf("applying patch %q: %w", p.Name, err)
	}
	for _, f := range p.Files {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("applying patch %q: %w", p.Name, err)
		}
		if err := a.applyFile(f); err != nil {
			return fail(err)
		}
	}
	deletes, writes, err := a.plan()
	if err != nil {
		return fail(err)
	}
	if len(deletes) == 0 && len(writes) == 0 {
		return noopReport(p.Name, KindDiff, o.optional), nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("applying patch %q: %w", p.Name, err)
	}
	if err := a.commit(deletes, writes); err != nil {
		return nil, fmt.Errorf("writing patch %q to the tree: %w", p.Name, err)
	}
	r := &Report{Patch: p.Name, Kind: KindDiff, Status: StatusApplied, Files: a.stats()}
	r.finish()
	o.logger.Debug("patch applied", "patch", p.Name, "summary", r.Summary())
	return r, nil
}

type kind int

const (
	absent kind = iota
	regular
	directory
)

// entry is the in-memory state of one path the patch touches.
type entry struct {
	path     string
	origKind kind
	origData []byte
	origPerm fs.FileMode
	kind     kind // absent or regular once touched
	data     []byte
	perm     fs.FileMode
}

type applier struct {
	p       *Patch
	o       *options
	root    *os.Root
	entries map[string]*entry
}

func (a *applier) errorf(reason Reason, file string, format string, args ...any) *Error {
	return &Error{Patch: a.p.Name, Reason: reason, File: file, Msg: fmt.Sprintf(format, args...)}
}

func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// get returns the state of p, loading it from the tree the first time. It
// refuses paths beyond a symbolic link and symbolic links themselves.
func (a *applier) get(p string) (*entry, error) {
	if e, ok := a.entries[p]; ok {
		return e, nil
	}
	e := &entry{path: p}
	parts := strings.Split(p, "/")
	exists := true
	for i := 1; i < len(parts) && exists; i++ {
		q := strings.Join(parts[:i], "/")
		fi, err := a.root.Lstat(q)
		switch {
		case isNotExist(err):
			exists = false
		case err != nil:
			return nil, fmt.Errorf("checking %s: %w", q, err)
		case fi.Mode()&fs.ModeSymlink != 0:
			return nil, a.errorf(ReasonUnsafe, p, "%s is beyond a symbolic link (%s)", p, q)
		case !fi.IsDir():
			exists = false // a file where a directory would be
		}
	}
	if exists {
		fi, err := a.root.Lstat(p)
		switch {
		case isNotExist(err):
		case err != nil:
			return nil, fmt.Errorf("checking %s: %w", p, err)
		case fi.Mode()&fs.ModeSymlink != 0:
			return nil, a.errorf(ReasonUnsafe, p, "%s is a symbolic link in the tree; symbolic links cannot be patched", p)
		case fi.IsDir():
			e.origKind = directory
		case !fi.Mode().IsRegular():
			return nil, a.errorf(ReasonUnsafe, p, "%s is not a regular file (%s)", p, fi.Mode().Type())
		default:
			data, err := a.root.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", p, err)
			}
			e.origKind, e.origData, e.origPerm = regular, data, fi.Mode().Perm()
		}
	}
	e.kind, e.data, e.perm = e.origKind, e.origData, e.origPerm
	a.entries[p] = e
	return e, nil
}

func permFor(mode uint32, def fs.FileMode) fs.FileMode {
	switch mode {
	case ModeExecutable:
		return 0o755
	case ModeRegular:
		return 0o644
	}
	return def
}

// source loads the file a diff reads, which must exist.
func (a *applier) source(f *FileDiff, p string) (*entry, error) {
	e, err := a.get(p)
	if err != nil {
		return nil, err
	}
	switch e.kind {
	case absent:
		return nil, a.errorf(ReasonMissingFile, p, "%s does not exist", p)
	case directory:
		return nil, a.errorf(ReasonContext, p, "%s is a directory", p)
	}
	return e, nil
}

// target loads the file a diff creates, which must not exist (a directory
// is allowed if the patch empties it; see plan).
func (a *applier) target(p string) (*entry, error) {
	e, err := a.get(p)
	if err != nil {
		return nil, err
	}
	if e.kind == regular {
		return nil, a.errorf(ReasonExists, p, "%s already exists", p)
	}
	return e, nil
}

func (a *applier) applyFile(f *FileDiff) error {
	switch f.Op {
	case OpAdded:
		dst, err := a.target(f.NewPath)
		if err != nil {
			return err
		}
		out, err := a.applyHunks(f.NewPath, nil, f.Hunks)
		if err != nil {
			return err
		}
		dst.kind, dst.data, dst.perm = regular, out, permFor(f.NewMode, 0o644)
	case OpDeleted:
		src, err := a.source(f, f.OldPath)
		if err != nil {
			return err
		}
		out, err := a.applyHunks(f.OldPath, src.data, f.Hunks)
		if err != nil {
			return err
		}
		if len(out) != 0 {
			return a.errorf(ReasonContext, f.OldPath, "%s has content the patch does not delete (%d bytes left)", f.OldPath, len(out))
		}
		src.kind, src.data = absent, nil
	case OpModified, OpMode:
		src, err := a.source(f, f.OldPath)
		if err != nil {
			return err
		}
		out, err := a.applyHunks(f.OldPath, src.data, f.Hunks)
		if err != nil {
			return err
		}
		perm := src.perm
		if f.NewMode != 0 && f.NewMode != f.OldMode {
			perm = permFor(f.NewMode, perm)
		}
		src.data, src.perm = out, perm
	case OpRenamed, OpCopied:
		src, err := a.source(f, f.OldPath)
		if err != nil {
			return err
		}
		data, perm := src.data, src.perm
		if f.Op == OpCopied {
			// git copies read the preimage.
			if src.origKind != regular {
				return a.errorf(ReasonMissingFile, f.OldPath, "%s does not exist", f.OldPath)
			}
			data, perm = src.origData, src.origPerm
		}
		dst, err := a.target(f.NewPath)
		if err != nil {
			return err
		}
		out, err := a.applyHunks(f.NewPath, data, f.Hunks)
		if err != nil {
			return err
		}
		if f.NewMode != 0 && f.NewMode != f.OldMode {
			perm = permFor(f.NewMode, perm)
		}
		if f.Op == OpRenamed {
			src.kind, src.data = absent, nil
		}
		dst.kind, dst.data, dst.perm = regular, out, perm
	default:
		return a.errorf(ReasonParse, f.Path(), "unknown operation %q on %s", f.Op, f.Path())
	}
	return nil
}

// plan lists the paths to delete (deepest first) and to write, and checks
// that the writes can be done: no parent is a file that stays, no parent
// is a symbolic link, a directory to be replaced by a file is emptied.
func (a *applier) plan() (deletes, writes []*entry, err error) {
	for _, e := range a.entries {
		switch {
		case e.origKind == regular && e.kind == absent:
			deletes = append(deletes, e)
		case e.kind == regular && (e.origKind != regular || !bytes.Equal(e.data, e.origData) || e.perm != e.origPerm):
			writes = append(writes, e)
		}
	}
	sort.Slice(deletes, func(i, j int) bool { return deletes[i].path > deletes[j].path })
	sort.Slice(writes, func(i, j int) bool { return writes[i].path < writes[j].path })
	for _, w := range writes {
		parts := strings.Split(w.path, "/")
		onDisk := true
		for i := 1; i < len(parts); i++ {
			q := strings.Join(parts[:i], "/")
			if e, ok := a.entries[q]; ok {
				if e.kind == regular {
					return nil, nil, a.errorf(ReasonContext, w.path, "cannot create %s: %s is a file", w.path, q)
				}
				if e.origKind == regular {
					onDisk = false // q is a file being deleted
					continue
				}
			}
			if !onDisk {
				continue
			}
			fi, err := a.root.Lstat(q)
			switch {
			case isNotExist(err):
				onDisk = false
			case err != nil:
				return nil, nil, fmt.Errorf("checking %s: %w", q, err)
			case fi.Mode()&fs.ModeSymlink != 0:
				return nil, nil, a.errorf(ReasonUnsafe, w.path, "%s is beyond a symbolic link (%s)", w.path, q)
			case !fi.IsDir():
				return nil, nil, a.errorf(ReasonContext, w.path, "cannot create %s: %s is not a directory", w.path, q)
			}
		}
		if w.origKind == directory {
			if err := a.checkEmptied(w.path); err != nil {
				return nil, nil, err
			}
		}
	}
	return deletes, writes, nil
}

// checkEmptied checks that every file under directory dir is deleted by
// the patch, so that the directory disappears and a file can take its
// place.
func (a *applier) checkEmptied(dir string) error {
	return fs.WalkDir(a.root.FS(), dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		if d.IsDir() {
			ents, err := fs.ReadDir(a.root.FS(), p)
			if err != nil {
				return fmt.Errorf("reading %s: %w", p, err)
			}
			if len(ents) == 0 {
				return a.errorf(ReasonExists, dir, "%s already exists as a directory", dir)
			}
			return nil
		}
		if e, ok := a.entries[p]; !ok || e.kind != absent || e.origKind != regular {
			return a.errorf(ReasonExists, dir, "%s already exists as a directory (containing %s)", dir, p)
		}
		return nil
	})
}

// commit writes the planned changes to the tree.
func (a *applier) commit(deletes, writes []*entry) error {
	for _, d := range deletes {
		if err := a.root.Remove(d.path); err != nil {
			return fmt.Errorf("deleting %s: %w", d.path, err)
		}
		// Remove directories the deletion left empty, as git apply does.
		for dir := path.Dir(d.path); dir != "."; dir = path.Dir(dir) {
			if a.root.Remove(dir) != nil {
				break
			}
		}
	}
	for n, w := range writes {
		if w.origKind == regular && bytes.Equal(w.data, w.origData) {
			if err := a.root.Chmod(w.path, w.perm); err != nil {
				return fmt.Errorf("changing mode of %s: %w", w.path, err)
			}
			continue
		}
		if err := a.mkdirs(path.Dir(w.path)); err != nil {
			return err
		}
		if err := a.writeFile(w.path, w.data, w.perm, n); err != nil {
			return err
		}
	}
	return nil
}

// mkdirs creates dir and its missing parents with mode 0755.
func (a *applier) mkdirs(dir string) error {
	if dir == "." {
		return nil
	}
	parts := strings.Split(dir, "/")
	for i := 1; i <= len(parts); i++ {
		q := strings.Join(parts[:i], "/")
		fi, err := a.root.Lstat(q)
		switch {
		case err == nil && fi.IsDir():
			continue
		case err == nil:
			return fmt.Errorf("creating directory %s: %s exists and is not a directory", dir, q)
		case !isNotExist(err):
			return fmt.Errorf("creating directory %s: %w", q, err)
		}
		if err := a.root.Mkdir(q, 0o755); err != nil {
			return fmt.Errorf("creating directory %s: %w", q, err)
		}
		if err := a.root.Chmod(q, 0o755); err != nil {
			return fmt.Errorf("creating directory %s: %w", q, err)
		}
	}
	return nil
}

// writeFile replaces p with data through a temporary file and a rename, so
// that a hard link is never written through and a reader never sees half a
// file.
func (a *applier) writeFile(p string, data []byte, perm fs.FileMode, n int) error {
	var (
		tmp string
		f   *os.File
		err error
	)
	for try := 0; ; try++ {
		tmp = path.Join(path.Dir(p), fmt.Sprintf(".vmbuild-patch-%d-%d-%d", os.Getpid(), n, try))
		f, err = a.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || try > 100 {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = a.root.Rename(tmp, p)
	}
	if err != nil {
		_ = a.root.Remove(tmp)
		return fmt.Errorf("writing %s: %w", p, err)
	}
	return nil
}

// stats builds the report's file list from the patch.
func (a *applier) stats() []FileStat {
	byPath := map[string]*FileStat{}
	var order []string
	for _, f := range a.p.Files {
		added, removed := f.Stats()
		op := f.Op
		if op == OpCopied {
			op = OpAdded
		}
		p := f.Path()
		if s, ok := byPath[p]; ok {
			s.Added += added
			s.Removed += removed
			if s.Op == OpMode || s.Op == OpModified {
				s.Op = op
			}
			continue
		}
		s := &FileStat{Path: p, Op: op, Added: added, Removed: removed}
		if op == OpRenamed {
			s.OldPath = f.OldPath
		}
		byPath[p] = s
		order = append(order, p)
	}
	out := make([]FileStat, 0, len(order))
	for _, p := range order {
		out = append(out, *byPath[p])
	}
	return out
}

// applyHunks applies hunks to data, which is the content of file.
func (a *applier) applyHunks(file string, data []byte, hunks []*Hunk) ([]byte, error) {
	if len(hunks) == 0 {
		return data, nil
	}
	lines := splitLines(data)
	out := make([]string, 0, len(lines)+8)
	cursor, delta := 0, 0
	for _, h := range hunks {
		old, new := h.oldNew()
		lead, trail := h.context()
		expected := h.OldStart - 1
		if h.OldLines == 0 {
			expected = h.OldStart
		}
		want := expected + delta
		hasContext := lead > 0 || trail > 0
		anchorStart := hasContext && h.OldStart <= 1
		anchorEnd := hasContext && trail == 0

		pos, fl, ft := -1, 0, 0
		prevFl, prevFt := -1, -1
	search:
		for f := 0; f <= a.o.fuzz; f++ {
			fl, ft = min(f, lead), min(f, trail)
			if fl == prevFl && ft == prevFt {
				continue
			}
			prevFl, prevFt = fl, ft
			oldT := old[fl : len(old)-ft]
			ok := func(p int) bool {
				if p < cursor || p+len(oldT) > len(lines) {
					return false
				}
				if anchorStart && p != fl {
					return false
				}
				if anchorEnd && p+len(oldT) != len(lines) {
					return false
				}
				for i, l := range oldT {
					if lines[p+i] != l {
						return false
					}
				}
				return true
			}
			base := want + fl
			if ok(base) {
				pos = base
				break search
			}
			if !a.o.offset {
				continue
			}
			// Try the other possible positions, nearest first.
			lo, hi := cursor, len(lines)-len(oldT)
			switch {
			case anchorStart:
				lo, hi = max(lo, fl), min(hi, fl)
			case anchorEnd:
				lo = max(lo, hi)
			}
			if lo > hi {
				continue
			}
			for d := max(1, base-hi, lo-base); base-d >= lo || base+d <= hi; d++ {
				if ok(base + d) {
					pos = base + d
					break search
				}
				if ok(base - d) {
					pos = base - d
					break search
				}
			}
		}
		if pos < 0 {
			return nil, a.hunkError(file, h, lines, old, want, cursor, anchorStart, anchorEnd)
		}
		if found := pos - fl; found != want || fl+ft > 0 {
			a.o.logger.Warn("hunk applied inexactly", "patch", a.p.Name, "file", file, "hunk", h.Range(),
				"offset", found-want, "fuzz", max(fl, ft))
		}
		out = append(out, lines[cursor:pos]...)
		out = append(out, new[fl:len(new)-ft]...)
		cursor = pos + len(old) - fl - ft
		delta = pos - fl - expected
	}
	out = append(out, lines[cursor:]...)
	n := 0
	for _, l := range out {
		n += len(l)
	}
	buf := make([]byte, 0, n)
	for _, l := range out {
		buf = append(buf, l...)
	}
	return buf, nil
}

// hunkError explains why h does not apply at line want (0-based).
func (a *applier) hunkError(file string, h *Hunk, lines, old []string, want, cursor int, anchorStart, anchorEnd bool) *Error {
	e := &Error{Patch: a.p.Name, Reason: ReasonHunk, File: file, Hunk: h.Header()}
	detail := ""
	want = max(want, 0)
	for i, ol := range old {
		j := want + i
		if j >= len(lines) {
			e.Line = j + 1
			detail = fmt.Sprintf("line %d: expected %s, found end of file", j+1, describeLine(ol))
			break
		}
		if lines[j] != ol {
			e.Line = j + 1
			detail = fmt.Sprintf("line %d: expected %s, found %s", j+1, describeLine(ol), describeLine(lines[j]))
			break
		}
	}
	if detail == "" {
		switch end := want + len(old); {
		case want < cursor:
			e.Line = want + 1
			detail = fmt.Sprintf("line %d: overlaps the previous hunk", want+1)
		case anchorStart && want != 0:
			e.Line = want + 1
			detail = fmt.Sprintf("line %d: expected the hunk at the start of the file", want+1)
		case anchorEnd && end < len(lines):
			e.Line = end + 1
			detail = fmt.Sprintf("line %d: expected end of file, found %s", end+1, describeLine(lines[end]))
		default:
			e.Line = want + 1
			detail = fmt.Sprintf("line %d", want+1)
		}
	}
	var tried []string
	if a.o.offset {
		tried = append(tried, "other lines")
	}
	if a.o.fuzz > 0 {
		tried = append(tried, fmt.Sprintf("fuzz %d", a.o.fuzz))
	}
	if len(tried) > 0 {
		detail += "; also tried " + strings.Join(tried, " and ")
	}
	e.Msg = fmt.Sprintf("hunk %s does not apply to %s (%s)", h.Range(), file, detail)
	return e
}

func describeLine(s string) string {
	nl := strings.HasSuffix(s, "\n")
	s = strings.TrimSuffix(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	q := fmt.Sprintf("%q", s)
	if !nl {
		q += " (no newline at end of file)"
	}
	return q
}

// splitLines splits data after each "\n"; the last line may lack one.
func splitLines(data []byte) []string {
	if len(data) == 0 {
		return nil
	}
	s := string(data)
	n := strings.Count(s, "\n")
	if !strings.HasSuffix(s, "\n") {
		n++
	}
	lines := make([]string, 0, n)
	for len(s) > 0 {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			lines = append(lines, s)
			break
		}
		lines = append(lines, s[:i+1])
		s = s[i+1:]
	}
	return lines
}
