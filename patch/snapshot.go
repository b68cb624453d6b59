package patch

import (
	"context"
	"crypto/sha256"
	"io"
	"io/fs"
	"os"
	"sort"
)

// Limits for keeping file contents in memory across a script run, to count
// changed lines afterwards. Files not kept are still compared by hash;
// their line counts are reported as 0.
const (
	maxKeepFile  = 4 << 20
	maxKeepTotal = 512 << 20
)

type snapEntry struct {
	mode fs.FileMode // type and permission bits
	hash [sha256.Size]byte
	size int64
	link string // symbolic link target
	data []byte // content, if kept
	kept bool
}

// snapshot records every file under root except .git directories. With
// keep, it keeps the content of files up to maxKeepFile, within
// *budget bytes in total.
func snapshot(ctx context.Context, root *os.Root, keep bool, budget *int64) (map[string]*snapEntry, error) {
	out := map[string]*snapEntry{}
	fsys := root.FS()
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
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
		e := &snapEntry{mode: fi.Mode(), size: fi.Size()}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if e.link, err = root.Readlink(p); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if keep && fi.Size() <= maxKeepFile && *budget >= fi.Size() {
				data, err := root.ReadFile(p)
				if err != nil {
					return err
				}
				e.hash, e.data, e.kept = sha256.Sum256(data), data, true
				*budget -= int64(len(data))
			} else {
				f, err := root.Open(p)
				if err != nil {
					return err
				}
				h := sha256.New()
				_, err = io.Copy(h, f)
				f.Close()
				if err != nil {
					return err
				}
				copy(e.hash[:], h.Sum(nil))
			}
		}
		out[p] = e
		return nil
	})
	return out, err
}

// compareSnapshots lists the changes from before to after. Content of new
// files is read from root when needed for line counts. A deleted and an
// added non-empty file with the same content and mode are a rename.
func compareSnapshots(root *os.Root, before, after map[string]*snapEntry) []FileStat {
	var paths []string
	for p := range before {
		paths = append(paths, p)
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)

	readNew := func(p string, e *snapEntry) ([]byte, bool) {
		if !e.mode.IsRegular() || e.size > maxKeepFile {
			return nil, false
		}
		data, err := root.ReadFile(p)
		if err != nil {
			return nil, false
		}
		return data, true
	}
	textLines := func(data []byte, ok bool) int {
		if !ok || isBinary(data) {
			return 0
		}
		return len(splitLines(data))
	}

	var files []FileStat
	var deleted, added []string
	for _, p := range paths {
		b, inB := before[p]
		a, inA := after[p]
		switch {
		case inB && !inA:
			deleted = append(deleted, p)
		case !inB && inA:
			added = append(added, p)
		case b.mode.Type() != a.mode.Type():
			files = append(files, FileStat{Path: p, Op: OpModified})
		case b.mode&fs.ModeSymlink != 0:
			if b.link != a.link {
				files = append(files, FileStat{Path: p, Op: OpModified})
			}
		case !b.mode.IsRegular():
		case b.hash != a.hash:
			fs := FileStat{Path: p, Op: OpModified}
			newData, ok := readNew(p, a)
			if b.kept && ok && !isBinary(b.data) && !isBinary(newData) {
				fs.Added, fs.Removed = countChanges(splitLines(b.data), splitLines(newData))
			}
			files = append(files, fs)
		case b.mode.Perm() != a.mode.Perm():
			files = append(files, FileStat{Path: p, Op: OpMode})
		}
	}

	// Exact renames.
	type key struct {
		hash [sha256.Size]byte
		perm fs.FileMode
	}
	byKey := map[key][]string{}
	for _, p := range added {
		if a := after[p]; a.mode.IsRegular() && a.size > 0 {
			k := key{a.hash, a.mode.Perm()}
			byKey[k] = append(byKey[k], p)
		}
	}
	renamedTo := map[string]string{} // new -> old
	renamedFrom := map[string]bool{}
	for _, p := range deleted {
		b := before[p]
		if !b.mode.IsRegular() || b.size == 0 {
			continue
		}
		k := key{b.hash, b.mode.Perm()}
		if c := byKey[k]; len(c) > 0 {
			renamedTo[c[0]] = p
			renamedFrom[p] = true
			byKey[k] = c[1:]
		}
	}
	for _, p := range deleted {
		if renamedFrom[p] {
			continue
		}
		b := before[p]
		n := 0
		if b.kept {
			n = textLines(b.data, true)
		}
		files = append(files, FileStat{Path: p, Op: OpDeleted, Removed: n})
	}
	for _, p := range added {
		if old, ok := renamedTo[p]; ok {
			files = append(files, FileStat{Path: p, OldPath: old, Op: OpRenamed})
			continue
		}
		data, ok := readNew(p, after[p])
		files = append(files, FileStat{Path: p, Op: OpAdded, Added: textLines(data, ok)})
	}
	return files
}
