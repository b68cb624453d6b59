// Package localsvc has the small pieces every local service launcher in
// vmbuild needs — the managed buildkitd, the test harness, the benchmark
// harness: a free loopback port, the tail of a log for error messages,
// and the distribution registry's configuration and readiness probe.
package localsvc

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// FreePort returns a currently free TCP port on 127.0.0.1. Another process
// may take it before the caller binds it: callers retry.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Tail returns the last n lines of a file ("" if it cannot be read), for
// error messages.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// RegistryConfig is a distribution registry (v3) configuration serving
// rootdir on addr: filesystem storage, warnings only, no access log, no
// upload purging; delete enables manifest deletion.
func RegistryConfig(rootdir, addr string, delete bool) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: %t
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
`, rootdir, delete, addr)
}

// RegistryEnv is the environment for the registry process: OpenTelemetry
// is on by default in distribution v3 and nothing listens for it.
func RegistryEnv() []string {
	return append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true")
}

// RegistryReady is a readiness probe: GET http://addr/v2/ answers 200.
func RegistryReady(addr string) func() error {
	hc := &http.Client{Timeout: time.Second}
	return func() error {
		resp, err := hc.Get("http://" + addr + "/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		return nil
	}
}

// WaitUntil polls ready every 20ms until it succeeds, exited closes (the
// process died), ctx ends, or timeout passes.
func WaitUntil(ctx context.Context, timeout time.Duration, exited <-chan struct{}, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", timeout, err)
		}
		select {
		case <-exited:
			return fmt.Errorf("process exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
