package patch

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmbuild/vmbuild/errs"
)

func TestCheckPath(t *testing.T) {
	ok := []string{"a", "a/b.c", "lib/.gitignore", ".github/workflows/x.yml", "x.git", "gitx/.gitkeep", "a b/c d", "tést", "...", "a..b"}
	bad := []string{
		"", "/etc/passwd", "../x", "a/../../x", "a/..", "..", ".git/config", "a/.git/hooks/pre-commit",
		".GIT/config", ".Git", ".git./config", ".git /config", ".git::$INDEX_ALLOCATION/x", "GIT~1/config",
		".g\u200cit/config", "\ufeff.git/x", "a//b", "./a", "a/./b", "a/", "x\x00y", `..\x`, `a\b`,
		strings.Repeat("x", 256), strings.Repeat("a/", 2048) + "x",
	}
	for _, p := range ok {
		if err := checkPath(p); err != nil {
			t.Errorf("checkPath(%q) = %v, want ok", p, err)
		}
	}
	for _, p := range bad {
		if err := checkPath(p); err == nil {
			t.Errorf("checkPath(%q) = nil, want error", p)
		}
	}
}

// sandbox makes a tree inside a parent directory that also holds a
// sentinel directory outside the tree; check() fails the test if anything
// outside the tree changed.
type sandbox struct {
	tree, outside string
	before        files
}

func newSandbox(t testing.TB, tree files) *sandbox {
	t.Helper()
	parent := t.TempDir()
	s := &sandbox{tree: filepath.Join(parent, "tree"), outside: filepath.Join(parent, "outside")}
	writeTree(t, s.outside, files{"sentinel": "do not touch\n", "etc/passwd": "root:x:0:0\n"})
	if err := os.MkdirAll(s.tree, 0o755); err != nil {
		t.Fatal(err)
	}
	writeTree(t, s.tree, tree)
	// Links pointing out of the tree.
	for name, target := range map[string]string{
		"linkdir":    s.outside,
		"relout":     "../outside",
		"linkfile":   filepath.Join(s.outside, "sentinel"),
		"innerlink":  "realdir",
		"danglingin": "../outside/newfile",
	} {
		if err := os.Symlink(target, filepath.Join(s.tree, name)); err != nil {
			t.Fatal(err)
		}
	}
	writeTree(t, s.tree, files{"realdir/f": "f\n"})
	s.before = readTree(t, filepath.Dir(s.outside))
	return s
}

// check asserts nothing outside the tree changed and returns the tree.
func (s *sandbox) check(t testing.TB) {
	t.Helper()
	after := readTree(t, s.outside)
	want := files{"sentinel": "do not touch\n", "etc/passwd": "root:x:0:0\n"}
	if len(after) != len(want) || after["sentinel"] != want["sentinel"] || after["etc/passwd"] != want["etc/passwd"] {
		t.Fatalf("outside the tree changed: %v", after)
	}
	entries, err := os.ReadDir(filepath.Dir(s.outside))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("new entries next to the tree: %v", entries)
	}
}

