package install

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vmbuild/vmbuild/deps/deb"
)

// metaDir holds, in an unpacked package's tree, what deb-finalize needs
// of it (its alternatives); deb-finalize removes it.
const metaDir = ".vmbuild-deb"

type debMeta struct {
	Package      string            `json:"package"`
	Alternatives []deb.Alternative `json:"alternatives,omitempty"`
	Scripts      []string          `json:"scripts,omitempty"`
}

func debUnpack(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("deb-unpack", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	file := fs.String("deb", "", "")
	sum := fs.String("sha256", "", "")
	pkg := fs.String("package", "", "")
	url := fs.String("url", "", "")
	out := fs.String("out", "", "")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *file == "" || *out == "" || *sum == "" {
		return usageError{"--deb, --sha256 and --out are required"}
	}
	c, err := deb.ExtractFile(ctx, *file, *out, deb.ExtractOptions{SHA256: *sum, Package: *pkg, URL: *url})
	if err != nil {
		return err
	}
	meta := debMeta{Package: c.Package, Alternatives: c.Alternatives}
	for s := range c.Scripts {
		meta.Scripts = append(meta.Scripts, s)
	}
	sort.Strings(meta.Scripts)
	b, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(*out, metaDir), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(*out, metaDir, c.Package+".json"), b, 0o644)
}

// Accounts and File are deb-finalize's JSON arguments.
type Accounts = deb.Accounts

// File is a file or symbolic link the base gets.
type File struct {
	Path    string `json:"path"`
	Content string `json:"content,omitempty"`
	Symlink string `json:"symlink,omitempty"`
	Mode    int    `json:"mode,omitempty"`
}

func debFinalize(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("deb-finalize", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	root := fs.String("root", "", "")
	arch := fs.String("arch", "", "")
	accJSON := fs.String("accounts", "{}", "")
	filesJSON := fs.String("files", "[]", "")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *root == "" || *arch == "" {
		return usageError{"--root and --arch are required"}
	}
	var acc deb.Accounts
	if err := json.Unmarshal([]byte(*accJSON), &acc); err != nil {
		return usageError{"--accounts: " + err.Error()}
	}
	var files []File
	if err := json.Unmarshal([]byte(*filesJSON), &files); err != nil {
		return usageError{"--files: " + err.Error()}
	}
	if err := deb.MergedUsr(*root, *arch); err != nil {
		return err
	}
	// base-files would ship /tmp; a program writing temporary files needs
	// it whether or not base-files is in the closure.
	if err := os.MkdirAll(filepath.Join(*root, "tmp"), 0o755); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(*root, "tmp"), 0o777|os.ModeSticky); err != nil {
		return err
	}
	// The alternatives the packages' postinsts would register.
	metas, err := os.ReadDir(filepath.Join(*root, metaDir))
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	var alts []deb.Alternative
	var scripted []string
	for _, e := range metas {
		b, err := os.ReadFile(filepath.Join(*root, metaDir, e.Name()))
		if err != nil {
			return err
		}
		var m debMeta
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("reading %s: %w", e.Name(), err)
		}
		alts = append(alts, m.Alternatives...)
		if len(m.Scripts) > 0 {
			scripted = append(scripted, m.Package)
		}
	}
	if _, err := deb.ApplyAlternatives(*root, alts); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(*root, "usr/share/ca-certificates")); err == nil {
		if _, err := deb.UpdateCACertificates(*root); err != nil {
			return err
		}
	}
	if err := deb.WriteAccounts(*root, acc); err != nil {
		return err
	}
	for _, f := range files {
		if err := writeFile(*root, f); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(filepath.Join(*root, metaDir)); err != nil {
		return err
	}
	if len(scripted) > 0 {
		fmt.Fprintf(stdout, "vmbuild: maintainer scripts not run (their effects are reproduced where a working system needs them): %s\n", strings.Join(scripted, ", "))
	}
	return nil
}

func writeFile(root string, f File) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	name := strings.TrimPrefix(filepath.Clean(f.Path), "/")
	if err := r.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return fmt.Errorf("adding %s: %w", f.Path, err)
	}
	_ = r.Remove(name)
	if f.Symlink != "" {
		if err := r.Symlink(f.Symlink, name); err != nil {
			return fmt.Errorf("adding %s: %w", f.Path, err)
		}
		return nil
	}
	mode := os.FileMode(f.Mode)
	if mode == 0 {
		mode = 0o644
	}
	if err := r.WriteFile(name, []byte(f.Content), mode); err != nil {
		return fmt.Errorf("adding %s: %w", f.Path, err)
	}
	return r.Chmod(name, mode)
}
