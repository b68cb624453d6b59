package testenv

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/archive"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vmbuild/vmbuild/internal/localsvc"
)

// Container is an image running under runc, as BuildKit runs its steps:
// the image's layers unpacked into a read-only root, its config's user,
// working directory, environment and command.
type Container struct {
	ID  string
	Log string // the process's output
	cmd *exec.Cmd
}

// Unpack applies the layers of the image manifestDigest in an OCI layout
// to a new directory (whiteouts honoured, as a container runtime does)
// and returns it with the image's config.
func Unpack(t testing.TB, layout string, manifestDigest digest.Digest) (string, *ocispec.Image) {
	t.Helper()
	blob := func(d digest.Digest) string {
		return filepath.Join(layout, "blobs", d.Algorithm().String(), d.Encoded())
	}
	var m ocispec.Manifest
	readJSON(t, blob(manifestDigest), &m)
	var cfg ocispec.Image
	readJSON(t, blob(m.Config.Digest), &cfg)
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		f, err := os.Open(blob(l.Digest))
		if err != nil {
			t.Fatal(err)
		}
		var r io.Reader = f
		if strings.HasSuffix(l.MediaType, "gzip") {
			zr, err := gzip.NewReader(f)
			if err != nil {
				t.Fatal(err)
			}
			r = zr
		}
		if _, err := archive.Apply(context.Background(), root, r); err != nil {
			t.Fatalf("unpacking layer %s: %v", l.Digest, err)
		}
		f.Close()
	}
	return root, &cfg
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// RunImage runs the unpacked image with runc: read-only root, a private
// /tmp, the host's network (so it reaches services on loopback), the
// image config's user, directory, environment (plus env) and command.
// The container is killed and deleted when the test ends.
func RunImage(t testing.TB, root string, cfg *ocispec.Image, env ...string) *Container {
	t.Helper()
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatalf("runc is not installed (apt-get install runc): %v", err)
	}
	uid, gid := imageUser(t, cfg.Config.User)
	spec := &rspec.Spec{
		Version: rspec.Version,
		Root:    &rspec.Root{Path: root, Readonly: true},
		Process: &rspec.Process{
			User: rspec.User{UID: uid, GID: gid},
			Args: append(append([]string(nil), cfg.Config.Entrypoint...), cfg.Config.Cmd...),
			Env:  append(append([]string(nil), cfg.Config.Env...), env...),
			Cwd:  firstNonEmpty(cfg.Config.WorkingDir, "/"),
			Rlimits: []rspec.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Hard: 4096, Soft: 4096},
			},
			NoNewPrivileges: true,
		},
		Hostname: "vmbuild-test",
		Mounts: []rspec.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
		},
		Linux: &rspec.Linux{
			// No network namespace: the host's loopback.
			Namespaces:    []rspec.LinuxNamespace{{Type: "pid"}, {Type: "ipc"}, {Type: "uts"}, {Type: "mount"}},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
	bundle := t.TempDir()
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	c := &Container{ID: fmt.Sprintf("vmbuild-test-%d-%d", os.Getpid(), time.Now().UnixNano()), Log: filepath.Join(bundle, "output.log")}
	logf, err := os.Create(c.Log)
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(runc, "run", "--bundle", bundle, c.ID)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("runc run: %v", err)
	}
	t.Cleanup(func() {
		_ = exec.Command(runc, "kill", c.ID, "KILL").Run()
		done := make(chan struct{})
		go func() { _ = c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
		}
		_ = exec.Command(runc, "delete", "-f", c.ID).Run()
		logf.Close()
	})
	return c
}

// Output is the last lines the process wrote.
func (c *Container) Output() string { return localsvc.Tail(c.Log, 30) }

// Exited reports whether the container's process has ended.
func (c *Container) Exited() bool {
	return c.cmd.ProcessState != nil || syscall.Kill(c.cmd.Process.Pid, 0) != nil
}

func imageUser(t testing.TB, user string) (uint32, uint32) {
	t.Helper()
	if user == "" {
		return 0, 0
	}
	u, g, _ := strings.Cut(user, ":")
	uid, err := strconv.ParseUint(u, 10, 32)
	if err != nil {
		t.Fatalf("image user %q: only numeric users are supported here", user)
	}
	gid := uid
	if g != "" {
		if gid, err = strconv.ParseUint(g, 10, 32); err != nil {
			t.Fatalf("image user %q: only numeric groups are supported here", user)
		}
	}
	return uint32(uid), uint32(gid)
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
