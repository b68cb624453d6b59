// Command mkdemo creates the demo's inputs, deterministically:
//
//   - the busybox base image as an OCI image layout at recipes/demo/base
//     (tag "latest"; the recipe names it oci-layout://./base:latest or so);
//   - the demo upstream as a bare git repository at recipes/demo/upstream.git
//     whose branch main holds the files under recipes/demo/src.
//
// Both are rebuilt from scratch on every run and come out identical on
// every machine: the image digest depends only on /bin/busybox, and the
// commits have fixed identities and dates (commit N is dated
// 2024-01-01T00:00:00Z + N-1 days).
//
// --commits N (default 1) makes N commits: commit 1 imports src; commit
// k >= 2 appends a comment "revision k" to the file named by --change
// (default app/javascript/application.js: only the demo's assets layer
// re-runs, its bundle layer stays cached), a change the demo and tests use
// to show a rebuild.
//
// Run from the repository root: go run ./hack/mkdemo [--commits N].
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/log"

	"github.com/vmbuild/vmbuild/internal/baseimage"
	"github.com/vmbuild/vmbuild/internal/testenv/detgit"
)

// Epoch is the date of the first demo commit.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mkdemo:", err)
		os.Exit(1)
	}
}

func run() error {
	dir := flag.String("dir", "recipes/demo", "demo directory")
	src := flag.String("src", "", "upstream source files (default DIR/src)")
	commits := flag.Int("commits", 1, "number of upstream commits (>= 1)")
	busybox := flag.String("busybox", baseimage.DefaultBusyboxPath, "static busybox binary")
	tag := flag.String("tag", "latest", "tag of the base image in the OCI layout")
	only := flag.String("only", "", `make only "base" or "upstream"`)
	change := flag.String("change", "app/javascript/application.js", "file (relative to the sources) that commits 2..N append to")
	flag.Parse()
	if *commits < 1 {
		return fmt.Errorf("--commits must be at least 1")
	}
	if *src == "" {
		*src = filepath.Join(*dir, "src")
	}
	ctx := context.Background()
	// containerd's content store warns through its global logger when the
	// filesystem lacks fs-verity; that is not news for a demo.
	_ = log.SetLevel("error")

	if *only == "" || *only == "base" {
		d, err := makeBase(ctx, filepath.Join(*dir, "base"), *busybox, *tag)
		if err != nil {
			return err
		}
		fmt.Printf("base:     %s (tag %s) %s\n", filepath.Join(*dir, "base"), *tag, d)
	}
	if *only == "" || *only == "upstream" {
		shas, err := makeUpstream(ctx, filepath.Join(*dir, "upstream.git"), *src, *commits, *change)
		if err != nil {
			return err
		}
		for i, s := range shas {
			fmt.Printf("upstream: %s commit %d %s %s\n", filepath.Join(*dir, "upstream.git"), i+1, s, commitTime(i+1).Format(time.RFC3339))
		}
	}
	return nil
}

func makeBase(ctx context.Context, out, busybox, tag string) (string, error) {
	img, err := baseimage.Build(ctx, baseimage.Options{BusyboxPath: busybox})
	if err != nil {
		return "", err
	}
	if err := os.RemoveAll(out); err != nil {
		return "", err
	}
	if err := baseimage.WriteLayout(ctx, img, out, tag); err != nil {
		return "", err
	}
	return img.Digest().String(), nil
}

func commitTime(n int) time.Time { return Epoch.Add(time.Duration(n-1) * 24 * time.Hour) }

func makeUpstream(ctx context.Context, gitDir, src string, n int, change string) ([]string, error) {
	if st, err := os.Stat(src); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("demo upstream sources %s: not a directory (give --src)", src)
	}
	if !filepath.IsLocal(change) {
		return nil, fmt.Errorf("--change %q: not a path inside the sources", change)
	}
	work, err := os.MkdirTemp("", "mkdemo-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	if err := copyTree(src, work); err != nil {
		return nil, fmt.Errorf("copying %s: %w", src, err)
	}
	if err := os.RemoveAll(gitDir); err != nil {
		return nil, err
	}
	repo, err := detgit.Init(ctx, gitDir, work)
	if err != nil {
		return nil, err
	}
	var shas []string
	for i := 1; i <= n; i++ {
		msg := "demo: import upstream sources\n"
		if i > 1 {
			p := filepath.Join(work, change)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return nil, err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(f, "%srevision %d\n", commentPrefix(change), i)
			if err := f.Close(); err != nil {
				return nil, err
			}
			msg = fmt.Sprintf("demo: revision %d\n", i)
		}
		sha, err := repo.Commit(ctx, msg, commitTime(i))
		if err != nil {
			return nil, err
		}
		shas = append(shas, sha)
	}
	// The index only served the commits; a bare repository does not keep one.
	_ = os.Remove(filepath.Join(gitDir, "index"))
	return shas, nil
}

// commentPrefix keeps the appended line a comment in common source files.
func commentPrefix(name string) string {
	switch filepath.Ext(name) {
	case ".js", ".ts", ".jsx", ".tsx", ".go", ".c", ".h", ".java", ".rs":
		return "// "
	case ".rb", ".py", ".sh", ".yml", ".yaml", ".toml", ".conf", ".pl":
		return "# "
	}
	return ""
}

// copyTree copies regular files (keeping the executable bit, which is all
// git records), directories and symlinks; git records nothing else.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		if d.Name() == ".git" {
			return fmt.Errorf("%s: a .git inside the demo sources is not supported", p)
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if info.Mode()&0o111 != 0 {
				mode = 0o755
			}
			return copyFile(p, target, mode)
		default:
			return fmt.Errorf("%s: unsupported file type %s", p, d.Type())
		}
	})
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Chmod(mode); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
