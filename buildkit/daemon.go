package buildkit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gofrs/flock"
	"github.com/moby/buildkit/client"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/localsvc"
)

// DaemonOptions configures the buildkitd that vmbuild manages itself.
// The zero value is valid: every field has a documented default.
type DaemonOptions struct {
	// StateDir holds the daemon's root, socket, config, pid and log.
	// Default: $XDG_CACHE_HOME/vmbuild/buildkitd (os.UserCacheDir).
	StateDir string
	// Binary is the buildkitd program. Default: "buildkitd" beside the
	// running executable, then in $PATH.
	Binary string
	// InsecureRegistries are host:port registries reached over plain http.
	// Loopback registries (localhost, 127.0.0.1, ::1) are always allowed
	// over http; list other hosts here.
	InsecureRegistries []string
	// Snapshotter for the OCI worker. Default "overlayfs".
	Snapshotter string
	// NetworkHost lets solves ask for the network.host entitlement
	// (insecure-entitlements in the daemon's config); a solve still has to
	// ask, which vmbuild does only for a recipe with a network: host
	// layer. Default off. A running managed daemon started without it is
	// not reused for a build that needs it: StartDaemon says how to
	// restart it.
	NetworkHost bool
	// GCKeepStorage bounds the build cache, in MB. Default 20000.
	GCKeepStorageMB int
	// StartTimeout bounds the wait for a freshly started daemon. Default 60s.
	StartTimeout time.Duration
	// Logger receives progress messages. Default: discard.
	Logger *slog.Logger
}

func (o DaemonOptions) withDefaults() DaemonOptions {
	if o.StateDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil || dir == "" {
			dir = filepath.Join(os.TempDir(), "vmbuild-cache")
		}
		o.StateDir = filepath.Join(dir, "vmbuild", "buildkitd")
	}
	if o.Snapshotter == "" {
		o.Snapshotter = "overlayfs"
	}
	if o.GCKeepStorageMB == 0 {
		o.GCKeepStorageMB = 20000
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 60 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// SocketPath is the unix socket of the managed daemon.
func (o DaemonOptions) SocketPath() string {
	return filepath.Join(o.withDefaults().StateDir, "buildkitd.sock")
}

// SocketAddr is the BuildKit address of the managed daemon.
func (o DaemonOptions) SocketAddr() string { return "unix://" + o.SocketPath() }

func (o DaemonOptions) pidFile() string    { return filepath.Join(o.StateDir, "buildkitd.pid") }
func (o DaemonOptions) logFile() string    { return filepath.Join(o.StateDir, "buildkitd.log") }
func (o DaemonOptions) configFile() string { return filepath.Join(o.StateDir, "buildkitd.toml") }
func (o DaemonOptions) lockFile() string   { return filepath.Join(o.StateDir, "daemon.lock") }

// Daemon describes a running managed buildkitd.
type Daemon struct {
	Addr     string `json:"address"`
	PID      int    `json:"pid"`
	StateDir string `json:"stateDir"`
	LogFile  string `json:"logFile"`
	Version  string `json:"version,omitempty"`
	Running  bool   `json:"running"`
}

// FindBuildkitd locates the buildkitd program, or returns an error that
// says how to get one.
func FindBuildkitd(explicit string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", fmt.Errorf("finding buildkitd: %w: %s: %v", errs.ErrMissingTool, explicit, err)
		}
		return explicit, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "buildkitd")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath("buildkitd"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("finding buildkitd: %w: buildkitd is not beside vmbuild nor in $PATH; "+
		"run `make tools` in the vmbuild checkout (it builds the pinned buildkitd into ./bin), "+
		"set VMBUILD_BUILDKITD, or give --addr to use a buildkitd you run yourself", errs.ErrMissingTool)
}

func checkRunc() error {
	if _, err := exec.LookPath("runc"); err != nil {
		return fmt.Errorf("finding runc: %w: buildkitd's OCI worker needs runc in $PATH; "+
			"install it with `apt-get install runc` (Debian/Ubuntu) or `dnf install runc`, "+
			"or give --addr to use a remote buildkitd", errs.ErrMissingTool)
	}
	return nil
}

