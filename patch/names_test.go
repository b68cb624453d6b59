package patch

import (
	"errors"
	"strings"
	"testing"

	"github.com/vmbuild/vmbuild/errs"
)

// The second name of a traditional diff used to be dropped unchecked: the
// name not patched is now checked by CheckSafe, and the two names must be
// one file (or a file and its backup).

func TestApplyTraditionalBackupName(t *testing.T) {
	tests := []struct{ name, diff string }{
		{"a/x.orig b/x", "--- a/x.orig\n+++ b/x\n@@ -1 +1 @@\n-old\n+new\n"},
		{"x.orig x, p0", "--- x.orig\t2024-01-01 00:00:00.000000000 +0100\n+++ x\t2024-01-01 00:00:00.000000000 +0100\n@@ -1 +1 @@\n-old\n+new\n"},
		{"x x~", "--- x\n+++ x~\n@@ -1 +1 @@\n-old\n+new\n"},
		{"a/x~ b/x", "--- a/x~\n+++ b/x\n@@ -1 +1 @@\n-old\n+new\n"},
		{"x.bak x", "--- x.bak\n+++ x\n@@ -1 +1 @@\n-old\n+new\n"},
		{"x x.new", "--- x\n+++ x.new\n@@ -1 +1 @@\n-old\n+new\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, files{"x": "old\n", "y": "y\n"})
			r := applyString(t, dir, "fix.patch", tt.diff)
			if r.Status != StatusApplied || r.Failure != nil {
				t.Fatalf("report %+v %+v", r, r.Failure)
			}
			if len(r.Files) != 1 || r.Files[0].Path != "x" || r.Files[0].Op != OpModified {
				t.Errorf("files %+v", r.Files)
			}
			assertTree(t, dir, files{"x": "new\n", "y": "y\n"})
		})
	}
}

func TestCheckSafeChecksBothNames(t *testing.T) {
	tests := []struct {
		name string
		diff string
		file string // the unsafe name
		line int
		msg  string
	}{
		{"second name escapes", "--- a/a\n+++ b/../outside/x\n@@ -1 +1 @@\n-a\n+b\n",
			"../outside/x", 2, `".." component`},
		{"first name escapes", "--- a/../outside/sentinel\n+++ b/a\n@@ -1 +1 @@\n-a\n+b\n",
			"../outside/sentinel", 1, `".." component`},
		{"absolute second name", "--- a/ok.txt\n+++ /etc/passwd\n@@ -1 +1 @@\n-ok\n+pwned\n",
			"/etc/passwd", 2, "absolute path"},
		{"absolute second name, p0", "--- ok.txt\n+++ /etc/passwd\n@@ -1 +1 @@\n-ok\n+pwned\n",
			"/etc/passwd", 2, "absolute path"},
		{"backup name into .git", "--- .git/x\n+++ x\n@@ -1 +1 @@\n-a\n+b\n",
			".git/x", 1, "git metadata"},
		{"old name of a diff -N creation", "--- a/../outside/sentinel\t1970-01-01 00:00:00.000000000 +0000\n+++ b/new\t2024-01-01 00:00:00.000000000 +0000\n@@ -0,0 +1 @@\n+x\n",
			"../outside/sentinel", 1, `".." component`},
		{"new name of a diff -N deletion", "--- a/ok.txt\t2024-01-01 00:00:00.000000000 +0000\n+++ /tmp/x\t1970-01-01 00:00:00.000000000 +0000\n@@ -1 +0,0 @@\n-ok\n",
			"/tmp/x", 2, "absolute path"},
		{"second file of a series", "--- a/ok.txt\n+++ b/ok.txt\n@@ -1 +1 @@\n-ok\n+ok2\n--- a/y\n+++ b/../../y\n@@ -1 +1 @@\n-a\n+b\n",
			"../../y", 7, `".." component`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("evil.patch", []byte(tt.diff))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			err = p.CheckSafe()
			var pe *Error
			if !errors.As(err, &pe) || pe.Reason != ReasonUnsafe || !errors.Is(err, errs.ErrUnsafePatch) {
				t.Fatalf("CheckSafe = %#v", err)
			}
			if pe.File != tt.file || pe.Line != tt.line || pe.Patch != "evil.patch" {
				t.Errorf("file %q line %d patch %q, want %q line %d", pe.File, pe.Line, pe.Patch, tt.file, tt.line)
			}
			if !strings.Contains(err.Error(), tt.msg) || !strings.HasPrefix(err.Error(), `patch "evil.patch": unsafe path `) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}

			// Applied, nothing outside the tree (or inside) changes.
			s := newSandbox(t, files{"ok.txt": "ok\n", "a": "a\n"})
			before := readTree(t, s.tree)
			r := applyString(t, s.tree, "evil.patch", tt.diff, WithOffset(true), WithFuzz(3))
			if r.Status != StatusFailed || r.Failure == nil || r.Failure.Reason != ReasonUnsafe || r.Failure.Line != tt.line {
				t.Fatalf("report %+v %+v", r, r.Failure)
			}
			s.check(t)
			assertTree(t, s.tree, before)
		})
	}
}

