package testenv

import (
	"context"
	"fmt"
	"github.com/vmbuild/vmbuild/internal/localsvc"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/buildkit/client"

	"github.com/vmbuild/vmbuild/buildkit"
)

// BuildKit is a running buildkitd.
type BuildKit struct {
	// Addr is the daemon's address (unix://…/buildkitd.sock).
	Addr string
	// StateDir is the daemon's state directory (root, socket, config, log);
	// empty for a daemon given by VMBUILD_TEST_BUILDKIT_ADDR.
	StateDir string
	// LogFile is buildkitd's log; empty for an external daemon.
	LogFile string
	// PID of buildkitd; 0 for an external daemon.
	PID int
	// Shared daemons are used by several tests: Stop does nothing on them,
	// and tests must not prune their cache or rely on a cold cache.
	Shared bool

	opts     buildkit.DaemonOptions
	stopOnce sync.Once
	watchdog *exec.Cmd
	lifeline *os.File
}

// BuildKitOption configures StartBuildKit.
type BuildKitOption func(*buildkit.DaemonOptions)

// WithInsecureRegistries lists non-loopback registries reached over http.
// (Loopback registries, such as StartRegistry's, need no configuration.)
func WithInsecureRegistries(hosts ...string) BuildKitOption {
	return func(o *buildkit.DaemonOptions) { o.InsecureRegistries = append(o.InsecureRegistries, hosts...) }
}

// WithDaemonOptions edits the buildkit.DaemonOptions directly.
func WithDaemonOptions(f func(*buildkit.DaemonOptions)) BuildKitOption { return BuildKitOption(f) }

// DaemonOptions are the options testenv gives buildkit.StartDaemon for a
// test daemon in stateDir running binary. hack/testsvc uses the same for
// the daemon that `make test` shares between test binaries.
func DaemonOptions(stateDir, binary string) buildkit.DaemonOptions {
	return buildkit.DaemonOptions{
		StateDir:        stateDir,
		Binary:          binary,
		Snapshotter:     "overlayfs",
		GCKeepStorageMB: 10000,
		StartTimeout:    90 * time.Second,
		// Tests of network: host layers; the solve still asks only for
		// recipes that opt in.
		NetworkHost: true,
	}
}

// overlayfsMagic is OVERLAYFS_SUPER_MAGIC: overlayfs cannot use a
// directory on overlayfs as its upper layer.
const overlayfsMagic = 0x794c7630

// CheckStateDir reports whether dir can hold buildkitd state with the
// overlayfs snapshotter, and whether its socket path is short enough.
func CheckStateDir(dir string) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("checking %s: %w", dir, err)
	}
	if st.Type == overlayfsMagic {
		return fmt.Errorf("%s is on overlayfs, which cannot hold the overlayfs snapshotter's layers: point TMPDIR at a directory on ext4, xfs, btrfs or tmpfs", dir)
	}
	if n := len(filepath.Join(dir, "buildkitd.sock")); n > 100 {
		return fmt.Errorf("socket path under %s is %d bytes, over the unix socket limit: use a shorter TMPDIR", dir, n)
	}
	return nil
}

// StartBuildKit starts a buildkitd of this test's own through
// buildkit.StartDaemon, with a fresh state directory under os.TempDir()
// and bin/buildkitd, and stops it (and removes its state) when the test
// ends. It takes a second or two and starts with a cold cache; prefer
// SharedBuildKit unless the test needs a daemon to itself (cache pruning,
// cold-cache measurements, daemon options, stopping the daemon).
//
// Should the test binary die without cleanup (a timeout, a signal), a
// watchdog process stops the daemon and removes its state.
func StartBuildKit(t testing.TB, opts ...BuildKitOption) *BuildKit {
	t.Helper()
	RequireIntegration(t)
	bk, err := startBuildKit(Bin(t, "buildkitd"), opts...)
	if err != nil {
		skipIfEnv(t, err)
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if l := localsvc.Tail(bk.LogFile, 30); l != "" {
				t.Logf("testenv: buildkitd %s log (last lines):\n%s", bk.Addr, l)
			}
		}
		bk.Stop()
	})
	return bk
}

