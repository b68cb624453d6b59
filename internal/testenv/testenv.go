// Package testenv is vmbuild's integration-test harness. It runs real
// services, never mocks: the pinned buildkitd (through package buildkit's
// managed-daemon code), the distribution registry, and `git daemon`.
//
// Typical use:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
//	func TestBuild(t *testing.T) {
//		testenv.RequireIntegration(t)
//		reg := testenv.StartRegistry(t)
//		git := testenv.StartGitDaemon(t)
//		bk := testenv.SharedBuildKit(t)
//		base := testenv.BusyboxBase(t, reg, "base/busybox")
//		repo := testenv.NewRepo(t, git, "app")
//		repo.Write("main.c", "…")
//		sha := repo.Commit("initial", time.Unix(1700000000, 0))
//		…
//	}
//
// Binaries come from the checkout's bin/ (`make tools`); runc, git and
// busybox-static from the system (`make deps`). Tests skip when these are
// missing, and fail instead when VMBUILD_INTEGRATION=1 (as in `make test`).
//
// Environment:
//   - VMBUILD_INTEGRATION=1: missing prerequisites fail tests instead of
//     skipping them.
//   - VMBUILD_TEST_BUILDKIT_ADDR: SharedBuildKit uses this buildkitd instead
//     of starting one per test binary (`make test` sets it).
//
// This package imports "testing"; import it from _test.go files only.
package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

const (
	// EnvIntegration turns missing prerequisites into failures.
	EnvIntegration = "VMBUILD_INTEGRATION"
	// EnvBuildKitAddr names a running buildkitd for SharedBuildKit.
	EnvBuildKitAddr = "VMBUILD_TEST_BUILDKIT_ADDR"
)

// ToolBinaries are the bin/ programs every integration test needs.
var ToolBinaries = []string{"buildkitd", "buildctl", "registry"}

// SystemPrograms are the programs from $PATH every integration test needs.
var SystemPrograms = []string{"runc", "git"}

// Integration reports whether VMBUILD_INTEGRATION=1.
func Integration() bool { return os.Getenv(EnvIntegration) == "1" }

// skipOrFail skips the test, or fails it under VMBUILD_INTEGRATION=1.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if Integration() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// RequireIntegration checks the prerequisites of integration tests: the
// tool binaries in bin/ (plus any extra bin/ programs named, e.g. "cosign",
// "vmbuild"), runc and git in $PATH, and root (buildkitd with runc needs
// it). When one is missing it skips the test, or fails it when
// VMBUILD_INTEGRATION=1, with a hint on how to get it.
func RequireIntegration(t testing.TB, extraBins ...string) {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		skipOrFail(t, "testenv: %v", err)
	}
	var missing []string
	for _, name := range append(append([]string(nil), ToolBinaries...), extraBins...) {
		if st, err := os.Stat(filepath.Join(root, "bin", name)); err != nil || st.IsDir() {
			missing = append(missing, "bin/"+name)
		}
	}
	if len(missing) > 0 {
		skipOrFail(t, "testenv: integration test needs %s: run `make tools` (and `make build` for vmbuild binaries) in %s",
			strings.Join(missing, ", "), root)
	}
	for _, p := range SystemPrograms {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		skipOrFail(t, "testenv: integration test needs %s in $PATH: run `make deps` (as root)", strings.Join(missing, ", "))
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "testenv: integration tests run buildkitd with runc and need root")
	}
}

var root struct {
	once sync.Once
	dir  string
	err  error
}

func repoRoot() (string, error) {
	root.once.Do(func() {
		var starts []string
		if wd, err := os.Getwd(); err == nil {
			starts = append(starts, wd)
		}
		if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
			starts = append(starts, filepath.Dir(file))
		}
		for _, dir := range starts {
			for d := dir; ; d = filepath.Dir(d) {
				if isModuleRoot(d) {
					root.dir = d
					return
				}
				if filepath.Dir(d) == d {
					break
				}
			}
		}
		root.err = fmt.Errorf("finding the vmbuild checkout: no go.mod of module github.com/vmbuild/vmbuild above %v", starts)
	})
	return root.dir, root.err
}

func isModuleRoot(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, "module ") {
			return strings.TrimSpace(strings.TrimPrefix(l, "module ")) == "github.com/vmbuild/vmbuild"
		}
	}
	return false
}

// RepoRoot is the root of the vmbuild checkout (the directory of its
// go.mod). It panics when the tests do not run inside the checkout.
func RepoRoot() string {
	d, err := repoRoot()
	if err != nil {
		panic(err)
	}
	return d
}

// Bin returns the absolute path of bin/name in the checkout. A missing
// binary skips the test (fails it under VMBUILD_INTEGRATION=1) with the
// make target that builds it.
func Bin(t testing.TB, name string) string {
	t.Helper()
	d, err := repoRoot()
	if err != nil {
		skipOrFail(t, "testenv: %v", err)
	}
	p := filepath.Join(d, "bin", name)
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		target := "make tools"
		if strings.HasPrefix(name, "vmbuild") {
			target = "make build"
		}
		skipOrFail(t, "testenv: %s is missing: run `%s` in %s", p, target, d)
	}
	return p
}

// Main wraps testing.M: use it as `func TestMain(m *testing.M) {
// testenv.Main(m) }`. It runs the tests, then stops the per-binary shared
// services (SharedBuildKit) and exits. (Should the binary die first, the
// daemons' watchdogs stop them.)
func Main(m *testing.M) {
	code := m.Run()
	stopShared()
	os.Exit(code)
}

// tempDir makes a directory under os.TempDir() with a short name (unix
// socket paths are limited to 107 bytes) and removes it on cleanup.
func tempDir(t testing.TB, prefix string) string {
	t.Helper()
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(d); err != nil {
			t.Logf("testenv: removing %s: %v", d, err)
		}
	})
	return d
}
