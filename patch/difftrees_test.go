package patch

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestDiffTreesOutput(t *testing.T) {
	oldDir, newDir := t.TempDir(), t.TempDir()
	writeTree(t, oldDir, files{
		"a.txt":       "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n",
		"gone.txt":    "bye\n",
		"run.sh":      "echo\n",
		"same.txt":    "same\n",
		"nonl":        "x",
		"with space":  "s\n",
		"tést":        "u\n",
		"empty-gone":  "",
		".git/config": "ignored\n",
	})
	writeTree(t, newDir, files{
		"a.txt":       "1\n2\n3\n4\nfive\n6\n7\n8\n9\n10\n",
		"new/file.go": "package x\n",
		"run.sh*":     "echo\n",
		"same.txt":    "same\n",
		"nonl":        "x\n",
		"with space":  "s\nt\n",
		"tést":        "u\nv\n",
		"empty-new":   "",
		".git/config": "different\n",
	})
	got, err := DiffTrees(context.Background(), oldDir, newDir)
	if err != nil {
		t.Fatal(err)
	}
	want := `diff --git a/a.txt b/a.txt
--- a/a.txt
+++ b/a.txt
@@ -2,7 +2,7 @@
 2
 3
 4
-5
+five
 6
 7
 8
diff --git a/empty-gone b/empty-gone
deleted file mode 100644
diff --git a/empty-new b/empty-new
new file mode 100644
diff --git a/gone.txt b/gone.txt
deleted file mode 100644
--- a/gone.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
diff --git a/new/file.go b/new/file.go
new file mode 100644
--- /dev/null
+++ b/new/file.go
@@ -0,0 +1 @@
+package x
diff --git a/nonl b/nonl
--- a/nonl
+++ b/nonl
@@ -1 +1 @@
-x
\ No newline at end of file
+x
diff --git a/run.sh b/run.sh
old mode 100644
new mode 100755
diff --git "a/t\303\251st" "b/t\303\251st"
--- "a/t\303\251st"
+++ "b/t\303\251st"
@@ -1 +1,2 @@
 u
+v
diff --git a/with space b/with space
--- a/with space` + "\t" + `
+++ b/with space` + "\t" + `
@@ -1 +1,2 @@
 s
+t
`
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	again, _ := DiffTrees(context.Background(), oldDir, newDir)
	if !bytes.Equal(got, again) {
		t.Error("not deterministic")
	}

	// Round trip through our own parser and applier.
	work := t.TempDir()
	writeTree(t, work, readTree(t, oldDir))
	r := applyString(t, work, "export.diff", string(got))
	if r.Status != StatusApplied {
		t.Fatalf("%+v", r.Failure)
	}
	wantTree := readTree(t, newDir)
	wantTree[".git/config"] = "ignored\n" // .git is not diffed
	assertTree(t, work, wantTree)
	// And through git apply, when git is installed.
	if git, err := exec.LookPath("git"); err == nil {
		work := t.TempDir()
		writeTree(t, work, readTree(t, oldDir))
		os.RemoveAll(filepath.Join(work, ".git"))
		cmd := exec.Command(git, "apply", "--verbose", "-")
		cmd.Dir = work
		cmd.Stdin = bytes.NewReader(got)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git apply: %v\n%s", err, out)
		}
		delete(wantTree, ".git/config")
		assertTree(t, work, wantTree)
	}
}

func TestDiffTreesRefuses(t *testing.T) {
	for name, setup := range map[string]func(o, n string){
		"binary": func(o, n string) {
			writeTree(t, o, files{"b": "a\x00b"})
			writeTree(t, n, files{"b": "a\x00c"})
		},
		"symlink change": func(o, n string) {
			os.Symlink("x", filepath.Join(o, "l"))
			os.Symlink("y", filepath.Join(n, "l"))
		},
	} {
		t.Run(name, func(t *testing.T) {
			o, n := t.TempDir(), t.TempDir()
			setup(o, n)
			if _, err := DiffTrees(context.Background(), o, n); err == nil {
				t.Error("no error")
			}
		})
	}
	// Unchanged symlinks and binaries are fine.
	o, n := t.TempDir(), t.TempDir()
	for _, d := range []string{o, n} {
		os.Symlink("x", filepath.Join(d, "l"))
		writeTree(t, d, files{"b": "a\x00b"})
	}
	if out, err := DiffTrees(context.Background(), o, n); err != nil || len(out) != 0 {
		t.Errorf("DiffTrees = %q, %v", out, err)
	}
}