// envError marks problems of the machine rather than of the code.
type envError struct{ error }

func skipIfEnv(t testing.TB, err error) {
	t.Helper()
	if _, ok := err.(envError); ok {
		skipOrFail(t, "testenv: %v", err)
	}
}

func startBuildKit(bin string, opts ...BuildKitOption) (*BuildKit, error) {
	dir, err := os.MkdirTemp("", "vmbk-")
	if err != nil {
		return nil, err
	}
	if err := CheckStateDir(dir); err != nil {
		os.RemoveAll(dir)
		return nil, envError{err}
	}
	o := DaemonOptions(dir, bin)
	for _, opt := range opts {
		opt(&o)
	}
	o.StateDir = dir
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := buildkit.StartDaemon(ctx, o)
	if err != nil {
		_ = buildkit.StopDaemon(context.Background(), o)
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting buildkitd: %w", err)
	}
	bk := &BuildKit{Addr: d.Addr, StateDir: dir, LogFile: d.LogFile, PID: d.PID, opts: o}
	if err := bk.startWatchdog(); err != nil {
		bk.Stop()
		return nil, fmt.Errorf("starting buildkitd watchdog: %w", err)
	}
	return bk, nil
}

// The watchdog is a shell in its own session that waits for EOF on a pipe
// whose write end only this process holds: when this process exits, for
// whatever reason, the shell stops buildkitd (as StopDaemon does) and
// cleans up as CleanupState does.
const watchdogScript = `read _ || true
kill -TERM "$0" 2>/dev/null || exit 0
i=0
while kill -0 "$0" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done
kill -KILL "$0" 2>/dev/null
sleep 0.5
runc list 2>/dev/null | awk -v d="$1/" 'NR > 1 && index($4, d) == 1 { print $1 }' | while read -r c; do runc delete --force "$c" 2>/dev/null; done
awk -v d="$1/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
rm -rf --one-file-system "$1"
`

func (b *BuildKit) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, strconv.Itoa(b.PID), b.StateDir)
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return err
	}
	r.Close()
	go func() { _ = cmd.Wait() }()
	b.watchdog, b.lifeline = cmd, w
	return nil
}

// Stop stops the daemon and removes its state directory. It does nothing
// on a shared daemon; it is safe to call more than once.
func (b *BuildKit) Stop() {
	if !b.Shared {
		b.stop()
	}
}

func (b *BuildKit) stop() {
	if b.StateDir == "" {
		return
	}
	b.stopOnce.Do(func() {
		if b.watchdog != nil {
			_ = b.watchdog.Process.Kill()
			b.lifeline.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = buildkit.StopDaemon(ctx, b.opts)
		_ = CleanupState(b.StateDir)
	})
}

// Client connects to the daemon through buildkit.Connect and closes the
// connection when the test ends.
func (b *BuildKit) Client(t testing.TB) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := buildkit.Connect(ctx, buildkit.ConnectOptions{Addr: b.Addr})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn.Client
}

var (
	shared struct {
		once sync.Once
		bk   *BuildKit
		err  error
	}
)

// SharedBuildKit returns the buildkitd shared by the tests of this test
// binary: the one named by VMBUILD_TEST_BUILDKIT_ADDR (which `make test`
// starts once for all packages), else one started on first use and
// stopped by Main (or, without Main, by its watchdog when the binary
// exits). Its cache is warm and shared: tests must use unique image names
// and must not prune it.
func SharedBuildKit(t testing.TB) *BuildKit {
	t.Helper()
	RequireIntegration(t)
	if addr := os.Getenv(EnvBuildKitAddr); addr != "" {
		return &BuildKit{Addr: addr, Shared: true}
	}
	bin := Bin(t, "buildkitd")
	shared.once.Do(func() {
		shared.bk, shared.err = startBuildKit(bin)
		if shared.bk != nil {
			shared.bk.Shared = true
		}
	})
	if shared.err != nil {
		skipIfEnv(t, shared.err)
		t.Fatalf("testenv: shared buildkitd: %v", shared.err)
	}
	return shared.bk
}

func stopShared() {
	if shared.bk != nil {
		shared.bk.stop()
	}
}
