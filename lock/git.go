package lock

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/redact"
)

// GitResolver answers the questions locking asks of a git remote.
type GitResolver interface {
	// ResolveRef returns the full commit a branch or tag points to.
	ResolveRef(ctx context.Context, url, ref string) (string, error)
	// CommitTime returns a commit's committer time, fetching the commit
	// if needed.
	CommitTime(ctx context.Context, url, commit string) (time.Time, error)
	// ReadFile returns a file's content at a commit.
	ReadFile(ctx context.Context, url, commit, path string) ([]byte, error)
	// Log returns the commits reachable from head and not from base, oldest
	// first (base may be empty: then at most max commits ending at head).
	Log(ctx context.Context, url, base, head string, max int) ([]Commit, error)
	// Export writes a commit's tree into an existing directory.
	Export(ctx context.Context, url, commit, dir string) error
}

// Commit is one upstream commit.
type Commit struct {
	SHA     string    `json:"commit"`
	Time    time.Time `json:"time"`
	Subject string    `json:"subject,omitempty"`
}

// GitCLI implements GitResolver with the git program. Remote repositories
// are fetched into bare mirrors under CacheDir (shallow where possible);
// local repository paths are read in place.
type GitCLI struct {
	// CacheDir holds the mirrors. Required for remote URLs.
	CacheDir string
	// Git is the git program; default "git".
	Git string
	// Env is added to git's environment (e.g. GIT_SSH_COMMAND).
	Env []string
}

var shaRE = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// IsCommit reports whether s is a full commit hash (SHA-1 or SHA-256).
func IsCommit(s string) bool { return shaRE.MatchString(s) }

func (g GitCLI) bin() string {
	if g.Git != "" {
		return g.Git
	}
	return "git"
}

func (g GitCLI) run(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, g.bin(), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
	cmd.Env = append(cmd.Env, g.Env...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		if _, lerr := exec.LookPath(g.bin()); lerr != nil {
			return nil, fmt.Errorf("running git: %w: git is not installed (apt-get install git)", errs.ErrMissingTool)
		}
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("git %s: %w: %s", redactArgs(args), errs.ErrGit, redact.Text(msg))
	}
	return out.Bytes(), nil
}

func redactArgs(args []string) string {
	return redact.Text(strings.Join(args, " "))
}

func (g GitCLI) local(url string) (string, bool) {
	if strings.Contains(url, "://") && !strings.HasPrefix(url, "file://") {
		return "", false
	}
	if strings.HasPrefix(url, "file://") {
		return strings.TrimPrefix(url, "file://"), true
	}
	if filepath.IsAbs(url) {
		return url, true
	}
	return "", false
}

// mirror returns the bare mirror directory for url, creating it.
func (g GitCLI) mirror(ctx context.Context, url string) (string, error) {
	if dir, ok := g.local(url); ok {
		return dir, nil
	}
	if g.CacheDir == "" {
		return "", fmt.Errorf("fetching %s: no git cache directory configured", redact.Text(url))
	}
	h := sha256.Sum256([]byte(url))
	dir := filepath.Join(g.CacheDir, hex.EncodeToString(h[:8])+".git")
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("creating git mirror: %w", err)
		}
		if _, err := g.run(ctx, dir, "init", "--bare", "-q"); err != nil {
			return "", err
		}
		if _, err := g.run(ctx, dir, "remote", "add", "origin", url); err != nil {
			return "", err
		}
	} else {
		// The URL is in the hash; keep the stored remote in step anyway
		// (credentials can rotate).
		_, _ = g.run(ctx, dir, "remote", "set-url", "origin", url)
	}
	return dir, nil
}

// ResolveRef implements GitResolver with `git ls-remote` (remote) or
// `git rev-parse` (local).
func (g GitCLI) ResolveRef(ctx context.Context, url, ref string) (string, error) {
	if dir, ok := g.local(url); ok {
		out, err := g.run(ctx, dir, "rev-parse", "--verify", "--quiet", ref+"^{commit}")
		if err != nil {
			return "", fmt.Errorf("resolving ref %q in %s: %w: no such branch, tag or commit", ref, dir, errs.ErrGit)
		}
		return strings.TrimSpace(string(out)), nil
	}
	if IsCommit(ref) {
		return ref, nil
	}
	out, err := g.run(ctx, "", "ls-remote", "--", url, ref, "refs/heads/"+ref, "refs/tags/"+ref, "refs/tags/"+ref+"^{}")
	if err != nil {
		return "", fmt.Errorf("resolving ref %q of %s: %w", ref, redact.Text(url), err)
	}
	// Prefer a peeled tag (the commit), then an exact ref, then branch, then tag.
	found := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 {
			found[f[1]] = f[0]
		}
	}
	for _, name := range []string{"refs/tags/" + ref + "^{}", ref, "refs/heads/" + ref, "refs/tags/" + ref} {
		if sha, ok := found[name]; ok {
			return sha, nil
		}
	}
	return "", fmt.Errorf("resolving ref %q of %s: %w: no such branch or tag on the remote", ref, redact.Text(url), errs.ErrGit)
}

