package patch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// Seeds shared by the fuzz targets, besides testdata/fuzz/<Name>/.
var fuzzSeeds = []string{
	"--- a/a\n+++ b/a\n@@ -1,3 +1,3 @@\n 1\n-2\n+two\n 3\n",
	"diff --git a/a b/a\nold mode 100644\nnew mode 100755\n",
	"diff --git a/n b/n\nnew file mode 100644\n--- /dev/null\n+++ b/n\n@@ -0,0 +1 @@\n+x\n",
	"diff --git a/b b/b\ndeleted file mode 100644\n--- a/b\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-x\n-y\n",
	"diff --git a/a b/d/z\nsimilarity index 90%\nrename from a\nrename to d/z\n--- a/a\n+++ b/d/z\n@@ -4,2 +4,2 @@\n 4\n-5\n+five\n",
	"diff --git a/out/x b/out/x\nnew file mode 100644\n--- /dev/null\n+++ b/out/x\n@@ -0,0 +1 @@\n+pwned\n",
	"--- a/lf\n+++ b/lf\n@@ -1 +1 @@\n-sentinel\n+pwned\n",
	"diff --git a/in/c b/../outside/c\nrename from in/c\nrename to ../outside/c\n",
	"--- a/b\n+++ b/b\n@@ -2 +2 @@\n-y\n\\ No newline at end of file\n+y\n",
	"diff --git \"a/\\056git/x\" \"b/\\056git/x\"\nnew file mode 100644\n--- /dev/null\n+++ \"b/\\056git/x\"\n@@ -0,0 +1 @@\n+x\n",
	// Both names of a traditional diff are checked, and must be one file.
	"--- a/a\n+++ b/../outside/x\n@@ -1 +1 @@\n-1\n+pwned\n",
	"--- a/x\n+++ b/y\n@@ -1 +1 @@\n-1\n+2\n",
	"--- a/a.orig\n+++ b/a\n@@ -1 +1 @@\n-1\n+one\n",
	"--- a\n+++ /etc/passwd\n@@ -1 +1 @@\n-1\n+pwned\n",
	"--- a/../outside/sentinel\t1970-01-01 00:00:00.000000000 +0000\n+++ b/n\n@@ -0,0 +1 @@\n+x\n",
	"diff --git a/a b/d/z\nrename from a\nrename to d/z\n--- a/a\n+++ b/../outside/z\n@@ -4,2 +4,2 @@\n 4\n-5\n+five\n",
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	for _, name := range []string{"git.diff", "format.patch", "ruN.diff", "u.diff", "series.mbox"} {
		f.Add(readTestdata(f, name))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.patch", data)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Reason != ReasonParse {
				t.Fatalf("Parse error is not a parse *Error: %#v", err)
			}
			return
		}
		if len(p.Files) == 0 {
			t.Fatal("Parse succeeded without files")
		}
		for _, fd := range p.Files {
			// The two names of a traditional diff are one file, a file
			// and its backup, or include an unsafe name CheckSafe refuses.
			for _, x := range fd.extra {
				if fd.Git {
					t.Fatalf("git diff of %q has an unchecked name %q", fd.Path(), x.name)
				}
				related := backupPair(x.name, fd.Path()) || checkPath(x.name) != nil || checkPath(fd.Path()) != nil
				if fd.Op == OpModified && !related {
					t.Fatalf("diff of %q keeps an unrelated name %q", fd.Path(), x.name)
				}
			}
			switch fd.Op {
			case OpAdded:
				if fd.OldPath != "" || fd.NewPath == "" {
					t.Fatalf("added file paths %q %q", fd.OldPath, fd.NewPath)
				}
			case OpDeleted:
				if fd.NewPath != "" || fd.OldPath == "" {
					t.Fatalf("deleted file paths %q %q", fd.OldPath, fd.NewPath)
				}
			case OpModified, OpMode, OpRenamed, OpCopied:
				if fd.OldPath == "" || fd.NewPath == "" {
					t.Fatalf("%s paths %q %q", fd.Op, fd.OldPath, fd.NewPath)
				}
			default:
				t.Fatalf("op %q", fd.Op)
			}
			prevEnd := 0
			for _, h := range fd.Hunks {
				old, new := h.oldNew()
				if len(old) != h.OldLines || len(new) != h.NewLines {
					t.Fatalf("hunk %s has %d old and %d new lines", h.Range(), len(old), len(new))
				}
				begin := h.OldStart - 1
				if h.OldLines == 0 {
					begin = h.OldStart
				}
				if begin < prevEnd {
					t.Fatalf("hunks out of order")
				}
				prevEnd = begin + h.OldLines
			}
		}
		// CheckSafe must not panic, and a safe patch has only clean paths.
		if p.CheckSafe() == nil {
			for _, fd := range p.Files {
				paths := []string{fd.OldPath, fd.NewPath}
				for _, x := range fd.extra {
					paths = append(paths, x.name)
				}
				for _, path := range paths {
					if path != "" && (filepath.IsAbs(path) || filepath.Clean(path) != path || path == ".." || len(path) >= 3 && path[:3] == "../") {
						t.Fatalf("CheckSafe accepted %q", path)
					}
				}
			}
		}
	})
}

