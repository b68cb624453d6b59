// Package detgit makes git commits whose hashes are the same on every
// machine: fixed author and committer identities, dates taken from the
// caller, and a git environment isolated from the user's and the system's
// configuration. It drives the git program. testenv and hack/mkdemo use it.
package detgit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vmbuild/vmbuild/errs"
)

// Identity used for author and committer of every commit.
const (
	Name  = "vmbuild test"
	Email = "test@vmbuild.invalid"
	// Branch is the default branch of repositories made by Init.
	Branch = "main"
)

// Repo is a bare repository (GitDir) with a separate work tree (WorkTree).
// The index lives in GitDir.
type Repo struct {
	GitDir   string
	WorkTree string
}

// Env returns os.Environ() without GIT_* variables, plus settings that
// make git ignore ~/.gitconfig and /etc/gitconfig and use the C locale.
func Env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GIT_") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") || strings.HasPrefix(kv, "TZ=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
		"LC_ALL=C",
		"TZ=UTC",
	)
}

// Init creates a bare repository at gitDir, default branch main, whose
// work tree is workTree. Clients may fetch any reachable commit by its
// hash (BuildKit fetches pinned commits that way).
func Init(ctx context.Context, gitDir, workTree string) (*Repo, error) {
	if _, err := exec.LookPath("git"); err != nil {
		return nil, fmt.Errorf("finding git: %w: install it with `apt-get install git` (`make deps`)", errs.ErrMissingTool)
	}
	var err error
	if gitDir, err = filepath.Abs(gitDir); err != nil {
		return nil, err
	}
	if workTree, err = filepath.Abs(workTree); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(workTree, 0o755); err != nil {
		return nil, fmt.Errorf("creating work tree: %w", err)
	}
	r := &Repo{GitDir: gitDir, WorkTree: workTree}
	if _, err := run(ctx, "", nil, "init", "--quiet", "--bare", "--initial-branch="+Branch, gitDir); err != nil {
		return nil, err
	}
	for _, kv := range [][2]string{
		// Protocol v2 (git's default since 2.26, and what BuildKit's
		// git uses) already serves any reachable commit by hash; this
		// extends that to protocol v0 clients, as GitHub does.
		{"uploadpack.allowReachableSHA1InWant", "true"},
	} {
		if _, err := r.Git(ctx, "config", kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Git runs git on the repository and returns its trimmed stdout.
func (r *Repo) Git(ctx context.Context, args ...string) (string, error) {
	return run(ctx, r.WorkTree, nil, append([]string{"--git-dir=" + r.GitDir, "--work-tree=" + r.WorkTree}, args...)...)
}

// Commit records the whole work tree (git add -A) as a commit with the
// fixed identity, message msg and author and committer date when (whole
// seconds, UTC), and returns its hash. A commit with no change is allowed.
func (r *Repo) Commit(ctx context.Context, msg string, when time.Time) (string, error) {
	if _, err := r.Git(ctx, "add", "--all", "."); err != nil {
		return "", err
	}
	date := "@" + strconv.FormatInt(when.Unix(), 10) + " +0000"
	env := []string{
		"GIT_AUTHOR_NAME=" + Name, "GIT_AUTHOR_EMAIL=" + Email, "GIT_AUTHOR_DATE=" + date,
		"GIT_COMMITTER_NAME=" + Name, "GIT_COMMITTER_EMAIL=" + Email, "GIT_COMMITTER_DATE=" + date,
	}
	if _, err := run(ctx, r.WorkTree, env, "--git-dir="+r.GitDir, "--work-tree="+r.WorkTree,
		"-c", "commit.gpgsign=false", "commit", "--quiet", "--allow-empty", "--no-verify", "--cleanup=verbatim", "-m", msg); err != nil {
		return "", err
	}
	return r.Head(ctx)
}

// Head returns the hash of HEAD.
func (r *Repo) Head(ctx context.Context) (string, error) {
	return r.Git(ctx, "rev-parse", "HEAD")
}

func run(ctx context.Context, dir string, extraEnv []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(Env(), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("running git %s: %w: %w: %s", strings.Join(args, " "), errs.ErrGit, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}