// randomText makes a file from a small alphabet of lines, so that random
// edits produce realistic partial matches.
func randomText(r *rand.Rand, n int) string {
	var b strings.Builder
	for range n {
		b.WriteString("l" + strconv.Itoa(r.IntN(8)) + "\n")
	}
	if n > 0 && r.IntN(4) == 0 {
		s := b.String()
		return s[:len(s)-1] // no final newline
	}
	return b.String()
}

func mutate(r *rand.Rand, s string) string {
	lines := splitLines([]byte(s))
	for range r.IntN(6) {
		switch op := r.IntN(3); {
		case op == 0 && len(lines) > 0:
			i := r.IntN(len(lines))
			lines = append(lines[:i], lines[i+1:]...)
		case op == 1:
			i := r.IntN(len(lines) + 1)
			lines = append(lines[:i], append([]string{"n" + strconv.Itoa(r.IntN(5)) + "\n"}, lines[i:]...)...)
		case len(lines) > 0:
			lines[r.IntN(len(lines))] = "c" + strconv.Itoa(r.IntN(5)) + "\n"
		}
	}
	out := strings.Join(lines, "")
	if r.IntN(5) == 0 {
		out = strings.TrimSuffix(out, "\n")
	}
	return out
}

func TestDiffTreesRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	names := []string{"a", "b", "d/c", "d/e/f", "g h", "x.sh"}
	for i := range 300 {
		oldTree, newTree := files{}, files{}
		for _, n := range names {
			exec := ""
			if r.IntN(5) == 0 {
				exec = "*"
			}
			if r.IntN(4) != 0 {
				oldTree[n+exec] = randomText(r, r.IntN(40))
			}
			switch r.IntN(4) {
			case 0: // absent
			case 1:
				newTree[n+exec] = oldTree[n+exec]
			default:
				if r.IntN(6) == 0 {
					exec = map[string]string{"": "*", "*": ""}[exec]
				}
				newTree[n+exec] = mutate(r, oldTree[strings.TrimSuffix(n+exec, "*")]+oldTree[n+"*"])
			}
		}
		oldDir, newDir := t.TempDir(), t.TempDir()
		writeTree(t, oldDir, oldTree)
		writeTree(t, newDir, newTree)
		d, err := DiffTrees(context.Background(), oldDir, newDir)
		if err != nil {
			t.Fatal(err)
		}
		if len(d) == 0 {
			continue
		}
		rep := applyString(t, oldDir, "rt.diff", string(d))
		if rep.Status != StatusApplied {
			t.Fatalf("case %d: %+v\n%s", i, rep.Failure, d)
		}
		got, want := readTree(t, oldDir), readTree(t, newDir)
		if len(got) != len(want) {
			t.Fatalf("case %d: got %v want %v\n%s", i, got, want, d)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("case %d: %s = %q, want %q\n%s", i, k, got[k], v, d)
			}
		}
	}
}

func TestLineDiffMinimalAndFast(t *testing.T) {
	a := splitLines([]byte("a\nb\nc\nd\ne\nf\n"))
	b := splitLines([]byte("a\nc\nd\nx\ne\nf\ng\n"))
	if added, removed := countChanges(a, b); added != 2 || removed != 1 {
		t.Errorf("+%d -%d, want +2 -1", added, removed)
	}
	// 10k-line files, fully rewritten and interleaved: must be quick.
	var x, y []string
	for i := range 10000 {
		x = append(x, "old "+strconv.Itoa(i)+"\n")
		y = append(y, "new "+strconv.Itoa(i)+"\n")
	}
	if added, removed := countChanges(x, y); added != 10000 || removed != 10000 {
		t.Errorf("rewrite: +%d -%d", added, removed)
	}
	// Same line set in a different order forces real Myers work.
	r := rand.New(rand.NewPCG(3, 4))
	var p, q []string
	for range 10000 {
		p = append(p, "l"+strconv.Itoa(r.IntN(50))+"\n")
		q = append(q, "l"+strconv.Itoa(r.IntN(50))+"\n")
	}
	rm, ad := lineDiff(p, q)
	// Check the edit script really turns p into q.
	var out []string
	for _, e := range editScript(rm, ad) {
		switch e.kind {
		case editEqual:
			if p[e.a] != q[e.b] {
				t.Fatalf("equal edit on different lines %d %d", e.a, e.b)
			}
			out = append(out, p[e.a])
		case editInsert:
			out = append(out, q[e.b])
		}
	}
	if strings.Join(out, "") != strings.Join(q, "") {
		t.Fatal("edit script does not produce b")
	}
}