func (g GitCLI) haveCommit(ctx context.Context, dir, commit string) bool {
	_, err := g.run(ctx, dir, "cat-file", "-e", commit+"^{commit}")
	return err == nil
}

// fetch makes commit available in the mirror: first shallowly, without
// blobs where the server allows it.
func (g GitCLI) fetch(ctx context.Context, url, commit string, depth int) (string, error) {
	dir, err := g.mirror(ctx, url)
	if err != nil {
		return "", err
	}
	if _, ok := g.local(url); ok || g.haveCommit(ctx, dir, commit) {
		if !g.haveCommit(ctx, dir, commit) {
			return "", fmt.Errorf("reading commit %s in %s: %w: no such commit", commit, dir, errs.ErrGit)
		}
		return dir, nil
	}
	args := []string{"fetch", "-q", "--no-tags"}
	if depth > 0 {
		args = append(args, "--depth="+strconv.Itoa(depth))
	}
	if _, err := g.run(ctx, dir, append(args, "--filter=blob:none", "origin", commit)...); err != nil {
		if _, err2 := g.run(ctx, dir, append(args, "origin", commit)...); err2 != nil {
			return "", fmt.Errorf("fetching commit %s of %s: %w", commit, redact.Text(url), err2)
		}
	}
	return dir, nil
}

