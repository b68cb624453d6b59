package install

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Managers deps-run knows, as lock.LayerDeps.Manager spells them.
const (
	ManagerNPM       = "npm"
	ManagerYarnV1    = "yarn-v1"
	ManagerYarnBerry = "yarn-berry"
	ManagerBundler   = "bundler"
)

// ToolDir is where deps-run unpacks the pinned package manager; its bin
// directory goes first on PATH.
const ToolDir = "/tmp/vmbuild-tool"

type runFlags struct {
	manager, mirror, lockfile, lockSHA string
	tool, toolEntry, toolName          string
	env                                envFlag
	command                            []string
}

// envFlag collects --env K=V.
type envFlag []string

func (e *envFlag) String() string { return strings.Join(*e, " ") }
func (e *envFlag) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("--env %q: want KEY=VALUE", v)
	}
	*e = append(*e, v)
	return nil
}

func parseRun(args []string) (*runFlags, error) {
	f := &runFlags{}
	fs := flag.NewFlagSet("deps-run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.manager, "manager", "", "")
	fs.StringVar(&f.mirror, "mirror", "", "")
	fs.StringVar(&f.lockfile, "lockfile", "", "")
	fs.StringVar(&f.lockSHA, "lockfile-sha256", "", "")
	fs.StringVar(&f.tool, "tool", "", "")
	fs.StringVar(&f.toolEntry, "tool-entry", "", "")
	fs.StringVar(&f.toolName, "tool-name", "", "")
	fs.Var(&f.env, "env", "")
	if err := fs.Parse(args); err != nil {
		return nil, usageError{err.Error()}
	}
	f.command = fs.Args()
	switch {
	case f.manager != ManagerNPM && f.manager != ManagerYarnV1 && f.manager != ManagerYarnBerry && f.manager != ManagerBundler:
		return nil, usageError{fmt.Sprintf("--manager %q: want npm, yarn-v1, yarn-berry or bundler", f.manager)}
	case f.mirror == "" || f.lockfile == "" || f.lockSHA == "":
		return nil, usageError{"--mirror, --lockfile and --lockfile-sha256 are required"}
	case len(f.command) == 0:
		return nil, usageError{"no command after --"}
	case (f.tool == "") != (f.toolEntry == ""):
		return nil, usageError{"--tool and --tool-entry go together"}
	}
	return f, nil
}

// depsRun checks the lockfile against its pin, serves or lays out the
// mirror, puts the pinned tool on PATH, and runs the command with the
// manager's offline configuration. It returns the command's exit code.
func depsRun(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	f, err := parseRun(args)
	if err != nil {
		return ExitUsage, err
	}
	if err := checkLockfile(f.lockfile, f.lockSHA); err != nil {
		return ExitError, err
	}
	env := os.Environ()
	var srv *mirrorServer
	switch f.manager {
	case ManagerNPM, ManagerYarnBerry:
		if srv, err = serveMirror(f.mirror); err != nil {
			return ExitError, err
		}
		defer srv.close()
	}
	env = append(env, managerEnv(f.manager, f.mirror, srv)...)
	env = append(env, f.env...)
	if f.tool != "" {
		bin, err := installTool(f.tool, f.toolEntry, f.toolName, f.manager)
		if err != nil {
			return ExitError, err
		}
		env = prependPath(env, bin)
	}
	cmd := exec.CommandContext(ctx, f.command[0], f.command[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = stdout, stderr
	runErr := cmd.Run()
	code := 0
	if runErr != nil {
		var ee *exec.ExitError
		if !errors.As(runErr, &ee) {
			return ExitError, fmt.Errorf("running %s: %w", f.command[0], runErr)
		}
		code = ee.ExitCode()
		if code <= 0 {
			code = ExitError
		}
	}
	if srv != nil {
		if missed := srv.misses(); len(missed) > 0 {
			fmt.Fprintf(stderr, "vmbuild: the install asked for %d file(s) that are not pinned (this step has no network; `vmbuild lock` pins what the lockfile needs for this layer's scope):\n", len(missed))
			for i, m := range missed {
				if i == 20 {
					fmt.Fprintf(stderr, "  … and %d more\n", len(missed)-20)
					break
				}
				fmt.Fprintf(stderr, "  %s\n", m)
			}
		}
	}
	if code != 0 {
		return code, fmt.Errorf("%s exited with status %d", f.command[0], code)
	}
	return 0, nil
}

// checkLockfile refuses a lockfile other than the one the lock pinned:
// the step would otherwise install from a set resolved for another file.
func checkLockfile(file, want string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading %s: %w (is it among the layer's inputs?)", file, err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != want {
		return fmt.Errorf("%s has sha256 %s, but the lock pinned its dependencies from one with sha256 %s: the tree changed since `vmbuild lock`; lock again", file, got[:12], short(want))
	}
	return nil
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// managerEnv is the offline configuration of each manager.
func managerEnv(manager, mirror string, srv *mirrorServer) []string {
	env := []string{"VMBUILD_DEPS_MIRROR=" + mirror}
	if srv != nil {
		env = append(env, "VMBUILD_DEPS_REGISTRY="+srv.url)
	}
	switch manager {
	case ManagerNPM:
		env = append(env,
			"npm_config_registry="+srv.url+"/",
			// Resolved URLs on any host move to the mirror.
			"npm_config_replace_registry_host=always",
			"npm_config_cache=/tmp/vmbuild-npm-cache",
			"npm_config_audit=false",
			"npm_config_fund=false",
			"npm_config_update_notifier=false",
			"npm_config_fetch_retries=0",
		)
	case ManagerYarnBerry:
		env = append(env,
			"YARN_NPM_REGISTRY_SERVER="+srv.url,
			"YARN_UNSAFE_HTTP_WHITELIST=127.0.0.1",
			"YARN_ENABLE_GLOBAL_CACHE=0",
			"YARN_ENABLE_TELEMETRY=0",
			"YARN_ENABLE_PROGRESS_BARS=0",
			"YARN_CACHE_FOLDER=/tmp/vmbuild-yarn-cache",
			"YARN_HTTP_RETRY=0",
		)
	case ManagerYarnV1:
		env = append(env,
			"YARN_YARN_OFFLINE_MIRROR="+mirror,
			"YARN_YARN_OFFLINE_MIRROR_PRUNING=false",
			"YARN_CACHE_FOLDER=/tmp/vmbuild-yarn-cache",
			"YARN_DISABLE_SELF_UPDATE_CHECK=true",
		)
	case ManagerBundler:
		env = append(env,
			// bundle install --local reads the pinned .gem files here.
			"BUNDLE_CACHE_PATH="+mirror,
			"BUNDLE_FROZEN=true",
			"BUNDLE_DISABLE_VERSION_CHECK=true",
			"BUNDLE_VERSION=system",
			"GEM_SPEC_CACHE=/tmp/vmbuild-gem-specs",
		)
	}
	return env
}

func prependPath(env []string, dir string) []string {
	for i, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			out := append([]string(nil), env...)
			out[i] = "PATH=" + dir + ":" + v
			return out
		}
	}
	return append(env, "PATH="+dir+":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}

// installTool unpacks the pinned package manager's tarball under ToolDir
// and writes a launcher for it in ToolDir/bin: `node ENTRY "$@"`.
func installTool(tgz, entry, name, manager string) (string, error) {
	if name == "" {
		switch manager {
		case ManagerNPM:
			name = "npm"
		default:
			name = "yarn"
		}
	}
	dir := filepath.Join(ToolDir, name)
	if err := untgz(tgz, dir); err != nil {
		return "", fmt.Errorf("unpacking the pinned %s (%s): %w", name, filepath.Base(tgz), err)
	}
	script := filepath.Join(dir, filepath.FromSlash(entry))
	if _, err := os.Stat(script); err != nil {
		return "", fmt.Errorf("the pinned %s has no %s: %w", name, entry, err)
	}
	bin := filepath.Join(ToolDir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", err
	}
	launcher := "#!/bin/sh\nexec node " + shellQuote(script) + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, name), []byte(launcher), 0o755); err != nil {
		return "", err
	}
	if name == "npm" {
		// npx ships beside npm-cli.js.
		npx := filepath.Join(filepath.Dir(script), "npx-cli.js")
		if _, err := os.Stat(npx); err == nil {
			_ = os.WriteFile(filepath.Join(bin, "npx"), []byte("#!/bin/sh\nexec node "+shellQuote(npx)+" \"$@\"\n"), 0o755)
		}
	}
	return bin, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// untgz extracts a gzip'd tar (an npm tarball) into dir, refusing entries
// outside it.
func untgz(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "/"))
		if name == "." || name == ".." || strings.HasPrefix(name, "../") {
			continue
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if h.Mode&0o111 != 0 {
				mode = 0o755
			}
			w, err := root.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
			if err != nil {
				return err
			}
			if _, err := io.Copy(w, tr); err != nil {
				w.Close()
				return err
			}
			if err := w.Close(); err != nil {
				return err
			}
		}
	}
}