func TestApplyRefusesUnsafePatches(t *testing.T) {
	newFile := func(path string) string {
		return "diff --git a/" + path + " b/" + path + "\nnew file mode 100644\n--- /dev/null\n+++ b/" + path + "\n@@ -0,0 +1 @@\n+pwned\n"
	}
	modify := func(path string) string {
		return "--- a/" + path + "\n+++ b/" + path + "\n@@ -1 +1 @@\n-do not touch\n+pwned\n"
	}
	tests := []struct {
		name string
		diff string
		msg  string
	}{
		{"dotdot new file", newFile("../outside/x"), `".." component`},
		{"dotdot deep", modify("a/../../outside/sentinel"), `".." component`},
		{"absolute traditional", "--- /dev/null\n+++ /tmp/pwned\n@@ -0,0 +1 @@\n+x\n", "absolute path"},
		{"second traditional name escapes", "--- a/ok.txt\n+++ b/../outside/sentinel\n@@ -1 +1 @@\n-ok\n+pwned\n", `".." component`},
		{"second traditional name absolute", "--- ok.txt\n+++ /etc/passwd\n@@ -1 +1 @@\n-ok\n+pwned\n", "absolute path"},
		{"absolute via --no-prefix", "diff --git /etc/passwd /etc/passwd\n--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n", "absolute path"},
		{"git hooks", newFile(".git/hooks/post-checkout"), "git metadata"},
		{"git hooks, case", newFile(".GIT/hooks/post-checkout"), "git metadata"},
		{"nested .git", newFile("vendor/x/.git/config"), "git metadata"},
		{"ntfs dotgit", newFile("git~1/config"), "git metadata"},
		{"rename source escapes", "diff --git a/../outside/sentinel b/stolen\nrename from ../outside/sentinel\nrename to stolen\n", `".." component`},
		{"copy source escapes", "diff --git a/x b/stolen\ncopy from ../outside/sentinel\ncopy to stolen\n", `".." component`},
		{"rename target escapes", "diff --git a/realdir/f b/../f\nrename from realdir/f\nrename to ../f\n", `".." component`},
		{"quoted dotdot", "diff --git \"a/..\\057outside/x\" \"b/..\\057outside/x\"\nnew file mode 100644\n--- /dev/null\n+++ \"b/..\\057outside/x\"\n@@ -0,0 +1 @@\n+x\n", `".." component`},
		{"new file through symlinked dir", newFile("linkdir/newfile"), "beyond a symbolic link"},
		{"new file through relative symlinked dir", newFile("relout/newfile"), "beyond a symbolic link"},
		{"modify through symlinked dir", modify("linkdir/sentinel"), "beyond a symbolic link"},
		{"symlink inside the tree is refused too", modify("innerlink/f"), "beyond a symbolic link"},
		{"modify symlink target", modify("linkfile"), "is a symbolic link"},
		{"create over dangling symlink", newFile("danglingin"), "is a symbolic link"},
		{"delete symlink", "--- a/linkfile\n+++ /dev/null\n@@ -1 +0,0 @@\n-do not touch\n", "is a symbolic link"},
		{"rename into symlinked dir", "diff --git a/realdir/f b/linkdir/f\nrename from realdir/f\nrename to linkdir/f\n", "beyond a symbolic link"},
		{"symlink creation", "diff --git a/evil b/evil\nnew file mode 120000\n--- /dev/null\n+++ b/evil\n@@ -0,0 +1 @@\n+../outside\n\\ No newline at end of file\n", "symbolic link"},
		{"mode change to symlink", "diff --git a/realdir/f b/realdir/f\nold mode 100644\nnew mode 120000\n", "symbolic link"},
		// One good file first: nothing may be written.
		{"good file then bad file", "--- a/realdir/f\n+++ b/realdir/f\n@@ -1 +1 @@\n-f\n+g\n" + newFile("linkdir/x"), "beyond a symbolic link"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSandbox(t, files{"ok.txt": "ok\n"})
			treeBefore := readTree(t, s.tree)
			r := applyString(t, s.tree, "evil.patch", tt.diff, WithOffset(true), WithFuzz(3))
			if r.Status != StatusFailed || r.Failure == nil || r.Failure.Reason != ReasonUnsafe {
				t.Fatalf("report %+v %+v", r, r.Failure)
			}
			if !strings.Contains(r.Failure.Message, tt.msg) {
				t.Errorf("message %q does not contain %q", r.Failure.Message, tt.msg)
			}
			err := r.Err("2f40549d")
			if !errors.Is(err, errs.ErrUnsafePatch) || !strings.Contains(err.Error(), `patch "evil.patch" refused at commit 2f40549d: `) {
				t.Errorf("Err = %v", err)
			}
			s.check(t)
			assertTree(t, s.tree, treeBefore)
		})
	}
}

func TestCheckSafeBeforeBuilding(t *testing.T) {
	p, err := Parse("evil.patch", []byte("diff --git a/x b/x\nnew file mode 100644\n--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+x\ndiff --git a/.git/config b/.git/config\n--- a/.git/config\n+++ b/.git/config\n@@ -1 +1 @@\n-a\n+b\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = p.CheckSafe()
	var pe *Error
	if !errors.As(err, &pe) || pe.Reason != ReasonUnsafe || pe.File != ".git/config" || !errors.Is(err, errs.ErrUnsafePatch) {
		t.Fatalf("CheckSafe = %#v", err)
	}
	if want := `patch "evil.patch": unsafe path ".git/config": writes into git metadata (".git" component)`; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}
