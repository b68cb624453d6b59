//go:build !linux

package yarn

import (
	"os"
	"time"
)

// atime is unknown here: every file counts as read.
func atime(os.FileInfo) time.Time { return time.Now() }