// mirrorServer serves the mirror directory on loopback and remembers what
// was asked for and not found.
type mirrorServer struct {
	url    string
	srv    *http.Server
	mu     sync.Mutex
	missed map[string]bool
}

func serveMirror(dir string) (*mirrorServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening on loopback for the package mirror: %w", err)
	}
	m := &mirrorServer{url: "http://" + ln.Addr().String(), missed: map[string]bool{}}
	root, err := os.OpenRoot(dir)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("opening the package mirror: %w", err)
	}
	m.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
			// npm escapes a scoped name's slash in tarball URLs.
			name = strings.ReplaceAll(name, "%2f", "/")
			name = strings.ReplaceAll(name, "%2F", "/")
			f, err := root.Open(name)
			if err == nil {
				st, serr := f.Stat()
				if serr == nil && st.Mode().IsRegular() {
					defer f.Close()
					http.ServeContent(w, r, path.Base(name), time.Time{}, f)
					return
				}
				f.Close()
			}
			if doc, ok := packument(root, name, m.url); ok {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write(doc)
				return
			}
			m.mu.Lock()
			m.missed[r.Method+" /"+name] = true
			m.mu.Unlock()
			http.Error(w, "not pinned by vmbuild lock: /"+name, http.StatusNotFound)
		}),
	}
	go func() { _ = m.srv.Serve(ln) }()
	return m, nil
}