func (o DaemonOptions) config() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# written by vmbuild; edits are overwritten\n")
	fmt.Fprintf(&b, "root = %q\n\n", filepath.Join(o.StateDir, "root"))
	if o.NetworkHost {
		fmt.Fprintf(&b, "insecure-entitlements = [%q]\n\n", "network.host")
	}
	fmt.Fprintf(&b, "[grpc]\n  address = [%q]\n\n", o.SocketAddr())
	fmt.Fprintf(&b, "[worker.oci]\n  enabled = true\n  snapshotter = %q\n  gc = true\n  gckeepstorage = %d\n\n", o.Snapshotter, o.GCKeepStorageMB*1000*1000)
	fmt.Fprintf(&b, "[worker.containerd]\n  enabled = false\n")
	regs := append([]string(nil), o.InsecureRegistries...)
	sort.Strings(regs)
	for _, r := range regs {
		fmt.Fprintf(&b, "\n[registry.%q]\n  http = true\n  insecure = true\n", r)
	}
	return b.Bytes()
}

// StartDaemon starts the managed buildkitd, or reuses it when it already
// runs. It is safe to call from several processes at once.
func StartDaemon(ctx context.Context, opts DaemonOptions) (*Daemon, error) {
	o := opts.withDefaults()
	if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating daemon state dir: %w", err)
	}
	unlock, err := lockFile(ctx, o.lockFile())
	if err != nil {
		return nil, err
	}
	defer unlock()

	if d, err := status(ctx, o); err == nil && d.Running {
		if o.NetworkHost && !allowsNetworkHost(o.configFile()) {
			return nil, fmt.Errorf("starting buildkitd: %w: the managed buildkitd (pid %d) was started without the network.host entitlement, which a network: host layer needs; "+
				"stop it with `vmbuild daemon stop` (the next build starts it with the entitlement), or drop network: host", errs.ErrBuildKitUnavailable, d.PID)
		}
		o.Logger.Debug("reusing managed buildkitd", "pid", d.PID, "addr", d.Addr)
		return d, nil
	}
	bin, err := FindBuildkitd(o.Binary)
	if err != nil {
		return nil, err
	}
	if err := checkRunc(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("starting buildkitd: %w: the managed daemon runs buildkitd with runc and needs root; "+
			"run as root, or give --addr to use a (rootless) buildkitd you run yourself", errs.ErrBuildKitUnavailable)
	}
	if err := os.WriteFile(o.configFile(), o.config(), 0o600); err != nil {
		return nil, fmt.Errorf("writing buildkitd config: %w", err)
	}
	_ = os.Remove(o.SocketPath())
	logf, err := os.OpenFile(o.logFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening buildkitd log: %w", err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n--- vmbuild starting %s at %s ---\n", bin, time.Now().UTC().Format(time.RFC3339))
	cmd := exec.Command(bin, "--config", o.configFile())
	// Temporary files (and bind mounts a killed daemon leaves behind) stay
	// in the state directory, not in the global TMPDIR.
	tmp := filepath.Join(o.StateDir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("creating daemon tmp dir: %w", err)
	}
	cmd.Env = daemonEnv(os.Environ(), tmp)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Dir = o.StateDir
	// A session of its own: the daemon outlives this vmbuild process and
	// does not get its terminal's signals.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	o.Logger.Info("starting managed buildkitd", "binary", bin, "state", o.StateDir)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting buildkitd: %w: %v", errs.ErrBuildKitUnavailable, err)
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if err := os.WriteFile(o.pidFile(), []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("writing pid file: %w", err)
	}

	deadline := time.Now().Add(o.StartTimeout)
	for {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("starting buildkitd: %w: it exited (%v); last lines of %s:\n%s",
				errs.ErrBuildKitUnavailable, err, o.logFile(), localsvc.Tail(o.logFile(), 15))
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if v, err := ping(ctx, o.SocketAddr(), 2*time.Second); err == nil {
			_ = cmd.Process.Release()
			return &Daemon{Addr: o.SocketAddr(), PID: pid, StateDir: o.StateDir, LogFile: o.logFile(), Version: v, Running: true}, nil
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			return nil, fmt.Errorf("starting buildkitd: %w: not ready after %s; last lines of %s:\n%s",
				errs.ErrBuildKitUnavailable, o.StartTimeout, o.logFile(), localsvc.Tail(o.logFile(), 15))
		}
	}
}

// allowsNetworkHost reports whether the config the running daemon was
// started with grants network.host.
func allowsNetworkHost(config string) bool {
	b, err := os.ReadFile(config)
	return err == nil && bytes.Contains(b, []byte(`insecure-entitlements = ["network.host"]`))
}

