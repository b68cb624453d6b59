package patch

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/vmbuild/vmbuild/errs"
)

// describe summarises a parsed patch as one line per file.
func describe(p *Patch) []string {
	var out []string
	for _, f := range p.Files {
		s := fmt.Sprintf("%s %q -> %q", f.Op, f.OldPath, f.NewPath)
		if f.OldMode != 0 || f.NewMode != 0 {
			s += fmt.Sprintf(" %o->%o", f.OldMode, f.NewMode)
		}
		s += fmt.Sprintf(" hunks=%d", len(f.Hunks))
		out = append(out, s)
	}
	return out
}

func TestParseFixtures(t *testing.T) {
	gitFiles := []string{
		`modified "Gemfile" -> "Gemfile" 100644->100644 hunks=1`,
		`modified "app/lib/nonl.txt" -> "app/lib/nonl.txt" 100644->100644 hunks=1`,
		`modified "app/tést.txt" -> "app/tést.txt" 100644->100644 hunks=1`,
		`modified "app/with space.txt" -> "app/with space.txt" 100644->100644 hunks=1`,
		`added "" -> "lib/empty.rb" 0->100644 hunks=0`,
		`renamed "lib/moveme.rb" -> "lib/moved.rb" 100644->100644 hunks=1`,
		`added "" -> "lib/new.rb" 0->100644 hunks=1`,
		`modified "lib/numbers.txt" -> "lib/numbers.txt" 100644->100644 hunks=2`,
		`deleted "lib/old.rb" -> "" 100644->0 hunks=1`,
		`mode "run.sh" -> "run.sh" 100644->100755 hunks=0`,
	}
	tests := []struct {
		file string
		want []string
	}{
		{"git.diff", gitFiles},
		{"format.patch", gitFiles},
		{"series.mbox", append(append([]string(nil), gitFiles...),
			`modified "Gemfile" -> "Gemfile" 100644->100644 hunks=1`)},
		{"ruN.diff", []string{
			`modified "Gemfile" -> "Gemfile" hunks=1`,
			`modified "app/lib/nonl.txt" -> "app/lib/nonl.txt" hunks=1`,
			`modified "app/tést.txt" -> "app/tést.txt" hunks=1`,
			`modified "app/with space.txt" -> "app/with space.txt" hunks=1`,
			`added "" -> "lib/moved.rb" hunks=1`,
			`deleted "lib/moveme.rb" -> "" hunks=1`,
			`added "" -> "lib/new.rb" hunks=1`,
			`modified "lib/numbers.txt" -> "lib/numbers.txt" hunks=2`,
			`deleted "lib/old.rb" -> "" hunks=1`,
		}},
		{"u.diff", []string{`modified "lib/numbers.txt" -> "lib/numbers.txt" hunks=2`}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			p, err := Parse(tt.file, readTestdata(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(p); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if err := p.CheckSafe(); err != nil {
				t.Errorf("CheckSafe: %v", err)
			}
		})
	}
}

func TestParseDetails(t *testing.T) {
	p, err := Parse("git.diff", readTestdata(t, "git.diff"))
	if err != nil {
		t.Fatal(err)
	}
	nonl := p.Files[1]
	if got := nonl.Hunks[0].Lines; !reflect.DeepEqual(got, []HunkLine{
		{Kind: '-', Text: "no newline at end", NoNewline: true},
		{Kind: '+', Text: "no newline at end"},
	}) {
		t.Errorf("no-newline hunk lines = %+v", got)
	}
	h := p.Files[7].Hunks[1]
	if h.OldStart != 14 || h.OldLines != 7 || h.NewStart != 14 || h.NewLines != 7 || h.Section != "line 13" {
		t.Errorf("hunk = %+v", h)
	}
	if h.Header() != "@@ -14,7 +14,7 @@ line 13" || h.Range() != "@@ -14,7 +14,7 @@" {
		t.Errorf("header %q range %q", h.Header(), h.Range())
	}
	if a, r := p.Files[0].Stats(); a != 0 || r != 2 {
		t.Errorf("Gemfile stats +%d -%d", a, r)
	}
}

func TestParseVariants(t *testing.T) {
	tests := []struct {
		name string
		diff string
		want []string
	}{
		{"no-prefix git diff", "diff --git lib/x.rb lib/x.rb\nindex 1..2 100755\n--- lib/x.rb\n+++ lib/x.rb\n@@ -1 +1 @@\n-a\n+b\n",
			[]string{`modified "lib/x.rb" -> "lib/x.rb" 100755->100755 hunks=1`}},
		{"mnemonic prefixes", "diff --git i/x w/x\n--- i/x\n+++ w/x\n@@ -1 +1 @@\n-a\n+b\n",
			[]string{`modified "x" -> "x" hunks=1`}},
		{"quoted rename", "diff --git \"a/t\\303\\251st\" \"b/t\\303\\251st 2\"\nsimilarity index 100%\nrename from \"t\\303\\251st\"\nrename to \"t\\303\\251st 2\"\n",
			[]string{`renamed "tést" -> "tést 2" hunks=0`}},
		{"quoted escapes", "diff --git \"a/tab\\there\" \"b/tab\\there\"\nnew file mode 100755\n--- /dev/null\n+++ \"b/tab\\there\"\n@@ -0,0 +1 @@\n+x\n",
			[]string{`added "" -> "tab\there" 0->100755 hunks=1`}},
		{"copy", "diff --git a/x b/y\nsimilarity index 100%\ncopy from x\ncopy to y\n",
			[]string{`copied "x" -> "y" hunks=0`}},
		{"rename with mode and hunk", "diff --git a/x b/y\nold mode 100644\nnew mode 100755\nsimilarity index 90%\nrename from x\nrename to y\nindex 1..2\n--- a/x\n+++ b/y\n@@ -1,2 +1,2 @@\n k\n-a\n+b\n",
			[]string{`renamed "x" -> "y" 100644->100755 hunks=1`}},
		{"empty deleted file", "diff --git a/e b/e\ndeleted file mode 100644\nindex e69de29..0000000\n",
			[]string{`deleted "e" -> "" 100644->0 hunks=0`}},
		{"plain diff -u, p0", "--- x.c.orig\t2024-01-01 00:00:00.000000000 +0100\n+++ x.c\t2024-01-01 00:00:00.000000000 +0100\n@@ -1 +1 @@\n-a\n+b\n",
			[]string{`modified "x.c" -> "x.c" hunks=1`}},
		{"diff -u file file.new", "--- src/x.c\n+++ src/x.c.new\n@@ -1 +1 @@\n-a\n+b\n",
			[]string{`modified "src/x.c" -> "src/x.c" hunks=1`}},
		{"diff -ruN dir names", "diff -ruN mastodon.orig/Gemfile mastodon/Gemfile\n--- mastodon.orig/Gemfile\n+++ mastodon/Gemfile\n@@ -1 +1 @@\n-a\n+b\n",
			[]string{`modified "Gemfile" -> "Gemfile" hunks=1`}},
		{"diff -N new file with epoch in another zone", "--- a/n\t1970-01-01 01:00:00.000000000 +0100\n+++ b/n\t2024-01-01 00:00:00.000000000 +0000\n@@ -0,0 +1 @@\n+x\n",
			[]string{`added "" -> "n" hunks=1`}},
		{"diff -u to /dev/null", "--- a/gone\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n",
			[]string{`deleted "gone" -> "" hunks=1`}},
		{"crlf headers", "diff --git a/x b/x\r\n--- a/x\r\n+++ b/x\r\n@@ -1 +1 @@\r\n-a\r\n+b\r\n",
			[]string{`modified "x" -> "x" hunks=1`}},
		{"empty context line", "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n\n-b\n+c\n",
			[]string{`modified "x" -> "x" hunks=1`}},
		{"default counts and -U0", "--- a/x\n+++ b/x\n@@ -3 +3 @@\n-a\n+b\n@@ -7,0 +8,2 @@\n+c\n+d\n",
			[]string{`modified "x" -> "x" hunks=2`}},
		{"svn Index lines are garbage", "Index: x\n===================================================================\n--- x\t(revision 1)\n+++ x\t(working copy)\n@@ -1 +1 @@\n-a\n+b\n",
			[]string{`modified "x" -> "x" hunks=1`}},
		{"symlink diff parses (CheckSafe refuses)", "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+target\n\\ No newline at end of file\n",
			[]string{`added "" -> "l" 0->120000 hunks=1`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("t.patch", []byte(tt.diff))
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(p); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		diff string
		want string // substring of the error
		line int
	}{
		{"empty", "", "no diffs found", 0},
		{"only garbage", "hello\nworld\n", "no diffs found", 0},
		{"binary", "diff --git a/x b/x\nindex 1..2 100644\nGIT binary patch\nliteral 3\nKcmZ?wKm-5-0{{R3\n", "binary patches are not supported", 3},
		{"binary files differ", "diff -ruN a/x b/x\nBinary files a/x and b/x differ\n", "binary patches are not supported", 2},
		{"hunk without header", "hello\n@@ -1 +1 @@\n-a\n+b\n", "hunk without a file header", 2},
		{"truncated hunk", "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n", "truncated", 3},
		{"too many lines", "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n+d\n", "more lines than its header", 7},
		{"too many removed", "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\n-b\n-c\n+d\n", "does not fit the header", 6},
		{"junk in hunk", "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n*b\n", "expected 1 more old", 5},
		{"bad header", "--- a/x\n+++ b/x\n@@ -1,x +1 @@\n a\n", "bad hunk header", 3},
		{"out of order hunks", "--- a/x\n+++ b/x\n@@ -5 +5 @@\n-a\n+b\n@@ -2 +2 @@\n-a\n+b\n", "overlaps or comes before", 6},
		{"overlapping hunks", "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n d\n@@ -3,2 +3,2 @@\n d\n-e\n+f\n", "overlaps", 8},
		{"submodule", "diff --git a/m b/m\nindex 1..2 160000\n--- a/m\n+++ b/m\n@@ -1 +1 @@\n-Subproject commit 1\n+Subproject commit 2\n", "submodule", 2},
		{"new file with old lines", "diff --git a/x b/x\nnew file mode 100644\n--- /dev/null\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n", "must be a single", 5},
		{"inconsistent names", "diff --git a/x b/x\n--- a/x\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n", "does not match", 1},
		{"git names differ without rename", "diff --git a/x b/y\n--- a/x\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n", "cannot tell the file name", 1},
		{"git header only", "diff --git a/x b/x\nindex 1..2 100644\n", "has no changes", 1},
		{"text after no-newline marker", "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\n\\ No newline at end of file\n b\n+c\n", "does not fit", 6},
		{"--- without +++ in git", "diff --git a/x b/x\n--- a/x\n@@ -1 +1 @@\n", "not followed by +++", 2},
		{"rename onto itself", "diff --git a/x b/x\nrename from x\nrename to x\n", "onto itself", 1},
		{"bad quoted name", "diff --git \"a/x\\q\" \"b/x\\q\"\nnew file mode 100644\n", "bad quoted name", 1},
		{"huge line number", "--- a/x\n+++ b/x\n@@ -99999999999 +1 @@\n-a\n+b\n", "bad hunk header", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("bad.patch", []byte(tt.diff))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `"bad.patch"`) {
				t.Errorf("error %q does not contain %q and the patch name", err, tt.want)
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.Reason != ReasonParse || pe.Line != tt.line {
				t.Errorf("error %#v: want reason parse, line %d", err, tt.line)
			}
			if !errors.Is(err, errs.ErrPatchFailed) {
				t.Errorf("error does not wrap ErrPatchFailed")
			}
		})
	}
}
