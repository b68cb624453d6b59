package harness

import (
	"context"
	"errors"
	"fmt"
	"github.com/vmbuild/vmbuild/internal/localsvc"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/buildkit/client"
)

// proc is a child process the harness owns: started with Pdeathsig (it
// dies with the harness), stopped with SIGTERM then SIGKILL.
type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	log    string
}

func startProc(name, logPath, dir string, env []string, argv ...string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = dir
	if env != nil {
		cmd.Env = env
	}
	// Own process group (git daemon forks per connection), and killed if
	// the harness dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, exited: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	return p, nil
}

func (p *proc) stop(grace time.Duration) {
	if p == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

func waitReady(ctx context.Context, p *proc, timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w; last lines of %s:\n%s", p.name, timeout, err, p.log, localsvc.Tail(p.log, 15))
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited; last lines of %s:\n%s", p.name, p.log, localsvc.Tail(p.log, 15))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ---- registry behind a byte-counting proxy ----

// Registry is a distribution registry (bin/registry) on loopback, reached
// only through an in-process reverse proxy that counts the bytes clients
// upload: the bodies of every PUT, PATCH and POST under /v2/, per
// repository. Every client (buildkitd, vmbuild, cosign) is given the
// proxy's address, so the count is what each contender sent over the wire:
// blobs the registry already has are not uploaded (clients check first),
// and are not counted.
type Registry struct {
	// Host is the proxy's "127.0.0.1:PORT", the registry of image refs.
	Host string
	// Dir is the storage root.
	Dir string

	backend *proc
	srv     *http.Server

	mu     sync.Mutex
	counts map[string]*Upload
}

// Upload counts the bytes uploaded to one repository.
type Upload struct {
	Blobs     int64 // blob upload bodies (PATCH/PUT/POST on /blobs/uploads/)
	Manifests int64 // manifest bodies (PUT /manifests/)
	Requests  int   // uploading requests
}

// Total is Blobs + Manifests.
func (u Upload) Total() int64 { return u.Blobs + u.Manifests }

// StartRegistry starts bin/registry and the counting proxy in front of it.
func StartRegistry(ctx context.Context, bin, dir string) (*Registry, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		r, err := startRegistry(ctx, bin, dir)
		if err == nil {
			return r, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("starting registry: %w", lastErr)
}

func startRegistry(ctx context.Context, bin, dir string) (*Registry, error) {
	port, err := localsvc.FreePort()
	if err != nil {
		return nil, err
	}
	backend := fmt.Sprintf("127.0.0.1:%d", port)
	data := filepath.Join(dir, "data")
	cfg := localsvc.RegistryConfig(data, backend, false)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	env := localsvc.RegistryEnv()
	p, err := startProc("registry", filepath.Join(dir, "registry.log"), dir, env, bin, "serve", cfgPath)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, p, 30*time.Second, localsvc.RegistryReady(backend)); err != nil {
		p.stop(5 * time.Second)
		return nil, err
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		p.stop(5 * time.Second)
		return nil, err
	}
	r := &Registry{Host: l.Addr().String(), Dir: data, backend: p, counts: map[string]*Upload{}}
	target := &url.URL{Scheme: "http", Host: backend}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// The registry builds upload Location URLs from the Host
			// header: keep the proxy's, so every request comes back here.
			pr.Out.Host = pr.In.Host
			r.count(pr.Out)
		},
		FlushInterval: -1,
		ErrorLog:      nil,
	}
	r.srv = &http.Server{Handler: rp, ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = r.srv.Serve(l) }()
	return r, nil
}

// repoOf returns the repository of a /v2/<name>/(blobs|manifests)/… path
// and which of the two it is.
func repoOf(path string) (repo, kind string) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return "", ""
	}
	// The route is the last /blobs/ or /manifests/ (a repository name
	// may contain either word).
	at, kind := -1, ""
	for _, k := range []string{"/blobs/", "/manifests/"} {
		if i := strings.LastIndex(rest, k); i > at {
			at, kind = i, strings.Trim(k, "/")
		}
	}
	if at <= 0 {
		return "", ""
	}
	return rest[:at], kind
}

func (r *Registry) count(req *http.Request) {
	switch req.Method {
	case http.MethodPut, http.MethodPatch, http.MethodPost:
	default:
		return
	}
	repo, kind := repoOf(req.URL.Path)
	if repo == "" || req.Body == nil || req.Body == http.NoBody {
		return
	}
	r.mu.Lock()
	u := r.counts[repo]
	if u == nil {
		u = &Upload{}
		r.counts[repo] = u
	}
	u.Requests++
	r.mu.Unlock()
	req.Body = &countingBody{ReadCloser: req.Body, add: func(n int64) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if kind == "manifests" {
			u.Manifests += n
		} else {
			u.Blobs += n
		}
	}}
}

type countingBody struct {
	io.ReadCloser
	add func(int64)
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if n > 0 {
		c.add(int64(n))
	}
	return n, err
}

