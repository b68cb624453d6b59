package testenv

import (
	"context"
	"fmt"
	"github.com/vmbuild/vmbuild/internal/localsvc"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vmbuild/vmbuild/internal/testenv/detgit"
)

// GitServer is a running `git daemon` serving the bare repositories under
// BaseDir over git:// on loopback, with push (receive-pack) enabled.
type GitServer struct {
	// Host is "127.0.0.1:PORT".
	Host string
	// BaseDir holds the served repositories (NAME.git).
	BaseDir string
	// LogFile receives the daemon's output.
	LogFile string

	cmd    *exec.Cmd
	exited chan struct{}
}

// URL returns git://127.0.0.1:PORT/name.git.
func (s *GitServer) URL(name string) string { return fmt.Sprintf("git://%s/%s.git", s.Host, name) }

// StartGitDaemon starts `git daemon` for this test on a free loopback port
// and stops it when the test ends.
func StartGitDaemon(t testing.TB) *GitServer {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		skipOrFail(t, "testenv: git is not installed: run `make deps`")
	}
	dir := tempDir(t, "vmgit-")
	base := filepath.Join(dir, "repos")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		s, err := startGitDaemon(base, filepath.Join(dir, "git-daemon.log"))
		if err == nil {
			t.Cleanup(func() {
				s.stop()
				if t.Failed() {
					if l := localsvc.Tail(s.LogFile, 20); l != "" {
						t.Logf("testenv: git daemon %s log (last lines):\n%s", s.Host, l)
					}
				}
			})
			return s
		}
		lastErr = err
	}
	t.Fatalf("testenv: starting git daemon: %v", lastErr)
	return nil
}

func startGitDaemon(base, logPath string) (*GitServer, error) {
	port, err := localsvc.FreePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command("git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack",
		"--informative-errors", "--verbose", "--base-path="+base, "--listen=127.0.0.1",
		fmt.Sprintf("--port=%d", port), base)
	cmd.Env = detgit.Env()
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group, so that stop reaches the per-connection children;
	// dies with the test binary even when the binary is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &GitServer{Host: fmt.Sprintf("127.0.0.1:%d", port), BaseDir: base, LogFile: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.exited) }()
	err = localsvc.WaitUntil(context.Background(), 30*time.Second, s.exited, func() error {
		c, err := net.DialTimeout("tcp", s.Host, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("git daemon on %s: %w; log:\n%s", s.Host, err, localsvc.Tail(logPath, 15))
	}
	return s, nil
}

func (s *GitServer) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
}

// Repo is a repository served by a GitServer: a bare repository
// (GitDir = BaseDir/NAME.git) plus a work tree (Dir) in which tests write
// files and commit. Commits use a fixed identity, so a given sequence of
// writes and commit dates gives the same hashes on every machine.
type Repo struct {
	Name string
	// Dir is the work tree.
	Dir string
	// GitDir is the served bare repository.
	GitDir string
	// URL is the git:// URL to clone or fetch from.
	URL string

	t testing.TB
	r *detgit.Repo
}

// NewRepo creates an empty repository NAME.git on srv (default branch
// main). Clients may fetch any commit by hash.
func NewRepo(t testing.TB, srv *GitServer, name string) *Repo {
	t.Helper()
	gitDir := filepath.Join(srv.BaseDir, name+".git")
	work := tempDir(t, "vmwt-")
	r, err := detgit.Init(context.Background(), gitDir, work)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return &Repo{Name: name, Dir: work, GitDir: gitDir, URL: srv.URL(name), t: t, r: r}
}

func (r *Repo) path(p string) string {
	r.t.Helper()
	if !filepath.IsLocal(p) {
		r.t.Fatalf("testenv: repo path %q is not inside the work tree", p)
	}
	return filepath.Join(r.Dir, p)
}

// Write writes content to path (relative to the work tree, parents
// created), mode 0644.
func (r *Repo) Write(path, content string) { r.t.Helper(); r.WriteMode(path, content, 0o644) }

// WriteMode writes content to path with mode (git records 0644 or 0755).
func (r *Repo) WriteMode(path, content string, mode os.FileMode) {
	r.t.Helper()
	p := r.path(path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatalf("testenv: %v", err)
	}
	_ = os.Remove(p)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		r.t.Fatalf("testenv: %v", err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask
		r.t.Fatalf("testenv: %v", err)
	}
}

// Remove deletes path (a file or a whole directory) from the work tree.
func (r *Repo) Remove(path string) {
	r.t.Helper()
	if err := os.RemoveAll(r.path(path)); err != nil {
		r.t.Fatalf("testenv: %v", err)
	}
}

// Symlink creates path as a symbolic link to target (like os.Symlink(target, path)).
func (r *Repo) Symlink(target, path string) {
	r.t.Helper()
	p := r.path(path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatalf("testenv: %v", err)
	}
	_ = os.Remove(p)
	if err := os.Symlink(target, p); err != nil {
		r.t.Fatalf("testenv: %v", err)
	}
}

// Commit commits the whole work tree on main with message msg, author and
// committer date when (whole seconds; tests use it as SOURCE_DATE_EPOCH),
// and returns the commit hash. Commits without changes are allowed.
func (r *Repo) Commit(msg string, when time.Time) string {
	r.t.Helper()
	sha, err := r.r.Commit(context.Background(), msg, when)
	if err != nil {
		r.t.Fatalf("testenv: %v", err)
	}
	return sha
}

// Head returns the hash of the last commit.
func (r *Repo) Head() string {
	r.t.Helper()
	sha, err := r.r.Head(context.Background())
	if err != nil {
		r.t.Fatalf("testenv: %v", err)
	}
	return sha
}

// Git runs any git command on the repository (work tree and bare git dir)
// and returns its trimmed output, e.g. r.Git("tag", "v1.0").
func (r *Repo) Git(args ...string) string {
	r.t.Helper()
	out, err := r.r.Git(context.Background(), args...)
	if err != nil {
		r.t.Fatalf("testenv: %v", err)
	}
	return out
}
