//go:build linux

package deb

import (
	"os"
	"path"
	"time"

	"golang.org/x/sys/unix"
)

// inParent runs fn with a descriptor of name's parent directory, opened
// through root (so confined), and name's last component.
func inParent(root *os.Root, name string, fn func(dirfd int, base string) error) error {
	d, err := root.Open(path.Dir(name))
	if err != nil {
		return err
	}
	defer d.Close()
	return fn(int(d.Fd()), path.Base(name))
}

// lutimes sets atime and mtime of name without following a symlink.
func lutimes(root *os.Root, name string, t time.Time) error {
	return inParent(root, name, func(fd int, base string) error {
		ts := unix.NsecToTimespec(t.UnixNano())
		return os.NewSyscallError("utimensat", unix.UtimesNanoAt(fd, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
	})
}

func mkfifo(root *os.Root, name string, mode uint32) error {
	return inParent(root, name, func(fd int, base string) error {
		return os.NewSyscallError("mkfifoat", unix.Mkfifoat(fd, base, mode))
	})
}
