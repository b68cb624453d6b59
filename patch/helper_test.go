package patch

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func runHelper(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = HelperMain(args, &o, &e)
	return code, o.String(), e.String()
}

func readReport(t *testing.T, path string) (*Report, map[string]any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	return &r, raw
}

func TestHelperMainApplyDiff(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "src")
	writeTree(t, tree, files{"Gemfile.lock": gemfileLock412})
	patchFile := filepath.Join(dir, "drop-hiredis.patch")
	if err := os.WriteFile(patchFile, []byte(dropHiredis), 0o644); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(dir, "out", "report.json")
	os.MkdirAll(filepath.Dir(report), 0o755)

	code, stdout, stderr := runHelper(t, "apply-diff", "--tree", tree, "--patch", patchFile, "--name", "drop-hiredis.patch", "--report", report)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	r, raw := readReport(t, report)
	if r.Status != StatusApplied || r.Patch != "drop-hiredis.patch" || r.Kind != KindDiff || r.Removed != 1 {
		t.Errorf("report %+v", r)
	}
	// The exact JSON field names are a contract.
	for _, k := range []string{"patch", "kind", "status", "files", "added", "removed"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("report has no %q field: %v", k, raw)
		}
	}
	f0 := raw["files"].([]any)[0].(map[string]any)
	if f0["path"] != "Gemfile.lock" || f0["op"] != "modified" || f0["removed"] != 1.0 {
		t.Errorf("files[0] = %v", f0)
	}
	if !strings.Contains(stdout, "applied") {
		t.Errorf("stdout %q", stdout)
	}

	// Applying again: the hunk no longer applies. Exit 0, failure in the report.
	code, _, stderr = runHelper(t, "apply-diff", "--tree", tree, "--patch", patchFile, "--name", "drop-hiredis.patch", "--report", report, "--offset", "--fuzz", "2")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	r, raw = readReport(t, report)
	if r.Status != StatusFailed || r.Failure == nil || r.Failure.Reason != ReasonHunk || r.Failure.Hunk != "@@ -6,7 +6,6 @@ GEM" || r.Failure.File != "Gemfile.lock" {
		t.Errorf("report %+v %+v", r, r.Failure)
	}
	fail := raw["failure"].(map[string]any)
	for _, k := range []string{"reason", "message", "file", "hunk", "line"} {
		if _, ok := fail[k]; !ok {
			t.Errorf("failure has no %q field: %v", k, fail)
		}
	}

	// Unsafe patch: exit 0, reason unsafe.
	evil := filepath.Join(dir, "evil.patch")
	os.WriteFile(evil, []byte("--- /dev/null\n+++ b/../../etc/cron.d/x\n@@ -0,0 +1 @@\n+x\n"), 0o644)
	if code, _, stderr = runHelper(t, "apply-diff", "--tree", tree, "--patch", evil, "--name", "evil.patch", "--report", report); code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if r, _ = readReport(t, report); r.Failure == nil || r.Failure.Reason != ReasonUnsafe {
		t.Errorf("report %+v", r)
	}

	// Optional no-op.
	noop := filepath.Join(dir, "noop.patch")
	os.WriteFile(noop, []byte("--- a/Gemfile.lock\n+++ b/Gemfile.lock\n@@ -1 +1 @@\n-    fugit (1.7.1)\n+    fugit (1.7.1)\n"), 0o644)
	if code, _, _ = runHelper(t, "apply-diff", "--tree", tree, "--patch", noop, "--name", "noop.patch", "--report", report, "--optional"); code != ExitOK {
		t.Fatal(code)
	}
	if r, _ = readReport(t, report); r.Status != StatusNoop || r.Failure != nil {
		t.Errorf("report %+v", r)
	}
}

func TestHelperMainRunScript(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "src")
	writeTree(t, tree, mastodon412)
	script := filepath.Join(dir, "hiredis.sh")
	os.WriteFile(script, []byte(mastodonScript), 0o644)
	report := filepath.Join(dir, "report.json")
	code, _, stderr := runHelper(t, "run-script", "--tree", tree, "--script", script, "--name", "hiredis.sh", "--report", report, "--shell", "/bin/sh")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "+ sed") {
		t.Errorf("script output not on stderr: %q", stderr)
	}
	r, _ := readReport(t, report)
	if r.Status != StatusApplied || r.Kind != KindScript || len(r.Files) != 5 {
		t.Errorf("report %+v", r)
	}
	// Second run: the tree no longer has hiredis; sed still succeeds on
	// every file, so nothing changes: a no-op failure.
	code, _, _ = runHelper(t, "run-script", "--tree", tree, "--script", script, "--name", "hiredis.sh", "--report", report)
	if code != ExitOK {
		t.Fatal(code)
	}
	_, raw := readReport(t, report)
	if raw["status"] != "noop" || raw["failure"].(map[string]any)["reason"] != "noop" {
		t.Errorf("report %v", raw)
	}
}

func TestHelperMainUsageAndInternalErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "p.patch")
	os.WriteFile(p, []byte("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"), 0o644)
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"no args", nil, ExitUsage},
		{"unknown command", []string{"frobnicate"}, ExitUsage},
		{"help", []string{"--help"}, ExitOK},
		{"unknown flag", []string{"apply-diff", "--bogus"}, ExitUsage},
		{"missing flags", []string{"apply-diff", "--tree", dir}, ExitUsage},
		{"bad fuzz", []string{"apply-diff", "--tree", dir, "--patch", p, "--report", filepath.Join(dir, "r"), "--fuzz", "9"}, ExitUsage},
		{"script flag on apply-diff", []string{"apply-diff", "--tree", dir, "--script", p, "--report", filepath.Join(dir, "r")}, ExitUsage},
		{"extra argument", []string{"run-script", "--tree", dir, "--script", p, "--report", filepath.Join(dir, "r"), "extra"}, ExitUsage},
		{"missing patch file", []string{"apply-diff", "--tree", dir, "--patch", filepath.Join(dir, "nope"), "--report", filepath.Join(dir, "r")}, ExitInternal},
		{"missing tree", []string{"apply-diff", "--tree", filepath.Join(dir, "nope"), "--patch", p, "--report", filepath.Join(dir, "r")}, ExitInternal},
		{"unwritable report", []string{"apply-diff", "--tree", dir, "--patch", p, "--report", filepath.Join(dir, "no", "such", "dir", "r")}, ExitInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, _, stderr := runHelper(t, tt.args...); code != tt.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, tt.code, stderr)
			}
		})
	}
}

// TestHelperBinary builds the static helper and runs it as the LLB step
// would.
func TestHelperBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	bin := filepath.Join(t.TempDir(), "vmbuild-helper")
	build := exec.Command(goTool, "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", bin, "github.com/vmbuild/vmbuild/cmd/vmbuild-helper")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "src")
	writeTree(t, tree, fixtureBefore)
	report := filepath.Join(dir, "report.json")
	cmd := exec.Command(bin, "apply-diff", "--tree", tree, "--patch", filepath.Join("testdata", "format.patch"), "--name", "format.patch", "--report", report)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	r, _ := readReport(t, report)
	if r.Status != StatusApplied {
		t.Fatalf("report %+v", r)
	}
	assertTree(t, tree, fixtureAfter)
	cmd = exec.Command(bin, "apply-diff", "--tree", tree)
	if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != ExitUsage {
		t.Errorf("usage error: %v", err)
	}
}
