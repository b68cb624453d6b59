package yarn

import (
	"os"
	"syscall"
	"time"
)

func atime(fi os.FileInfo) time.Time {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return time.Now()
	}
	return time.Unix(st.Atim.Sec, st.Atim.Nsec)
}