// TestApplyToolGeneratedRandom applies diffs made by git (with rename
// detection) and GNU diff -ruN from random tree pairs, when those tools
// are installed, and checks the result against the new tree.
func TestApplyToolGeneratedRandom(t *testing.T) {
	git, gitErr := exec.LookPath("git")
	diff, diffErr := exec.LookPath("diff")
	if gitErr != nil && diffErr != nil {
		t.Skip("neither git nor diff installed")
	}
	if testing.Short() {
		t.Skip("runs external tools")
	}
	r := rand.New(rand.NewPCG(5, 6))
	names := []string{"a", "b", "d/c", "d/e/f", "g h", "t\u00e9st"}
	run := func(dir string, name string, args ...string) []byte {
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir, "LC_ALL=C")
		out, err := cmd.Output()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); !(ok && name == diff && ee.ExitCode() == 1) {
				t.Fatalf("%s %v: %v\n%s", name, args, err, out)
			}
		}
		return out
	}
	for i := range 40 {
		oldTree, newTree := files{}, files{}
		for _, n := range names {
			if r.IntN(5) != 0 {
				oldTree[n] = randomText(r, 5+r.IntN(30))
			}
			switch r.IntN(5) {
			case 0:
			case 1:
				if oldTree[n] != "" {
					newTree[n+".moved"] = oldTree[n] // a rename for git -M
				}
			default:
				newTree[n] = mutate(r, oldTree[n])
			}
		}
		if gitErr == nil {
			repo := t.TempDir()
			run(repo, git, "init", "-q", ".")
			writeTree(t, repo, oldTree)
			run(repo, git, "add", "-A")
			run(repo, git, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "old")
			for n := range oldTree {
				os.Remove(filepath.Join(repo, n))
			}
			writeTree(t, repo, newTree)
			run(repo, git, "add", "-A")
			d := run(repo, git, "diff", "--cached", "-M", "--binary")
			if len(d) > 0 {
				work := t.TempDir()
				writeTree(t, work, oldTree)
				rep := applyString(t, work, "git.diff", string(d))
				if rep.Status != StatusApplied {
					t.Fatalf("case %d: git diff: %+v\n%s", i, rep.Failure, d)
				}
				assertTree(t, work, newTree)
			}
		}
		if diffErr == nil {
			parent := t.TempDir()
			writeTree(t, filepath.Join(parent, "old"), oldTree)
			writeTree(t, filepath.Join(parent, "new"), newTree)
			os.MkdirAll(filepath.Join(parent, "old"), 0o755)
			os.MkdirAll(filepath.Join(parent, "new"), 0o755)
			d := run(parent, diff, "-ruN", "old", "new")
			if len(d) > 0 {
				work := t.TempDir()
				writeTree(t, work, oldTree)
				rep := applyString(t, work, "ruN.diff", string(d))
				if rep.Status != StatusApplied {
					t.Fatalf("case %d: diff -ruN: %+v\n%s", i, rep.Failure, d)
				}
				// diff -N cannot tell an empty file from an absent one.
				want := files{}
				for k, v := range newTree {
					if v != "" {
						want[k] = v
					}
				}
				got := readTree(t, work)
				for k, v := range got {
					if _, ok := want[k]; !ok && v == "" {
						delete(got, k)
					}
				}
				for k, v := range want {
					if got[k] != v {
						t.Fatalf("case %d: diff -ruN: %s = %q, want %q\n%s", i, k, got[k], v, d)
					}
				}
				if len(got) != len(want) {
					t.Fatalf("case %d: diff -ruN: got %v, want %v\n%s", i, got, want, d)
				}
			}
		}
	}
}
