package buildkit_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmbuild/vmbuild/buildkit"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestMissingBuildkitdSaysHowToGetIt(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := buildkit.FindBuildkitd("")
	if !errors.Is(err, errs.ErrMissingTool) || !strings.Contains(err.Error(), "make tools") || !strings.Contains(err.Error(), "--addr") {
		t.Fatalf("got %v", err)
	}
	_, err = buildkit.FindBuildkitd("/no/such/buildkitd")
	if !errors.Is(err, errs.ErrMissingTool) || !strings.Contains(err.Error(), "/no/such/buildkitd") {
		t.Fatalf("got %v", err)
	}
}

func TestMissingRuncSaysHowToGetIt(t *testing.T) {
	testenv.RequireIntegration(t)
	bin := testenv.Bin(t, "buildkitd")
	t.Setenv("PATH", t.TempDir()) // buildkitd given explicitly; runc not in PATH
	_, err := buildkit.StartDaemon(context.Background(), buildkit.DaemonOptions{StateDir: t.TempDir(), Binary: bin})
	if !errors.Is(err, errs.ErrMissingTool) || !strings.Contains(err.Error(), "apt-get install runc") {
		t.Fatalf("got %v", err)
	}
}

func TestUnreachableAddress(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := buildkit.Connect(ctx, buildkit.ConnectOptions{Addr: "tcp://127.0.0.1:1", Timeout: 2 * time.Second})
	if !errors.Is(err, errs.ErrBuildKitUnavailable) || !strings.Contains(err.Error(), "tcp://127.0.0.1:1") {
		t.Fatalf("got %v", err)
	}
}

// TestManagedDaemonLifecycle: start, reuse, status, stop — the real
// buildkitd, as `vmbuild daemon` drives it.
func TestManagedDaemonLifecycle(t *testing.T) {
	testenv.RequireIntegration(t)
	state, err := os.MkdirTemp("", "vmbk-life-") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(state)
	opts := buildkit.DaemonOptions{StateDir: state, Binary: testenv.Bin(t, "buildkitd"), InsecureRegistries: []string{"registry.internal:5000"}}
	ctx := context.Background()
	st, err := buildkit.DaemonStatus(ctx, opts)
	if err != nil || st.Running {
		t.Fatalf("status before start: %+v %v", st, err)
	}
	// Secrets in vmbuild's environment must not reach the daemon, which
	// outlives vmbuild and whose environment /proc shows.
	t.Setenv("COSIGN_PASSWORD", "hunter2-not-for-buildkitd")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "aws-not-for-buildkitd")
	t.Setenv("NO_PROXY", "registry.internal")
	d, err := buildkit.StartDaemon(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer buildkit.StopDaemon(ctx, opts)
	if !d.Running || d.PID == 0 || d.Version == "" {
		t.Fatalf("started %+v", d)
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", d.PID))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"COSIGN_PASSWORD", "hunter2", "AWS_SECRET_ACCESS_KEY", "aws-not-for"} {
		if strings.Contains(string(environ), secret) {
			t.Errorf("buildkitd's environment contains %q:\n%s", secret, strings.ReplaceAll(string(environ), "\x00", "\n"))
		}
	}
	for _, want := range []string{"PATH=", "TMPDIR=" + filepath.Join(state, "tmp"), "NO_PROXY=registry.internal"} {
		if !strings.Contains("\x00"+string(environ), "\x00"+want) {
			t.Errorf("buildkitd's environment lacks %q", want)
		}
	}
	cfg, _ := os.ReadFile(filepath.Join(state, "buildkitd.toml"))
	if !strings.Contains(string(cfg), `[registry."registry.internal:5000"]`) || !strings.Contains(string(cfg), `snapshotter = "overlayfs"`) {
		t.Errorf("config:\n%s", cfg)
	}
	again, err := buildkit.StartDaemon(ctx, opts)
	if err != nil || again.PID != d.PID {
		t.Fatalf("second start did not reuse pid %d: %+v %v", d.PID, again, err)
	}
	conn, err := buildkit.Connect(ctx, buildkit.ConnectOptions{Daemon: opts})
	if err != nil || !conn.Managed {
		t.Fatalf("connect: %+v %v", conn, err)
	}
	conn.Close()
	if err := buildkit.StopDaemon(ctx, opts); err != nil {
		t.Fatal(err)
	}
	st, _ = buildkit.DaemonStatus(ctx, opts)
	if st.Running {
		t.Fatal("still running after stop")
	}
}