// fuzzTree is the tree FuzzApply patches: files, and symbolic links that
// lead out of it.
var fuzzTree = files{
	"a":    "1\n2\n3\n4\n5\n",
	"b":    "x\ny",
	"d/c":  "c\n",
	"exe*": "#!/bin/sh\n",
}

func FuzzApply(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), false, uint8(0))
		f.Add([]byte(s), true, uint8(3))
	}
	f.Add(readTestdata(f, "git.diff"), true, uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, offset bool, fuzz uint8) {
		// Patches that do not parse never touch a tree (ApplyDiff parses
		// before opening it); FuzzParse covers them. Skipping them here
		// keeps the sandbox set-up for inputs that can write.
		if _, err := Parse("fuzz.patch", data); err != nil {
			return
		}
		parent := t.TempDir()
		tree := filepath.Join(parent, "tree")
		outside := filepath.Join(parent, "outside")
		writeTree(t, outside, files{"sentinel": "sentinel\n"})
		writeTree(t, tree, fuzzTree)
		for name, target := range map[string]string{"out": outside, "lf": filepath.Join(outside, "sentinel"), "rel": "../outside", "in": "d"} {
			if err := os.Symlink(target, filepath.Join(tree, name)); err != nil {
				t.Fatal(err)
			}
		}
		before := readTree(t, tree)

		r, err := ApplyDiff(context.Background(), tree, "fuzz.patch", data, WithOffset(offset), WithFuzz(int(fuzz%4)))
		if err != nil {
			t.Fatalf("internal error: %v", err)
		}

		// Nothing outside the tree may change.
		ents, err := os.ReadDir(parent)
		if err != nil || len(ents) != 2 {
			t.Fatalf("entries next to the tree: %v %v", ents, err)
		}
		out := readTree(t, outside)
		if len(out) != 1 || out["sentinel"] != "sentinel\n" {
			t.Fatalf("outside changed: %v", out)
		}
		after := readTree(t, tree)
		for _, l := range []string{"out", "lf", "rel", "in"} {
			if after[l] != before[l] {
				t.Fatalf("symbolic link %s changed: %q", l, after[l])
			}
		}
		switch r.Status {
		case StatusApplied:
			if r.Failure != nil || r.Err("c") != nil {
				t.Fatalf("applied with failure %+v", r.Failure)
			}
		case StatusFailed, StatusNoop:
			if r.Failure == nil || r.Err("c") == nil {
				t.Fatalf("%s without failure", r.Status)
			}
			// A patch that did not apply leaves the tree as it was.
			if len(after) != len(before) {
				t.Fatalf("failed patch changed the tree: %v", after)
			}
			for k, v := range before {
				if after[k] != v {
					t.Fatalf("failed patch changed %s", k)
				}
			}
		default:
			t.Fatalf("status %q", r.Status)
		}
	})
}
