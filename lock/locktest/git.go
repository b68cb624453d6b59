// Package locktest provides fakes of lock's interfaces for the tests of
// what sits on top of lock (track, check), in the manner of httptest: no
// git server, no network.
package locktest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vmbuild/vmbuild/lock"
)

// Git is a lock.GitResolver over an upstream whose history is Commits, oldest
// first. Refs maps names to commits; "main", "HEAD" and "" are the last
// commit, and a commit id resolves to itself. Reading files and exporting
// trees are errors: a test that needs them needs a real repository.
type Git struct {
	Commits []lock.Commit
	Refs    map[string]string
}

var _ lock.GitResolver = (*Git)(nil)

// Head is the last commit.
func (g *Git) Head() string { return g.Commits[len(g.Commits)-1].SHA }

// ResolveRef implements lock.GitResolver.
func (g *Git) ResolveRef(ctx context.Context, url, ref string) (string, error) {
	if c, ok := g.Refs[ref]; ok {
		return c, nil
	}
	switch ref {
	case "main", "HEAD", "":
		return g.Head(), nil
	}
	for _, c := range g.Commits {
		if c.SHA == ref {
			return c.SHA, nil
		}
	}
	return "", fmt.Errorf("locktest: no ref %s", ref)
}

// CommitTime implements lock.GitResolver.
func (g *Git) CommitTime(ctx context.Context, url, commit string) (time.Time, error) {
	for _, c := range g.Commits {
		if c.SHA == commit {
			return c.Time, nil
		}
	}
	return time.Time{}, fmt.Errorf("locktest: no commit %s", commit)
}

// ReadFile implements lock.GitResolver: always an error.
func (g *Git) ReadFile(ctx context.Context, url, commit, path string) ([]byte, error) {
	return nil, errors.New("locktest: Git.ReadFile")
}

// Log implements lock.GitResolver: the commits after base up to head, oldest
// first, the last max of them (0: all).
func (g *Git) Log(ctx context.Context, url, base, head string, max int) ([]lock.Commit, error) {
	var out []lock.Commit
	after := base == ""
	for _, c := range g.Commits {
		if after {
			out = append(out, c)
		}
		if c.SHA == base {
			after = true
		}
		if c.SHA == head {
			break
		}
	}
	if max > 0 && len(out) > max {
		out = out[len(out)-max:]
	}
	return out, nil
}

// Export implements lock.GitResolver: always an error.
func (g *Git) Export(ctx context.Context, url, commit, dir string) error {
	return errors.New("locktest: Git.Export")
}
