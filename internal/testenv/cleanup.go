package testenv

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// CleanupState removes what a stopped buildkitd may have left in its state
// directory dir (a daemon killed with SIGKILL, as some tests do, leaves
// running containers and mounted overlays): it force-deletes the runc
// containers whose bundle is under dir, lazily unmounts every mount under
// dir and every bind mount of something under dir (buildkitd's temporary
// mounts in $TMPDIR), and removes dir. The daemon must already be stopped.
func CleanupState(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil || dir == "/" {
		return fmt.Errorf("refusing to clean up %q", dir)
	}
	var errs []error
	// BuildKit runs runc with its default state root (/run/runc), shared
	// by every daemon: delete only containers whose bundle is under dir.
	if out, err := exec.Command("runc", "list", "--format", "json").Output(); err == nil {
		var list []struct {
			ID     string `json:"id"`
			Bundle string `json:"bundle"`
		}
		_ = json.Unmarshal(out, &list)
		for _, c := range list {
			if strings.HasPrefix(c.Bundle, dir+"/") {
				_ = exec.Command("runc", "delete", "--force", c.ID).Run()
			}
		}
	}
	if err := unmount(dir, true); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// UnmountAll lazily unmounts every mount point at or below dir, deepest
// first, so that dir can be removed without reaching into the mounts.
func UnmountAll(dir string) error {
	return unmount(dir, false)
}

// unmount unmounts the mounts at or below dir and, with sources, also the
// bind mounts elsewhere whose source lies below dir (buildkitd's temporary
// mounts of its snapshots in $TMPDIR, left behind when it is killed).
// Emptied temporary mount points named buildkit-mount* are removed.
func unmount(dir string, sources bool) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	mounts, err := readMountinfo()
	if err != nil {
		return err
	}
	// Where dir lives: the device and path inside that filesystem.
	var fsDev, fsPath string
	best := -1
	for _, m := range mounts {
		if (dir == m.point || strings.HasPrefix(dir, strings.TrimSuffix(m.point, "/")+"/")) && len(m.point) > best {
			best = len(m.point)
			fsDev = m.dev
			fsPath = filepath.Join(m.root, strings.TrimPrefix(dir, m.point))
		}
	}
	var points []string
	for _, m := range mounts {
		under := m.point == dir || strings.HasPrefix(m.point, dir+"/")
		from := sources && fsDev != "" && m.dev == fsDev && strings.HasPrefix(strings.TrimSuffix(m.root, "//deleted"), fsPath+"/")
		if under || from {
			points = append(points, m.point)
		}
	}
	// Deepest first; a path mounted twice is unmounted twice.
	sort.SliceStable(points, func(i, j int) bool {
		return strings.Count(points[i], "/") > strings.Count(points[j], "/")
	})
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", p, err))
			continue
		}
		if strings.HasPrefix(filepath.Base(p), "buildkit-mount") && !strings.HasPrefix(p, dir+"/") {
			_ = os.Remove(p) // only if empty
		}
	}
	return errors.Join(errs...)
}

type mountEntry struct{ dev, root, point string }

func readMountinfo() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		out = append(out, mountEntry{dev: fields[2], root: unescapeMountinfo(fields[3]), point: unescapeMountinfo(fields[4])})
	}
	return out, sc.Err()
}

// unescapeMountinfo decodes the octal escapes (\040 for space, …) of
// /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