// CommitTime implements GitResolver.
func (g GitCLI) CommitTime(ctx context.Context, url, commit string) (time.Time, error) {
	dir, err := g.fetch(ctx, url, commit, 1)
	if err != nil {
		return time.Time{}, err
	}
	out, err := g.run(ctx, dir, "show", "-s", "--format=%ct", commit)
	if err != nil {
		return time.Time{}, err
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("reading commit time of %s: %w", commit, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// ReadFile implements GitResolver.
func (g GitCLI) ReadFile(ctx context.Context, url, commit, path string) ([]byte, error) {
	dir, err := g.fetch(ctx, url, commit, 1)
	if err != nil {
		return nil, err
	}
	out, err := g.run(ctx, dir, "show", commit+":"+filepath.ToSlash(path))
	if err != nil {
		return nil, fmt.Errorf("reading %s at commit %s: %w", path, commit, err)
	}
	return out, nil
}

// Log implements GitResolver.
func (g GitCLI) Log(ctx context.Context, url, base, head string, max int) ([]Commit, error) {
	dir, err := g.mirror(ctx, url)
	if err != nil {
		return nil, err
	}
	if _, ok := g.local(url); !ok {
		// History is needed here: deepen until base is reachable.
		depth := max + 1
		if depth < 50 {
			depth = 50
		}
		if _, err := g.run(ctx, dir, "fetch", "-q", "--no-tags", "--filter=blob:none", "--depth="+strconv.Itoa(depth), "origin", head); err != nil {
			if _, err2 := g.run(ctx, dir, "fetch", "-q", "--no-tags", "--depth="+strconv.Itoa(depth), "origin", head); err2 != nil {
				return nil, fmt.Errorf("fetching history of %s: %w", redact.Text(url), err2)
			}
		}
		if base != "" && !g.haveCommit(ctx, dir, base) {
			if _, err := g.run(ctx, dir, "fetch", "-q", "--no-tags", "--filter=blob:none", "--shallow-exclude="+base, "origin", head); err != nil {
				_, _ = g.run(ctx, dir, "fetch", "-q", "--no-tags", "--unshallow", "origin", head)
			}
		}
	}
	args := []string{"log", "--first-parent", "--format=%H %ct %s"}
	if max > 0 {
		args = append(args, "-n", strconv.Itoa(max))
	}
	if base != "" && g.haveCommit(ctx, dir, base) {
		args = append(args, base+".."+head)
	} else {
		args = append(args, head)
	}
	out, err := g.run(ctx, dir, args...)
	if err != nil {
		return nil, err
	}
	var commits []Commit
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, " ", 3)
		sec, _ := strconv.ParseInt(parts[1], 10, 64)
		c := Commit{SHA: parts[0], Time: time.Unix(sec, 0).UTC()}
		if len(parts) == 3 {
			c.Subject = parts[2]
		}
		commits = append(commits, c)
	}
	// oldest first
	for i, j := 0, len(commits)-1; i < j; i, j = i+1, j-1 {
		commits[i], commits[j] = commits[j], commits[i]
	}
	return commits, nil
}

// Archive writes the tree of commit as a tar stream (for local upstreams,
// which buildkitd cannot fetch by itself).
func (g GitCLI) Archive(ctx context.Context, url, commit string) ([]byte, error) {
	dir, err := g.fetch(ctx, url, commit, 1)
	if err != nil {
		return nil, err
	}
	// umask 022, as a checkout by buildkitd gets: 0644 files, 0755 dirs.
	return g.run(ctx, dir, "-c", "tar.umask=0022", "archive", "--format=tar", commit)
}

// Export writes the tree of commit into dir (which must exist), as a
// checkout by buildkitd has it: 0644 files, 0755 directories, mtimes the
// commit time. Entries that would land outside dir are refused.
func (g GitCLI) Export(ctx context.Context, url, commit, dir string) error {
	b, err := g.Archive(ctx, url, commit)
	if err != nil {
		return fmt.Errorf("exporting %s at %s: %w", redact.Text(url), commit, err)
	}
	if err := untar(bytes.NewReader(b), dir); err != nil {
		return fmt.Errorf("exporting %s at %s: %w", redact.Text(url), commit, err)
	}
	return nil
}

// untar extracts a git archive stream into dir. Entries that would land
// outside dir are refused.
func untar(r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	type dirTime struct {
		name string
		t    time.Time
	}
	var dirs []dirTime
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		if h.Typeflag == tar.TypeXGlobalHeader || name == "." {
			continue
		}
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("archive entry %q is outside the tree", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return err
			}
			dirs = append(dirs, dirTime{name, h.ModTime})
		case tar.TypeReg:
			if err := root.MkdirAll(filepath.Dir(name), 0o755); err != nil {
				return err
			}
			f, err := root.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o777)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			if err := root.Chmod(name, os.FileMode(h.Mode)&0o777); err != nil {
				return err
			}
			if err := root.Chtimes(name, h.ModTime, h.ModTime); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := root.MkdirAll(filepath.Dir(name), 0o755); err != nil {
				return err
			}
			if err := root.Symlink(h.Linkname, name); err != nil {
				return err
			}
			ts := []unix.Timespec{unix.NsecToTimespec(h.ModTime.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
			_ = unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dir, name), ts, unix.AT_SYMLINK_NOFOLLOW)
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = root.Chtimes(dirs[i].name, dirs[i].t, dirs[i].t)
	}
	return nil
}

// Credential asks git for the credentials of an http(s) remote, as git
// itself would get them: `git credential fill`, which consults the
// configured credential helpers (store, cache, libsecret, osxkeychain, …),
// never prompting. ok is false when git has none. The build hands
// them to BuildKit as a session secret (never in the graph, the lock or
// the provenance); `vmbuild lock` needs nothing of the sort, since git
// runs on this machine.
func (g GitCLI) Credential(ctx context.Context, remote string) (user, password string, ok bool, err error) {
	u, perr := url.Parse(remote)
	if perr != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", "", false, nil
	}
	cmd := exec.CommandContext(ctx, g.bin(), "credential", "fill")
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=/bin/false", "SSH_ASKPASS=/bin/false", "LC_ALL=C")
	cmd.Env = append(cmd.Env, g.Env...)
	cmd.Stdin = strings.NewReader(fmt.Sprintf("protocol=%s\nhost=%s\npath=%s\n\n", u.Scheme, u.Host, strings.TrimPrefix(u.Path, "/")))
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		// No helper has them (git fails rather than prompt): not an error.
		return "", "", false, nil
	}
	for _, line := range strings.Split(out.String(), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "username":
			user = v
		case "password":
			password = v
		}
	}
	return user, password, password != "", nil
}
