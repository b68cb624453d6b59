package store

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"syscall"

	"github.com/opencontainers/go-digest"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/registry"
)

// chunk is how much is read between two looks at the context.
const chunk = 256 << 10

// openRegular opens name in root for reading, refusing anything but a
// regular file. The open itself never blocks: O_NONBLOCK makes opening a
// FIFO without a writer return at once (it is then refused), and has no
// effect on regular files.
func openRegular(root *os.Root, name string) (*os.File, os.FileInfo, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("%s: %w", name, errs.ErrNotFound)
		}
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s is not a regular file (%s): %w", name, typeName(st.Mode()), errs.ErrLayout)
	}
	return f, st, nil
}

func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return m.Type().String()
}

// readFile reads the regular file name in root, at most limit bytes;
// more is a LimitError named "<what> size (<limit>)", as for a registry
// response. The context is looked at between chunks.
func readFile(ctx context.Context, root *os.Root, name string, limit int64, what string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, st, err := openRegular(root, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st.Size() > limit {
		return nil, &errs.LimitError{Limit: fmt.Sprintf("%s size (%s)", what, registry.FormatBytes(limit)), Got: fmt.Sprintf("%d bytes", st.Size())}
	}
	b, err := io.ReadAll(io.LimitReader(ctxReader{ctx, f}, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, &errs.LimitError{Limit: fmt.Sprintf("%s size (%s)", what, registry.FormatBytes(limit)), Got: "more than " + registry.FormatBytes(limit)}
	}
	return b, nil
}

// ctxReader stops reading when its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	if len(p) > chunk {
		p = p[:chunk]
	}
	return c.r.Read(p)
}

// verifyingReader checks size and digest when the content ends.
type verifyingReader struct {
	ctx  context.Context
	f    *os.File
	want digest.Digest
	size int64
	n    int64
	h    hash.Hash
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := ctxReader{v.ctx, v.f}.Read(p)
	v.n += int64(n)
	v.h.Write(p[:n])
	if v.n > v.size {
		return n, fmt.Errorf("blob %s is larger than its descriptor's %d bytes: %w", v.want, v.size, errs.ErrLayout)
	}
	if errors.Is(err, io.EOF) {
		if v.n != v.size {
			return n, fmt.Errorf("blob %s has %d bytes, its descriptor says %d: %w", v.want, v.n, v.size, errs.ErrLayout)
		}
		if got := digest.NewDigest(v.want.Algorithm(), v.h); got != v.want {
			return n, fmt.Errorf("blob %s has digest %s: %w", v.want, got, errs.ErrLayout)
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.f.Close() }

// writeFileAtomic writes data to a temporary file beside name (inside
// root), syncs it and renames it over name.
func writeFileAtomic(root *os.Root, name string, data []byte, mode os.FileMode) error {
	return writeAtomic(root, name, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

func writeAtomic(root *os.Root, name string, mode os.FileMode, fill func(io.Writer) error) error {
	dir := path.Dir(name)
	var tmp *os.File
	var tmpName string
	var err error
	for i := 0; ; i++ {
		tmpName = path.Join(dir, fmt.Sprintf(".tmp-%s-%d-%d", path.Base(name), os.Getpid(), i))
		tmp, err = root.OpenFile(tmpName, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || i > 100 {
			return err
		}
	}
	defer root.Remove(tmpName)
	if err := fill(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return root.Rename(tmpName, name)
}
