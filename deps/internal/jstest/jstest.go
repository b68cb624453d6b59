// Package jstest is test support for deps/npm and deps/yarn: trees as
// fs.FS, a loopback registry mirror that records what it is asked for,
// and running the real package managers against it. Tests only.
package jstest

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/vmbuild/vmbuild/deps"
)

// Integration skips t unless VMBUILD_INTEGRATION=1 (the network tests).
func Integration(t testing.TB) {
	t.Helper()
	if os.Getenv("VMBUILD_INTEGRATION") != "1" {
		t.Skip("needs the npm registry: run with VMBUILD_INTEGRATION=1")
	}
}

// Need skips t when a prerequisite is missing, or fails it under
// VMBUILD_INTEGRATION=1.
func Need(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("VMBUILD_INTEGRATION") == "1" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// Tree loads every file under dir into a MapFS, then applies edits (path →
// content; "" deletes).
func Tree(t testing.TB, dir string, edits map[string]string) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		m[filepath.ToSlash(rel)] = &fstest.MapFile{Data: b, Mode: 0o644}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range edits {
		if v == "" {
			delete(m, k)
		} else {
			m[k] = &fstest.MapFile{Data: []byte(v), Mode: 0o644}
		}
	}
	return m
}

// WriteTree writes the files of fsys into dir.
func WriteTree(t testing.TB, fsys fs.FS, dir string, files ...string) {
	t.Helper()
	for _, f := range files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Mirror is a loopback HTTP server serving pinned packages at their Path
// (under an optional prefix), recording every request.
type Mirror struct {
	*httptest.Server
	mu    sync.Mutex
	files map[string]string // URL path → file on disk
	reqs  []string
}

// NewMirror serves each package's blob from cacheDir (a deps.Fetcher
// CacheDir that has hashed them) at "/"+prefix+Path.
func NewMirror(t testing.TB, cacheDir, prefix string, pkgs []deps.Package) *Mirror {
	t.Helper()
	m := &Mirror{files: map[string]string{}}
	for _, p := range pkgs {
		blob := filepath.Join(cacheDir, "sha256", p.SHA256)
		if _, err := os.Stat(blob); err != nil {
			t.Fatalf("mirror: package %s not in the fetch cache: %v", p.ID(), err)
		}
		m.files["/"+prefix+p.Path] = blob
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.Server = &httptest.Server{Listener: l, Config: &http.Server{Handler: m}}
	m.Start()
	t.Cleanup(m.Close)
	return m
}

func (m *Mirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	m.reqs = append(m.reqs, r.Method+" "+r.URL.Path)
	blob, ok := m.files[r.URL.Path]
	m.mu.Unlock()
	if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeFile(w, r, blob)
}

// Requests returns the requests so far ("GET /path"), sorted.
func (m *Mirror) Requests() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := append([]string(nil), m.reqs...)
	sort.Strings(out)
	return out
}

// CheckExact fails t unless every request was a GET of a served path and
// every served path was requested (once or more).
func (m *Mirror) CheckExact(t testing.TB) {
	t.Helper()
	seen := map[string]bool{}
	bad := 0
	for _, r := range m.Requests() {
		method, p, _ := strings.Cut(r, " ")
		if _, ok := m.files[p]; !ok || method != http.MethodGet {
			if bad < 20 {
				t.Errorf("unexpected request %s", r)
			}
			bad++
			continue
		}
		seen[p] = true
	}
	if bad > 0 {
		t.Errorf("%d unexpected requests", bad)
	}
	var missing []string
	for p := range m.files {
		if !seen[p] {
			missing = append(missing, p)
		}
	}
	sort.Strings(missing)
	for i, p := range missing {
		if i < 20 {
			t.Errorf("pinned but never requested: %s", p)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d pinned packages never requested", len(missing))
	}
}

// Node returns the host's node, or skips/fails.
func Node(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("node")
	if err != nil {
		Need(t, "node not found: %v", err)
	}
	return p
}

// Untar unpacks a gzipped tarball into dir (regular files and dirs only).
func Untar(t testing.TB, tgz, dir string) {
	t.Helper()
	f, err := os.Open(tgz)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Clean(filepath.FromSlash(h.Name))
		if name == ".." || strings.HasPrefix(name, ".."+string(filepath.Separator)) || filepath.IsAbs(name) {
			t.Fatalf("tarball entry %q escapes", h.Name)
		}
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(out, tr); err != nil {
				t.Fatal(err)
			}
			out.Close()
		}
	}
}

// Run runs a command in dir with env (added to a minimal environment:
// PATH and HOME=dir), returning combined output; it fails t on error.
func Run(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
