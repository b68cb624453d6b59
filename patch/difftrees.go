package patch

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
)

// DiffTrees returns a `git diff`-style unified diff that turns the tree at
// oldDir into the tree at newDir: "diff --git a/P b/P" headers, "new file
// mode", "deleted file mode" and "old mode"/"new mode" lines, 3 lines of
// context, files in byte order of their paths, no index lines. The output
// is deterministic and is accepted by [Parse] and [Patch.Apply] (and by
// git apply).
//
// Only regular files are compared; only the executable bit of their mode
// counts, as in git. Directories named .git are skipped, and so are empty
// directories. Files that differ and are binary (a NUL byte in the first
// 8000 bytes) and symbolic links that differ cannot be expressed and make
// DiffTrees fail.
func DiffTrees(ctx context.Context, oldDir, newDir string) ([]byte, error) {
	oldRoot, err := os.OpenRoot(oldDir)
	if err != nil {
		return nil, fmt.Errorf("diffing trees: opening %s: %w", oldDir, err)
	}
	defer oldRoot.Close()
	newRoot, err := os.OpenRoot(newDir)
	if err != nil {
		return nil, fmt.Errorf("diffing trees: opening %s: %w", newDir, err)
	}
	defer newRoot.Close()
	oldFiles, err := listTree(ctx, oldRoot)
	if err != nil {
		return nil, fmt.Errorf("diffing trees: listing %s: %w", oldDir, err)
	}
	newFiles, err := listTree(ctx, newRoot)
	if err != nil {
		return nil, fmt.Errorf("diffing trees: listing %s: %w", newDir, err)
	}
	var paths []string
	for p := range oldFiles {
		paths = append(paths, p)
	}
	for p := range newFiles {
		if _, ok := oldFiles[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)

	var buf bytes.Buffer
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("diffing trees: %w", err)
		}
		o, inOld := oldFiles[p]
		n, inNew := newFiles[p]
		if (inOld && !o.Mode().IsRegular()) || (inNew && !n.Mode().IsRegular()) {
			if inOld && inNew && o.Mode().Type() == n.Mode().Type() && o.Mode().Type() == fs.ModeSymlink {
				t1, err1 := oldRoot.Readlink(p)
				t2, err2 := newRoot.Readlink(p)
				if err1 == nil && err2 == nil && t1 == t2 {
					continue
				}
			}
			return nil, fmt.Errorf("diffing trees: %s: changes to symbolic links and special files cannot be expressed as a patch", p)
		}
		var oldData, newData []byte
		if inOld {
			if oldData, err = oldRoot.ReadFile(p); err != nil {
				return nil, fmt.Errorf("diffing trees: %w", err)
			}
		}
		if inNew {
			if newData, err = newRoot.ReadFile(p); err != nil {
				return nil, fmt.Errorf("diffing trees: %w", err)
			}
		}
		oldMode, newMode := gitMode(o), gitMode(n)
		if inOld && inNew && oldMode == newMode && bytes.Equal(oldData, newData) {
			continue
		}
		if !bytes.Equal(oldData, newData) && (isBinary(oldData) || isBinary(newData)) {
			return nil, fmt.Errorf("diffing trees: %s: binary files cannot be expressed as a patch", p)
		}
		aName, bName := quoteName("a/"+p), quoteName("b/"+p)
		fmt.Fprintf(&buf, "diff --git %s %s\n", aName, bName)
		switch {
		case !inOld:
			fmt.Fprintf(&buf, "new file mode %06o\n", newMode)
			aName = devNull
		case !inNew:
			fmt.Fprintf(&buf, "deleted file mode %06o\n", oldMode)
			bName = devNull
		case oldMode != newMode:
			fmt.Fprintf(&buf, "old mode %06o\nnew mode %06o\n", oldMode, newMode)
		}
		if bytes.Equal(oldData, newData) {
			continue
		}
		fmt.Fprintf(&buf, "--- %s%s\n+++ %s%s\n", aName, nameTab(aName), bName, nameTab(bName))
		writeHunks(&buf, splitLines(oldData), splitLines(newData), 3)
	}
	return buf.Bytes(), nil
}

// listTree lists the files (not directories) under root, skipping .git.
func listTree(ctx context.Context, root *os.Root) (map[string]fs.FileInfo, error) {
	out := map[string]fs.FileInfo{}
	err := fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p != "." && isDotGit(d.Name()) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out[p] = fi
		return nil
	})
	return out, err
}

func gitMode(fi fs.FileInfo) uint32 {
	if fi == nil {
		return 0
	}
	if fi.Mode().Perm()&0o111 != 0 {
		return ModeExecutable
	}
	return ModeRegular
}

func isBinary(data []byte) bool {
	return bytes.IndexByte(data[:min(len(data), 8000)], 0) >= 0
}

// nameTab returns the tab git puts after a name with a space in ---/+++
// lines, so that readers know where the name ends.
func nameTab(name string) string {
	if strings.HasPrefix(name, `"`) || !strings.Contains(name, " ") {
		return ""
	}
	return "\t"
}

// quoteName quotes a path the way git does with core.quotePath=true:
// C-style, when it contains a quote, backslash, control character or a
// byte outside ASCII.
func quoteName(s string) string {
	need := false
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			need = true
			break
		}
	}
	if !need {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\a':
			b.WriteString(`\a`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\v':
			b.WriteString(`\v`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		default:
			if c < 0x20 || c >= 0x7f {
				fmt.Fprintf(&b, `\%03o`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// writeHunks writes the unified diff hunks that turn a into b, with ctx
// lines of context.
func writeHunks(buf *bytes.Buffer, a, b []string, ctx int) {
	es := editScript(lineDiff(a, b))
	i, prevEnd := 0, 0
	for i < len(es) {
		for i < len(es) && es[i].kind == editEqual {
			i++
		}
		if i == len(es) {
			return
		}
		start := max(i-ctx, prevEnd)
		last := i // last change in the hunk
		for j := i; j < len(es); {
			if es[j].kind != editEqual {
				last = j
				j++
				continue
			}
			r := 0
			for j+r < len(es) && es[j+r].kind == editEqual {
				r++
			}
			if j+r == len(es) || r > 2*ctx {
				break
			}
			j += r
		}
		end := min(last+1+ctx, len(es))
		oldN, newN := 0, 0
		for _, e := range es[start:end] {
			if e.kind != editInsert {
				oldN++
			}
			if e.kind != editDelete {
				newN++
			}
		}
		oldStart, newStart := es[start].a, es[start].b
		if oldN > 0 {
			oldStart++
		}
		if newN > 0 {
			newStart++
		}
		fmt.Fprintf(buf, "@@ -%s +%s @@\n", fmtRange(oldStart, oldN), fmtRange(newStart, newN))
		for _, e := range es[start:end] {
			var line string
			switch e.kind {
			case editInsert:
				line = b[e.b]
			default:
				line = a[e.a]
			}
			buf.WriteByte(byte(e.kind))
			buf.WriteString(line)
			if !strings.HasSuffix(line, "\n") {
				buf.WriteString("\n\\ No newline at end of file\n")
			}
		}
		prevEnd = end
		i = end
	}
}
