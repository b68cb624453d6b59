package testenv

import (
	"context"
	"fmt"
	"github.com/vmbuild/vmbuild/internal/localsvc"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Registry is a running distribution registry (bin/registry) on loopback,
// plain http. BuildKit reaches loopback registries over http without extra
// configuration.
type Registry struct {
	// Host is "127.0.0.1:PORT", the registry part of image references.
	Host string
	// URL is "http://127.0.0.1:PORT".
	URL string
	// Dir is the storage root (filesystem driver).
	Dir string
	// LogFile receives the registry's output.
	LogFile string

	cmd    *exec.Cmd
	exited chan struct{}
}

// Ref returns HOST/repo, to which callers append ":tag" or "@digest".
func (r *Registry) Ref(repo string) string { return r.Host + "/" + repo }

// RegistryOption configures StartRegistry.
type RegistryOption func(*registryConfig)

type registryConfig struct {
	delete bool
}

// WithStorageDelete enables manifest and blob deletion (storage.delete).
func WithStorageDelete() RegistryOption { return func(c *registryConfig) { c.delete = true } }

// StartRegistry starts a fresh, empty registry for this test on a free
// loopback port and stops it when the test ends. Starting one takes about
// 40ms, so every test gets its own: no shared state between tests.
func StartRegistry(t testing.TB, opts ...RegistryOption) *Registry {
	t.Helper()
	var cfg registryConfig
	for _, o := range opts {
		o(&cfg)
	}
	bin := Bin(t, "registry")
	dir := tempDir(t, "vmreg-")
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		r, err := startRegistry(bin, dir, cfg)
		if err == nil {
			t.Cleanup(func() {
				r.stop()
				if t.Failed() {
					if s := localsvc.Tail(r.LogFile, 20); s != "" {
						t.Logf("testenv: registry %s log (last lines):\n%s", r.Host, s)
					}
				}
			})
			return r
		}
		lastErr = err
	}
	t.Fatalf("testenv: starting registry: %v", lastErr)
	return nil
}

func startRegistry(bin, dir string, cfg registryConfig) (*Registry, error) {
	port, err := localsvc.FreePort()
	if err != nil {
		return nil, err
	}
	host := fmt.Sprintf("127.0.0.1:%d", port)
	data := filepath.Join(dir, "data")
	config := localsvc.RegistryConfig(data, host, cfg.delete)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "registry.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = dir
	cmd.Env = localsvc.RegistryEnv()
	// Dies with the test binary even when the binary is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &Registry{Host: host, URL: "http://" + host, Dir: data, LogFile: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(r.exited) }()
	err = localsvc.WaitUntil(context.Background(), 30*time.Second, r.exited, localsvc.RegistryReady(host))
	if err != nil {
		r.stop()
		return nil, fmt.Errorf("registry on %s: %w; log:\n%s", host, err, localsvc.Tail(logPath, 15))
	}
	return r, nil
}

func (r *Registry) stop() {
	select {
	case <-r.exited:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
}