// Uploaded returns the bytes uploaded so far to repo.
func (r *Registry) Uploaded(repo string) Upload {
	r.mu.Lock()
	defer r.mu.Unlock()
	if u := r.counts[repo]; u != nil {
		return *u
	}
	return Upload{}
}

// Ref returns HOST/repo.
func (r *Registry) Ref(repo string) string { return r.Host + "/" + repo }

// Stop stops the proxy and the registry.
func (r *Registry) Stop() {
	if r == nil {
		return
	}
	if r.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = r.srv.Shutdown(ctx)
		cancel()
	}
	r.backend.stop(5 * time.Second)
}

// ---- git daemon ----

// GitDaemon serves the bare repositories under BaseDir over git:// on
// loopback.
type GitDaemon struct {
	Host    string
	BaseDir string
	p       *proc
}

// URL returns git://HOST/name.git.
func (g *GitDaemon) URL(name string) string { return fmt.Sprintf("git://%s/%s.git", g.Host, name) }

// StartGitDaemon starts `git daemon --export-all` for base.
func StartGitDaemon(ctx context.Context, base, logPath string, env []string) (*GitDaemon, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := localsvc.FreePort()
		if err != nil {
			return nil, err
		}
		p, err := startProc("git daemon", logPath, base, env, "git", "daemon", "--reuseaddr", "--export-all",
			"--informative-errors", "--base-path="+base, "--listen=127.0.0.1", fmt.Sprintf("--port=%d", port), base)
		if err != nil {
			return nil, err
		}
		host := fmt.Sprintf("127.0.0.1:%d", port)
		err = waitReady(ctx, p, 20*time.Second, func() error {
			c, err := net.DialTimeout("tcp", host, time.Second)
			if err != nil {
				return err
			}
			return c.Close()
		})
		if err == nil {
			return &GitDaemon{Host: host, BaseDir: base, p: p}, nil
		}
		p.stop(2 * time.Second)
		lastErr = err
	}
	return nil, fmt.Errorf("starting git daemon: %w", lastErr)
}

// Stop stops the daemon.
func (g *GitDaemon) Stop() {
	if g != nil {
		g.p.stop(5 * time.Second)
	}
}

// ---- buildkitd ----

// BuildKitd is the benchmark's own buildkitd: own state directory, own
// socket, the loopback registry configured for plain http.
type BuildKitd struct {
	Addr     string
	StateDir string
	LogFile  string
	Version  string
	p        *proc
}

const overlayfsMagic = 0x794c7630

// StartBuildKitd starts bin/buildkitd with state in dir (which must not be
// on overlayfs, and must be short enough for a unix socket path).
func StartBuildKitd(ctx context.Context, bin, dir string, insecureRegistries []string) (*BuildKitd, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return nil, err
	}
	if st.Type == overlayfsMagic {
		return nil, fmt.Errorf("%s is on overlayfs, which cannot hold buildkitd's overlayfs snapshots: set TMPDIR to a directory on ext4, xfs, btrfs or tmpfs", dir)
	}
	sock := filepath.Join(dir, "buildkitd.sock")
	if len(sock) > 100 {
		return nil, fmt.Errorf("socket path %s is too long for a unix socket: use a shorter TMPDIR", sock)
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return nil, fmt.Errorf("buildkitd needs runc in $PATH (make deps)")
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("buildkitd with runc needs root: run bench/run as root")
	}
	addr := "unix://" + sock
	var b strings.Builder
	fmt.Fprintf(&b, "root = %q\n\n[grpc]\n  address = [%q]\n\n", filepath.Join(dir, "root"), addr)
	// Garbage collection would make the cache, and so the timings, depend
	// on when it last ran: the benchmark prunes explicitly instead.
	fmt.Fprintf(&b, "[worker.oci]\n  enabled = true\n  snapshotter = \"overlayfs\"\n  gc = false\n\n[worker.containerd]\n  enabled = false\n")
	for _, h := range insecureRegistries {
		fmt.Fprintf(&b, "\n[registry.%q]\n  http = true\n  insecure = true\n", h)
	}
	cfg := filepath.Join(dir, "buildkitd.toml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "buildkitd.log")
	p, err := startProc("buildkitd", logPath, dir, nil, bin, "--config", cfg)
	if err != nil {
		return nil, err
	}
	bk := &BuildKitd{Addr: addr, StateDir: dir, LogFile: logPath, p: p}
	err = waitReady(ctx, p, 90*time.Second, func() error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		c, err := client.New(cctx, addr)
		if err != nil {
			return err
		}
		defer c.Close()
		info, err := c.Info(cctx)
		if err != nil {
			return err
		}
		bk.Version = info.BuildkitVersion.Version
		return nil
	})
	if err != nil {
		p.stop(10 * time.Second)
		return nil, err
	}
	return bk, nil
}

// Stop stops buildkitd (SIGTERM, then SIGKILL after 20 s).
func (b *BuildKitd) Stop() {
	if b != nil {
		b.p.stop(20 * time.Second)
	}
}