func TestParseRefusesUnrelatedNames(t *testing.T) {
	tests := []struct {
		name string
		diff string
		want string
		line int
	}{
		{"a/x b/y", "--- a/x\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n", `unrelated files "x" and "y"`, 1},
		{"p0", "--- x\n+++ y\n@@ -1 +1 @@\n-a\n+b\n", `unrelated files "x" and "y"`, 1},
		{"other directory", "--- a/src/x.c\n+++ b/lib/x.c\n@@ -1 +1 @@\n-a\n+b\n", `unrelated files "src/x.c" and "lib/x.c"`, 1},
		{"suffix is not a backup suffix", "--- a/x.c\n+++ b/x.cpp\n@@ -1 +1 @@\n-a\n+b\n", "unrelated files", 1},
		{"backup suffix of another file", "--- a/x.orig\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n", "unrelated files", 1},
		{"diff -N creation", "--- a/x\t1970-01-01 00:00:00.000000000 +0000\n+++ b/y\t2024-01-01 00:00:00.000000000 +0000\n@@ -0,0 +1 @@\n+x\n", "unrelated files", 1},
		{"second file of a series", "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n--- a/z\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n", "unrelated files", 6},
		// git diffs: the ---/+++ and diff --git names of a rename or copy
		// must be its source and target, as git apply requires.
		{"git rename, +++ escapes", "diff --git a/x b/y\nrename from x\nrename to y\n--- a/x\n+++ b/../outside/y\n@@ -1 +1 @@\n-a\n+b\n",
			`file name "b/../outside/y" in the +++ line does not match "y" in the "rename to" line`, 5},
		{"git rename, --- is another file", "diff --git a/x b/y\nsimilarity index 90%\nrename from x\nrename to y\n--- a/z\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n",
			`file name "a/z" in the --- line does not match "x" in the "rename from" line`, 5},
		{"git copy, quoted header is another file", "diff --git \"a/x\" \"b/../z\"\ncopy from x\ncopy to y\n",
			`file name "b/../z" in the diff --git line does not match "y" in the "copy to" line`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("bad.patch", []byte(tt.diff))
			var pe *Error
			if !errors.As(err, &pe) || pe.Reason != ReasonParse || pe.Line != tt.line || !errors.Is(err, errs.ErrPatchFailed) {
				t.Fatalf("Parse = %#v, want a parse error on line %d", err, tt.line)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), `patch "bad.patch": line `) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestParseRelatedNames(t *testing.T) {
	tests := []struct {
		name string
		diff string
		want []string
	}{
		{"a/x.orig b/x", "--- a/x.orig\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n", []string{`modified "x" -> "x" hunks=1`}},
		{"dir/x~ dir/x", "--- dir/x~\n+++ dir/x\n@@ -1 +1 @@\n-a\n+b\n", []string{`modified "dir/x" -> "dir/x" hunks=1`}},
		{"x x.old swapped", "--- x.old\n+++ x\n@@ -1 +1 @@\n-a\n+b\n", []string{`modified "x" -> "x" hunks=1`}},
		{"diff -ruN tree.orig tree", "--- tree.orig/x\n+++ tree/x\n@@ -1 +1 @@\n-a\n+b\n", []string{`modified "x" -> "x" hunks=1`}},
		{"git rename with no-prefix lines", "diff --git d/x e/x\nrename from d/x\nrename to e/x\n--- d/x\n+++ e/x\n@@ -1 +1 @@\n-a\n+b\n",
			[]string{`renamed "d/x" -> "e/x" hunks=1`}},
		{"git copy, mnemonic prefixes", "diff --git c/x i/y\ncopy from x\ncopy to y\n--- c/x\n+++ i/y\n@@ -1 +1 @@\n-a\n+b\n",
			[]string{`copied "x" -> "y" hunks=1`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("t.patch", []byte(tt.diff))
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(p); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if err := p.CheckSafe(); err != nil {
				t.Errorf("CheckSafe: %v", err)
			}
		})
	}
}
