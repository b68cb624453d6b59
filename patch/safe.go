package patch

import (
	"fmt"
	"strings"
)

// CheckSafe refuses a patch that could write outside the tree or into
// git metadata, before anything is applied. It checks every path the patch
// names (old and new, rename and copy sources included, and both names of
// a traditional diff even when only one is patched, as in
// "diff -u x.orig x") and refuses symbolic-link diffs. It does not look at
// the tree: the links and directories a patch would write through are
// checked when it is applied. The error is an [*Error] with Reason
// ReasonUnsafe, wrapping errs.ErrUnsafePatch; its Line is the line where
// the file's diff starts or, for a name that is not patched, the line
// that names it.
func (p *Patch) CheckSafe() error {
	for _, f := range p.Files {
		var paths []string
		if f.Op != OpAdded {
			paths = append(paths, f.OldPath)
		}
		if f.Op != OpDeleted {
			paths = append(paths, f.NewPath)
		}
		for _, path := range paths {
			if err := checkPath(path); err != nil {
				return &Error{Patch: p.Name, Reason: ReasonUnsafe, File: truncate(path, 256), Line: f.Line,
					Msg: fmt.Sprintf("unsafe path %q: %v", truncate(path, 256), err)}
			}
		}
		for _, x := range f.extra {
			if err := checkPath(x.name); err != nil {
				return &Error{Patch: p.Name, Reason: ReasonUnsafe, File: truncate(x.name, 256), Line: x.line,
					Msg: fmt.Sprintf("unsafe path %q on line %d (the diff of %s): %v", truncate(x.name, 256), x.line, truncate(f.Path(), 256), err)}
			}
		}
		if f.OldMode == ModeSymlink || f.NewMode == ModeSymlink {
			return &Error{Patch: p.Name, Reason: ReasonUnsafe, File: f.Path(),
				Msg: fmt.Sprintf("%s is a symbolic link (mode 120000): symbolic links cannot be patched", f.Path())}
		}
	}
	return nil
}

// Limits on path length (Linux PATH_MAX and NAME_MAX).
const (
	maxPath = 4095
	maxName = 255
)

// checkPath is the lexical safety check of one path from a patch.
func checkPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty path")
	case len(p) > maxPath:
		return fmt.Errorf("longer than %d bytes", maxPath)
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("contains a NUL byte")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("absolute path")
	case strings.IndexByte(p, '\\') >= 0:
		return fmt.Errorf("contains a backslash")
	}
	for _, c := range strings.Split(p, "/") {
		if len(c) > maxName {
			return fmt.Errorf("has a component longer than %d bytes", maxName)
		}
		switch c {
		case "":
			return fmt.Errorf("empty path component")
		case ".":
			return fmt.Errorf("contains a \".\" component")
		case "..":
			return fmt.Errorf("contains a \"..\" component")
		}
		if isDotGit(c) {
			return fmt.Errorf("writes into git metadata (%q component)", c)
		}
	}
	return nil
}

// isDotGit reports whether a path component could name the .git
// directory on some file system: any case (.GIT), trailing dots or spaces
// (NTFS strips them), NTFS alternate streams (".git::$INDEX_ALLOCATION"),
// the NTFS short name GIT~1, and HFS+ ignorable code points (".g\u200cit").
func isDotGit(c string) bool {
	var b strings.Builder
	for _, r := range c {
		if hfsIgnorable(r) {
			continue
		}
		b.WriteRune(r)
	}
	s := strings.ToLower(b.String())
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimRight(s, ". ")
	return s == ".git" || s == "git~1"
}

// hfsIgnorable lists the code points HFS+ ignores when comparing names
// (as git's is_hfs_dotgit does).
func hfsIgnorable(r rune) bool {
	switch {
	case r == 0x200c, r == 0x200d, r == 0x200e, r == 0x200f:
		return true
	case r >= 0x202a && r <= 0x202e:
		return true
	case r >= 0x206a && r <= 0x206f:
		return true
	case r == 0xfeff:
		return true
	}
	return false
}