// daemonEnvNames are the variables the managed buildkitd inherits: what it
// needs to find runc and its helpers, reach registries through a proxy
// and trust their certificates, and BuildKit's and OpenTelemetry's own
// settings. Nothing else: the daemon outlives vmbuild, and its environment
// is readable in /proc as long as it runs, so COSIGN_PASSWORD, registry
// tokens and cloud credentials must not reach it.
var daemonEnvNames = map[string]bool{
	"PATH": true, "HOME": true, "USER": true, "LANG": true, "LC_ALL": true, "TZ": true,
	"HTTP_PROXY": true, "HTTPS_PROXY": true, "NO_PROXY": true, "ALL_PROXY": true,
	"http_proxy": true, "https_proxy": true, "no_proxy": true, "all_proxy": true,
	"SSL_CERT_FILE": true, "SSL_CERT_DIR": true,
	"XDG_RUNTIME_DIR": true, "XDG_CONFIG_HOME": true, "XDG_DATA_HOME": true,
	"GOMAXPROCS": true, "GOMEMLIMIT": true, "GOTRACEBACK": true,
}

// daemonEnvPrefixes are families of settings BuildKit documents
// (BUILDKIT_STEP_LOG_MAX_SIZE, BUILDKIT_DEBUG_…) and OpenTelemetry's
// exporter configuration.
var daemonEnvPrefixes = []string{"BUILDKIT_", "OTEL_"}

// daemonEnv filters environ down to the allowlist and sets TMPDIR to tmp.
func daemonEnv(environ []string, tmp string) []string {
	var env []string
	for _, kv := range environ {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "TMPDIR" {
			continue
		}
		keep := daemonEnvNames[k]
		for _, p := range daemonEnvPrefixes {
			keep = keep || strings.HasPrefix(k, p)
		}
		if keep {
			env = append(env, kv)
		}
	}
	return append(env, "TMPDIR="+tmp)
}

// DaemonStatus reports on the managed daemon without starting it.
func DaemonStatus(ctx context.Context, opts DaemonOptions) (*Daemon, error) {
	return status(ctx, opts.withDefaults())
}

func status(ctx context.Context, o DaemonOptions) (*Daemon, error) {
	d := &Daemon{Addr: o.SocketAddr(), StateDir: o.StateDir, LogFile: o.logFile()}
	b, err := os.ReadFile(o.pidFile())
	if err != nil {
		return d, nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return d, nil
	}
	if syscall.Kill(pid, 0) != nil || !isBuildkitd(pid) {
		return d, nil
	}
	d.PID = pid
	v, err := ping(ctx, d.Addr, 3*time.Second)
	if err != nil {
		return d, nil
	}
	d.Version = v
	d.Running = true
	return d, nil
}

// StopDaemon stops the managed daemon (SIGTERM, then SIGKILL after 15s).
// Stopping a daemon that does not run is not an error.
func StopDaemon(ctx context.Context, opts DaemonOptions) error {
	o := opts.withDefaults()
	b, err := os.ReadFile(o.pidFile())
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return nil
	}
	if !isBuildkitd(pid) {
		// A stale pid file: the number may belong to another process now.
		_ = os.Remove(o.pidFile())
		return nil
	}
	if syscall.Kill(pid, syscall.SIGTERM) != nil {
		_ = os.Remove(o.pidFile())
		return nil
	}
	deadline := time.Now().Add(15 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	_ = os.Remove(o.pidFile())
	return nil
}

func ping(ctx context.Context, addr string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := client.New(ctx, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	info, err := c.Info(ctx)
	if err != nil {
		return "", err
	}
	return info.BuildkitVersion.Version, nil
}

func lockFile(ctx context.Context, path string) (func(), error) {
	fl := flock.New(path, flock.SetPermissions(0o600))
	ok, err := fl.TryLockContext(ctx, 100*time.Millisecond)
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	if !ok {
		return nil, ctx.Err()
	}
	return func() { _ = fl.Unlock() }, nil
}

// isBuildkitd reports whether pid runs a buildkitd (its command line names
// one), so that a stale pid file never makes vmbuild signal another
// process that reused the number.
func isBuildkitd(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv0, _, _ := strings.Cut(string(b), "\x00")
	return strings.Contains(filepath.Base(argv0), "buildkitd")
}
