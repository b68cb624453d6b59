package patch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vmbuild/vmbuild/errs"
)

func TestApplyFixtures(t *testing.T) {
	ruNAfter := copyFiles(fixtureAfter)
	delete(ruNAfter, "lib/empty.rb") // diff -N does not show empty new files
	delete(ruNAfter, "run.sh*")      // nor mode changes
	ruNAfter["run.sh"] = "plain\n"
	uAfter := copyFiles(fixtureBefore)
	uAfter["lib/numbers.txt"] = fixtureAfter["lib/numbers.txt"]
	seriesAfter := copyFiles(fixtureAfter)
	seriesAfter["Gemfile"] += "gem \"sidekiq\"\n"

	gitStats := []FileStat{
		{Path: "Gemfile", Op: OpModified, Removed: 2},
		{Path: "app/lib/nonl.txt", Op: OpModified, Added: 1, Removed: 1},
		{Path: "app/tést.txt", Op: OpModified, Added: 1},
		{Path: "app/with space.txt", Op: OpModified, Added: 1},
		{Path: "lib/empty.rb", Op: OpAdded},
		{Path: "lib/moved.rb", OldPath: "lib/moveme.rb", Op: OpRenamed, Added: 1, Removed: 1},
		{Path: "lib/new.rb", Op: OpAdded, Added: 1},
		{Path: "lib/numbers.txt", Op: OpModified, Added: 2, Removed: 2},
		{Path: "lib/old.rb", Op: OpDeleted, Removed: 2},
		{Path: "run.sh", Op: OpMode},
	}
	tests := []struct {
		file  string
		want  files
		stats []FileStat
	}{
		{"git.diff", fixtureAfter, gitStats},
		{"format.patch", fixtureAfter, gitStats},
		{"series.mbox", seriesAfter, nil},
		{"ruN.diff", ruNAfter, nil},
		{"u.diff", uAfter, []FileStat{{Path: "lib/numbers.txt", Op: OpModified, Added: 2, Removed: 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, fixtureBefore)
			r, err := ApplyDiff(context.Background(), dir, tt.file, readTestdata(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != StatusApplied || r.Failure != nil || r.Kind != KindDiff || r.Patch != tt.file {
				t.Fatalf("report %+v %+v", r, r.Failure)
			}
			if err := r.Err("2f40549d"); err != nil {
				t.Errorf("Err = %v", err)
			}
			assertTree(t, dir, tt.want)
			if tt.stats != nil && !reflect.DeepEqual(r.Files, tt.stats) {
				t.Errorf("files\n%+v\nwant\n%+v", r.Files, tt.stats)
			}
			// lib/old.rb was deleted: its directory stays (other files);
			// no temporary files are left behind.
			for _, d := range listDirs(t, dir) {
				if d != "app" && d != "app/lib" && d != "lib" {
					t.Errorf("unexpected directory %s", d)
				}
			}
		})
	}
	if s := (&Report{Files: make([]FileStat, 3), Added: 4, Removed: 7}).Summary(); s != "3 files, +4 -7" {
		t.Errorf("Summary = %q", s)
	}
}

// gemfileLock is a Gemfile.lock excerpt; the patch below was made against
// Mastodon 4.1.2's, and upstream main changed hiredis to hiredis-client.
const gemfileLock412 = `    fugit (1.7.1)
      et-orbi (~> 1, >= 1.2.7)
      raabro (~> 1.4)
    globalid (1.1.0)
      activesupport (>= 5.0)
    hashdiff (1.0.1)
    hashie (5.0.0)
    highline (2.0.3)
    hiredis (0.6.3)
    hkdf (0.3.0)
    html2text (0.2.1)
      nokogiri (~> 1.6)
    htmlentities (4.3.4)
    http (5.1.1)
`

const dropHiredis = `diff --git a/Gemfile.lock b/Gemfile.lock
index 1..2 100644
--- a/Gemfile.lock
+++ b/Gemfile.lock
@@ -6,7 +6,6 @@ GEM
     hashdiff (1.0.1)
     hashie (5.0.0)
     highline (2.0.3)
-    hiredis (0.6.3)
     hkdf (0.3.0)
     html2text (0.2.1)
       nokogiri (~> 1.6)
`

func TestApplyExactAndStrict(t *testing.T) {
	t.Run("applies", func(t *testing.T) {
		dir := t.TempDir()
		writeTree(t, dir, files{"Gemfile.lock": gemfileLock412})
		r := applyString(t, dir, "drop-hiredis.patch", dropHiredis)
		if r.Status != StatusApplied {
			t.Fatalf("%+v", r.Failure)
		}
		assertTree(t, dir, files{"Gemfile.lock": strings.Replace(gemfileLock412, "    hiredis (0.6.3)\n", "", 1)})
		if r.Summary() != "1 file, +0 -1" {
			t.Errorf("summary %q", r.Summary())
		}
	})
	t.Run("context changed upstream", func(t *testing.T) {
		dir := t.TempDir()
		main := strings.Replace(gemfileLock412, "hiredis (0.6.3)", "hiredis-client (0.30.1)", 1)
		writeTree(t, dir, files{"Gemfile.lock": main})
		r := applyString(t, dir, "drop-hiredis.patch", dropHiredis)
		if r.Status != StatusFailed || r.Failure.Reason != ReasonHunk {
			t.Fatalf("report %+v", r)
		}
		f := r.Failure
		if f.File != "Gemfile.lock" || f.Hunk != "@@ -6,7 +6,6 @@ GEM" || f.Line != 9 {
			t.Errorf("failure %+v", f)
		}
		err := r.Err("2f40549d6b1bd1c3f1b6b4d1e1b0f0a8c3b2a1d0")
		want := `patch "drop-hiredis.patch" failed at commit 2f40549d: hunk @@ -6,7 +6,6 @@ does not apply to Gemfile.lock (line 9: expected "    hiredis (0.6.3)", found "    hiredis-client (0.30.1)")`
		if err == nil || err.Error() != want {
			t.Errorf("Err =\n%v\nwant\n%s", err, want)
		}
		if !errors.Is(err, errs.ErrPatchFailed) || errors.Is(err, errs.ErrUnsafePatch) {
			t.Errorf("Err does not wrap ErrPatchFailed only")
		}
		assertTree(t, dir, files{"Gemfile.lock": main})
	})
}

func TestApplyOffsetAndFuzz(t *testing.T) {
	base := numbers(1, 30, nil)
	// The hunk changes line 10; context lines 7-9 and 11-13.
	diff := "--- a/f\n+++ b/f\n@@ -7,7 +7,7 @@\n line 7\n line 8\n line 9\n-line 10\n+line ten\n line 11\n line 12\n line 13\n"
	shifted := "inserted 1\ninserted 2\n" + base                   // the hunk is now 2 lines lower
	fuzzed := strings.Replace(base, "line 7\n", "line seven\n", 1) // first context line changed
	both := "inserted\n" + fuzzed
	tests := []struct {
		name   string
		tree   string
		opts   []Option
		ok     bool
		result string
	}{
		{"exact", base, nil, true, strings.Replace(base, "line 10\n", "line ten\n", 1)},
		{"moved, strict", shifted, nil, false, ""},
		{"moved, offset", shifted, []Option{WithOffset(true)}, true, strings.Replace(shifted, "line 10\n", "line ten\n", 1)},
		{"context changed, strict", fuzzed, nil, false, ""},
		{"context changed, offset only", fuzzed, []Option{WithOffset(true)}, false, ""},
		{"context changed, fuzz 1", fuzzed, []Option{WithFuzz(1)}, true, strings.Replace(fuzzed, "line 10\n", "line ten\n", 1)},
		{"moved and context changed, fuzz 1", both, []Option{WithFuzz(1)}, false, ""},
		{"moved and context changed, fuzz 1 + offset", both, []Option{WithFuzz(1), WithOffset(true)}, true, strings.Replace(both, "line 10\n", "line ten\n", 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, files{"f": tt.tree})
			r := applyString(t, dir, "p", diff, tt.opts...)
			if tt.ok {
				if r.Status != StatusApplied {
					t.Fatalf("failed: %+v", r.Failure)
				}
				assertTree(t, dir, files{"f": tt.result})
				return
			}
			if r.Status != StatusFailed || r.Failure.Reason != ReasonHunk || r.Failure.Hunk != "@@ -7,7 +7,7 @@" {
				t.Fatalf("report %+v %+v", r, r.Failure)
			}
			assertTree(t, dir, files{"f": tt.tree})
		})
	}

	t.Run("nearest offset wins", func(t *testing.T) {
		// Two places match; the one nearer the header's line is used.
		tree := "x\na\nb\nc\nx\nx\nx\na\nb\nc\n"
		d := "--- a/f\n+++ b/f\n@@ -7,3 +7,3 @@\n a\n-b\n+B\n c\n"
		dir := t.TempDir()
		writeTree(t, dir, files{"f": tree})
		r := applyString(t, dir, "p", d, WithOffset(true))
		if r.Status != StatusApplied {
			t.Fatalf("%+v", r.Failure)
		}
		assertTree(t, dir, files{"f": "x\na\nb\nc\nx\nx\nx\na\nB\nc\n"})
	})
	t.Run("appending at end stays at end", func(t *testing.T) {
		// A hunk without trailing context must match the end of file.
		d := "--- a/f\n+++ b/f\n@@ -1,2 +1,3 @@\n a\n b\n+c\n"
		dir := t.TempDir()
		writeTree(t, dir, files{"f": "a\nb\nmore\n"})
		r := applyString(t, dir, "p", d, WithOffset(true))
		if r.Status != StatusFailed || !strings.Contains(r.Failure.Message, "expected end of file") {
			t.Fatalf("report %+v %+v", r, r.Failure)
		}
	})
	t.Run("bad fuzz", func(t *testing.T) {
		if _, err := ApplyDiff(context.Background(), t.TempDir(), "p", []byte(diff), WithFuzz(4)); !errors.Is(err, errs.ErrUsage) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestApplyFailures(t *testing.T) {
	tree := files{
		"a.txt":     "one\ntwo\nthree\n",
		"b.txt":     "alpha\nbeta\n",
		"dir/c.txt": "c\n",
	}
	tests := []struct {
		name   string
		diff   string
		opts   []Option
		reason Reason
		file   string
		msg    string
		status Status
	}{
		{"missing file", "--- a/nope.txt\n+++ b/nope.txt\n@@ -1 +1 @@\n-a\n+b\n", nil, ReasonMissingFile, "nope.txt", "nope.txt does not exist", StatusFailed},
		{"missing rename source", "diff --git a/nope b/new\nrename from nope\nrename to new\n", nil, ReasonMissingFile, "nope", "does not exist", StatusFailed},
		{"creating existing file", "diff --git a/a.txt b/a.txt\nnew file mode 100644\n--- /dev/null\n+++ b/a.txt\n@@ -0,0 +1 @@\n+x\n", nil, ReasonExists, "a.txt", "a.txt already exists", StatusFailed},
		{"rename onto existing file", "diff --git a/a.txt b/b.txt\nrename from a.txt\nrename to b.txt\n", nil, ReasonExists, "b.txt", "already exists", StatusFailed},
		{"modifying a directory", "--- a/dir\n+++ b/dir\n@@ -1 +1 @@\n-a\n+b\n", nil, ReasonContext, "dir", "is a directory", StatusFailed},
		{"creating under a file", "diff --git a/a.txt/x b/a.txt/x\nnew file mode 100644\n--- /dev/null\n+++ b/a.txt/x\n@@ -0,0 +1 @@\n+x\n", nil, ReasonContext, "a.txt/x", "a.txt is not a directory", StatusFailed},
		{"deleting a changed file", "diff --git a/b.txt b/b.txt\ndeleted file mode 100644\n--- a/b.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-alpha\n", nil, ReasonContext, "b.txt", "has content the patch does not delete", StatusFailed},
		{"no-op", "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n one\n-two\n+two\n three\n", nil, ReasonNoop, "", "patch p made no change", StatusNoop},
		{"mode no-op", "diff --git a/a.txt b/a.txt\nold mode 100755\nnew mode 100644\n", nil, ReasonNoop, "", "made no change", StatusNoop},
		{"parse error", "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n one\n", nil, ReasonParse, "", "truncated", StatusFailed},
		// The second file's hunk fails: the first file must not be written.
		{"multi-file failure", "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n--- a/b.txt\n+++ b/b.txt\n@@ -1,2 +1,2 @@\n alpha\n-gamma\n+GAMMA\n--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+n\n",
			nil, ReasonHunk, "b.txt", `hunk @@ -1,2 +1,2 @@ does not apply to b.txt (line 2: expected "gamma", found "beta")`, StatusFailed},
		{"failure mentions what was tried", "--- a/b.txt\n+++ b/b.txt\n@@ -1,2 +1,2 @@\n alpha\n-gamma\n+GAMMA\n", []Option{WithOffset(true), WithFuzz(2)}, ReasonHunk, "b.txt", "also tried other lines and fuzz 2", StatusFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, tree)
			r := applyString(t, dir, "p", tt.diff, tt.opts...)
			if r.Status != tt.status || r.Failure == nil {
				t.Fatalf("report %+v", r)
			}
			f := r.Failure
			if f.Reason != tt.reason || f.File != tt.file || !strings.Contains(f.Message, tt.msg) {
				t.Errorf("failure %+v, want reason %s file %q message containing %q", f, tt.reason, tt.file, tt.msg)
			}
			if len(r.Files) != 0 {
				t.Errorf("files listed for a failed patch: %+v", r.Files)
			}
			err := r.Err("abc123")
			if err == nil || !strings.Contains(err.Error(), `"p"`) || !strings.Contains(err.Error(), "abc123") {
				t.Errorf("Err = %v", err)
			}
			assertTree(t, dir, tree)
		})
	}

	t.Run("optional no-op", func(t *testing.T) {
		dir := t.TempDir()
		writeTree(t, dir, tree)
		r := applyString(t, dir, "p", "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-one\n+one\n", WithOptional(true))
		if r.Status != StatusNoop || r.Failure != nil || r.Err("c") != nil {
			t.Errorf("report %+v", r)
		}
		if got := noopReport("x.patch", KindDiff, false).Err("2f40549d"); got == nil || got.Error() != `patch "x.patch" made no change at commit 2f40549d` {
			t.Errorf("no-op Err = %v", got)
		}
	})
}

func TestApplyOperations(t *testing.T) {
	tests := []struct {
		name   string
		before files
		diff   string
		after  files
		stats  []FileStat
		dirs   []string
	}{
		{"rename and modify",
			files{"old/x.go": "package x\n\nfunc A() {}\n", "keep": "k\n"},
			"diff --git a/old/x.go b/new/dir/x.go\nsimilarity index 80%\nrename from old/x.go\nrename to new/dir/x.go\n--- a/old/x.go\n+++ b/new/dir/x.go\n@@ -1,3 +1,3 @@\n package x\n \n-func A() {}\n+func B() {}\n",
			files{"new/dir/x.go": "package x\n\nfunc B() {}\n", "keep": "k\n"},
			[]FileStat{{Path: "new/dir/x.go", OldPath: "old/x.go", Op: OpRenamed, Added: 1, Removed: 1}},
			[]string{"new", "new/dir"}},
		{"copy keeps the source, executable bit carried",
			files{"s*": "#!/bin/sh\n"},
			"diff --git a/s b/t\nsimilarity index 100%\ncopy from s\ncopy to t\n",
			files{"s*": "#!/bin/sh\n", "t*": "#!/bin/sh\n"},
			[]FileStat{{Path: "t", Op: OpAdded}}, nil},
		{"new executable file in new directory",
			files{},
			"diff --git a/bin/run b/bin/run\nnew file mode 100755\n--- /dev/null\n+++ b/bin/run\n@@ -0,0 +1,2 @@\n+#!/bin/sh\n+exit 0\n",
			files{"bin/run*": "#!/bin/sh\nexit 0\n"},
			[]FileStat{{Path: "bin/run", Op: OpAdded, Added: 2}}, []string{"bin"}},
		{"mode to regular",
			files{"x*": "x\n"},
			"diff --git a/x b/x\nold mode 100755\nnew mode 100644\n",
			files{"x": "x\n"},
			[]FileStat{{Path: "x", Op: OpMode}}, nil},
		{"remove trailing newline",
			files{"x": "a\nb\n"},
			"--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+b\n\\ No newline at end of file\n",
			files{"x": "a\nb"}, nil, nil},
		{"file replaced by directory",
			files{"x": "file\n"},
			"diff --git a/x b/x\ndeleted file mode 100644\n--- a/x\n+++ /dev/null\n@@ -1 +0,0 @@\n-file\ndiff --git a/x/y b/x/y\nnew file mode 100644\n--- /dev/null\n+++ b/x/y\n@@ -0,0 +1 @@\n+y\n",
			files{"x/y": "y\n"}, nil, []string{"x"}},
		{"directory replaced by file",
			files{"x/y": "y\n", "x/z/w": "w\n"},
			"diff --git a/x b/x\nnew file mode 100644\n--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+file\ndiff --git a/x/y b/x/y\ndeleted file mode 100644\n--- a/x/y\n+++ /dev/null\n@@ -1 +0,0 @@\n-y\ndiff --git a/x/z/w b/x/z/w\ndeleted file mode 100644\n--- a/x/z/w\n+++ /dev/null\n@@ -1 +0,0 @@\n-w\n",
			files{"x": "file\n"}, nil, nil},
		{"deleting the last file removes its directories",
			files{"a/b/c": "c\n", "a/d": "d\n"},
			"--- a/a/b/c\n+++ /dev/null\n@@ -1 +0,0 @@\n-c\n",
			files{"a/d": "d\n"}, []FileStat{{Path: "a/b/c", Op: OpDeleted, Removed: 1}}, []string{"a"}},
		{"swap via renames and a new file",
			files{"a": "A\n"},
			"diff --git a/a b/b\nsimilarity index 100%\nrename from a\nrename to b\ndiff --git a/a b/a\nnew file mode 100644\n--- /dev/null\n+++ b/a\n@@ -0,0 +1 @@\n+new\n",
			files{"a": "new\n", "b": "A\n"}, nil, nil},
		{"several hunks with offsets carried from the previous hunk",
			files{"f": numbers(1, 40, nil)},
			"--- a/f\n+++ b/f\n@@ -2,3 +2,4 @@\n line 2\n+extra\n line 3\n line 4\n@@ -30,3 +31,3 @@\n line 30\n-line 31\n+line 31!\n line 32\n",
			files{"f": strings.Replace(strings.Replace(numbers(1, 40, nil), "line 2\n", "line 2\nextra\n", 1), "line 31\n", "line 31!\n", 1)}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, tt.before)
			r := applyString(t, dir, "p", tt.diff)
			if r.Status != StatusApplied {
				t.Fatalf("report %+v %+v", r, r.Failure)
			}
			assertTree(t, dir, tt.after)
			if tt.stats != nil && !reflect.DeepEqual(r.Files, tt.stats) {
				t.Errorf("files %+v, want %+v", r.Files, tt.stats)
			}
			if tt.dirs != nil || tt.name == "directory replaced by file" {
				if got := listDirs(t, dir); !reflect.DeepEqual(got, tt.dirs) {
					t.Errorf("directories %v, want %v", got, tt.dirs)
				}
			}
		})
	}
}

func TestApplyKeepsHardLinksIntact(t *testing.T) {
	// A file hard-linked to one outside the tree is replaced, not written
	// through.
	outside := t.TempDir()
	dir := t.TempDir()
	writeTree(t, outside, files{"secret": "s\n"})
	if err := os.Link(filepath.Join(outside, "secret"), filepath.Join(dir, "f")); err != nil {
		t.Skipf("hard links: %v", err)
	}
	r := applyString(t, dir, "p", "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-s\n+changed\n")
	if r.Status != StatusApplied {
		t.Fatalf("%+v", r.Failure)
	}
	assertTree(t, outside, files{"secret": "s\n"})
	assertTree(t, dir, files{"f": "changed\n"})
}

func TestApplyInternalErrors(t *testing.T) {
	p, err := Parse("p", []byte("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Apply(context.Background(), filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Error("no error for a missing tree")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	writeTree(t, dir, files{"x": "a\n"})
	if _, err := p.Apply(ctx, dir); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
	assertTree(t, dir, files{"x": "a\n"})
}