func (m *mirrorServer) misses() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.missed))
	for k := range m.missed {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (m *mirrorServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = m.srv.Shutdown(ctx)
}

// packument answers a registry's package document for name from the
// pinned tarballs alone (NAME/-/BASENAME-VERSION.tgz): npm asks for one
// when a lockfile entry has no resolved URL (npm's
// omit-lockfile-registry-resolved). Each version carries only its tarball
// URL and integrity: the lockfile says the rest.
func packument(root *os.Root, name, base string) ([]byte, bool) {
	if name == "" || strings.Contains(name, "/-/") || strings.HasSuffix(name, ".tgz") {
		return nil, false
	}
	basename := path.Base(name)
	if strings.HasPrefix(name, "@") != strings.Contains(name, "/") || strings.Count(name, "/") > 1 {
		return nil, false
	}
	entries, err := fs.ReadDir(root.FS(), name+"/-")
	if err != nil {
		return nil, false
	}
	type dist struct {
		Tarball   string `json:"tarball"`
		Integrity string `json:"integrity"`
	}
	type version struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		Dist    dist   `json:"dist"`
	}
	versions := map[string]version{}
	var latest string
	for _, e := range entries {
		v, ok := strings.CutPrefix(e.Name(), basename+"-")
		if !ok || !strings.HasSuffix(v, ".tgz") || !e.Type().IsRegular() {
			continue
		}
		v = strings.TrimSuffix(v, ".tgz")
		b, err := root.ReadFile(name + "/-/" + e.Name())
		if err != nil {
			continue
		}
		sum := sha512.Sum512(b)
		versions[v] = version{Name: name, Version: v, Dist: dist{
			Tarball:   base + "/" + name + "/-/" + e.Name(),
			Integrity: "sha512-" + base64.StdEncoding.EncodeToString(sum[:]),
		}}
		latest = v
	}
	if len(versions) == 0 {
		return nil, false
	}
	doc, err := json.Marshal(map[string]any{"name": name, "dist-tags": map[string]string{"latest": latest}, "versions": versions})
	return doc, err == nil
}
