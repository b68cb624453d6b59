//go:build !linux

package deb

import (
	"errors"
	"io/fs"
	"os"
	"time"
)

// lutimes sets a non-symlink's times; symlink times are left alone here
// (the helper that extracts runs on Linux).
func lutimes(root *os.Root, name string, t time.Time) error {
	fi, err := root.Lstat(name)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil
	}
	return root.Chtimes(name, t, t)
}

func mkfifo(root *os.Root, name string, mode uint32) error {
	return errors.New("FIFOs are only supported on Linux")
}
