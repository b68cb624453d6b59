package deb

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/errs"
)

// ExtractOptions tunes Extract. The zero value is the default.
type ExtractOptions struct {
	// SHA256, if set, is the .deb's expected hex sha256 (the pin's). A
	// mismatch is a *deps.HashError naming Package, URL and both digests.
	SHA256 string
	// Package and URL name the .deb in errors (Package.ID(), Package.URL).
	Package, URL string
	// NoChown leaves files owned by the extracting user. By default the
	// archive's numeric uid/gid are applied when running as root (euid 0)
	// and ignored otherwise.
	NoChown bool
	// MaxSize bounds the unpacked data (sum of regular file sizes).
	// Default 8 GiB.
	MaxSize int64
	// Logger gets one debug line per package. Default: discard.
	Logger *slog.Logger
}

// Contents is what Extract found and did.
type Contents struct {
	// Package, Version and Architecture from the control file.
	Package, Version, Architecture string
	// Control is the control file's text.
	Control string
	// Scripts maps each maintainer script present (preinst, postinst,
	// prerm, postrm, config) to its text. None of them is run.
	Scripts map[string]string
	// Triggers is the control area's triggers file, if any.
	Triggers string
	// Alternatives are the literal `update-alternatives --install`
	// commands of the postinst (see ApplyAlternatives); AlternativesSkipped
	// those it could not read (shell variables).
	Alternatives        []Alternative
	AlternativesSkipped []string
	// Conffiles lists the package's configuration files (absolute
	// paths), as dpkg would register them.
	Conffiles []string
	// Paths lists every entry written, as absolute paths in archive
	// order ("/usr/bin/node").
	Paths []string
	// DataFormat is the data member's name: "data.tar.xz", ….
	DataFormat string
	// SHA256 and Size of the .deb as read.
	SHA256 string
	Size   int64
}

// ScriptNames returns the names of the maintainer scripts present,
// sorted.
func (c *Contents) ScriptNames() []string {
	var out []string
	for n := range c.Scripts {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ExtractFile is Extract from a file on disk; with opt.SHA256 set the file
// is hashed before anything is written.
func ExtractFile(ctx context.Context, debPath, root string, opt ExtractOptions) (*Contents, error) {
	f, err := os.Open(debPath)
	if err != nil {
		return nil, fmt.Errorf("extracting %s: %w", debPath, err)
	}
	defer f.Close()
	if opt.Package == "" {
		opt.Package = path.Base(debPath)
	}
	return Extract(ctx, f, root, opt)
}

// Extract unpacks a .deb's data archive under root, the way dpkg --unpack
// would lay it out but without running anything: regular files,
// directories, symlinks and hard links with their modes (setuid bits
// included), numeric owners (when root) and mtimes. Writes are confined
// to root with os.Root: an entry whose path or whose parent's symlinks
// lead outside root is an error, and a symlink's target (absolute ones
// included) is stored as written, never followed while writing. Device
// nodes are refused (Debian's archive ships none; the container runtime
// provides /dev); FIFOs are created.
//
// An existing non-directory at an entry's path is replaced, as dpkg
// does; an existing directory (or a symlink to one, such as the
// merged-/usr links) is kept, with its metadata, for a directory entry.
//
// If opt.SHA256 is set and r is an io.Seeker (an *os.File), the .deb is
// hashed before anything is written; otherwise it is hashed as it is read
// and a mismatch is reported after unpacking, so the caller must then
// discard root.
func Extract(ctx context.Context, r io.Reader, root string, opt ExtractOptions) (*Contents, error) {
	name := opt.Package
	if name == "" {
		name = "package"
	}
	if opt.SHA256 != "" && !deps.IsSHA256(opt.SHA256) {
		return nil, fmt.Errorf("extracting %s: %w: expected sha256 %q is not 64 hex digits", name, errs.ErrDependency, opt.SHA256)
	}
	if s, ok := r.(io.Seeker); ok && opt.SHA256 != "" {
		start, err := s.Seek(0, io.SeekCurrent)
		if err == nil {
			h := sha256.New()
			n, err := io.Copy(h, r)
			if err != nil {
				return nil, fmt.Errorf("extracting %s: hashing: %w", name, err)
			}
			if err := checkSum(opt, hex.EncodeToString(h.Sum(nil)), n); err != nil {
				return nil, err
			}
			if _, err := s.Seek(start, io.SeekStart); err != nil {
				return nil, fmt.Errorf("extracting %s: %w", name, err)
			}
		}
	}
	rt, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("extracting %s: opening root: %w", name, err)
	}
	defer rt.Close()
	x := &extractor{
		root:  rt,
		opt:   opt,
		name:  name,
		chown: !opt.NoChown && os.Geteuid() == 0,
		max:   opt.MaxSize,
		log:   opt.Logger,
	}
	if x.max <= 0 {
		x.max = 8 << 30
	}
	if x.log == nil {
		x.log = slog.New(slog.DiscardHandler)
	}
	h := sha256.New()
	cr := &countingReader{r: r}
	c, err := x.run(ctx, io.TeeReader(cr, h))
	if err != nil {
		return nil, fmt.Errorf("extracting %s: %w", name, err)
	}
	c.SHA256 = hex.EncodeToString(h.Sum(nil))
	c.Size = cr.n
	if opt.SHA256 != "" {
		if err := checkSum(opt, c.SHA256, c.Size); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func checkSum(opt ExtractOptions, actual string, n int64) error {
	if actual == strings.ToLower(opt.SHA256) {
		return nil
	}
	return &deps.HashError{Package: opt.Package, URL: deps.RedactURL(opt.URL), Source: "the pinned sha256", Expected: opt.SHA256, Actual: actual}
}

type extractor struct {
	root    *os.Root
	opt     ExtractOptions
	name    string
	chown   bool
	max     int64
	written int64
	log     *slog.Logger
	dirs    []*tar.Header // created by this package, metadata applied last
}

// run reads the ar archive: debian-binary, control.tar.*, data.tar.*.
func (x *extractor) run(ctx context.Context, r io.Reader) (*Contents, error) {
	start := time.Now()
	br := bufio.NewReaderSize(r, 1<<16)
	magic := make([]byte, 8)
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != "!<arch>\n" {
		return nil, fmt.Errorf("%w: not a .deb (no ar magic)", errs.ErrDependency)
	}
	c := &Contents{Scripts: map[string]string{}}
	seenBinary, seenControl, seenData := false, false, false
	for {
		hdr := make([]byte, 60)
		if _, err := io.ReadFull(br, hdr); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%w: reading ar header: %v", errs.ErrDependency, err)
		}
		if string(hdr[58:60]) != "`\n" {
			return nil, fmt.Errorf("%w: bad ar member header", errs.ErrDependency)
		}
		member := strings.TrimSuffix(strings.TrimSpace(string(hdr[0:16])), "/")
		size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("%w: ar member %q has a bad size", errs.ErrDependency, member)
		}
		body := io.LimitReader(br, size)
		switch {
		case member == "debian-binary":
			b, _ := io.ReadAll(io.LimitReader(body, 64))
			if !strings.HasPrefix(string(b), "2.") {
				return nil, fmt.Errorf("%w: unsupported .deb format %q", errs.ErrDependency, strings.TrimSpace(string(b)))
			}
			seenBinary = true
		case strings.HasPrefix(member, "control.tar"):
			if !seenBinary {
				return nil, fmt.Errorf("%w: %s before debian-binary", errs.ErrDependency, member)
			}
			if err := x.readControl(member, body, c); err != nil {
				return nil, err
			}
			seenControl = true
		case strings.HasPrefix(member, "data.tar"):
			if !seenControl {
				return nil, fmt.Errorf("%w: %s before control.tar", errs.ErrDependency, member)
			}
			if seenData {
				return nil, fmt.Errorf("%w: two data members", errs.ErrDependency)
			}
			c.DataFormat = member
			if err := x.unpack(ctx, member, body, c); err != nil {
				return nil, err
			}
			seenData = true
		case strings.HasPrefix(member, "_"):
			// Reserved for extensions (signatures): ignored, as dpkg does.
		default:
			return nil, fmt.Errorf("%w: unexpected ar member %q", errs.ErrDependency, member)
		}
		if _, err := io.Copy(io.Discard, body); err != nil {
			return nil, fmt.Errorf("reading ar member %s: %w", member, err)
		}
		if size%2 == 1 {
			if _, err := br.ReadByte(); err != nil && err != io.EOF {
				return nil, fmt.Errorf("reading ar padding: %w", err)
			}
		}
	}
	if !seenData {
		return nil, fmt.Errorf("%w: no data.tar member", errs.ErrDependency)
	}
	// Anything after the last member is read so the hash covers it all.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return nil, err
	}
	if s, ok := c.Scripts["postinst"]; ok {
		c.Alternatives, c.AlternativesSkipped = ParseAlternatives(c.Package, s)
	}
	x.log.Debug("extracted", "package", x.name, "entries", len(c.Paths), "took", time.Since(start).Round(time.Millisecond))
	return c, nil
}

func decompress(member string, r io.Reader) (io.Reader, func(), error) {
	ext := strings.TrimPrefix(path.Ext(member), ".")
	if strings.HasSuffix(member, ".tar") {
		ext = ""
	}
	nop := func() {}
	// The decompressors read byte by byte from an io.ByteReader; give them
	// a buffered one, not the ar member's LimitedReader.
	r = bufio.NewReaderSize(r, 1<<16)
	switch ext {
	case "":
		return r, nop, nil
	case "gz":
		z, err := gzip.NewReader(r)
		return z, nop, err
	case "xz":
		z, err := xz.NewReader(r)
		return z, nop, err
	case "zst":
		z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nop, err
		}
		return z, z.Close, nil
	case "bz2":
		return bzip2.NewReader(r), nop, nil
	}
	return nil, nop, fmt.Errorf("unsupported compression %q", ext)
}

var scriptNames = map[string]bool{"preinst": true, "postinst": true, "prerm": true, "postrm": true, "config": true}

func (x *extractor) readControl(member string, r io.Reader, c *Contents) error {
	zr, closer, err := decompress(member, r)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", errs.ErrDependency, member, err)
	}
	defer closer()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: reading %s: %v", errs.ErrDependency, member, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		n := strings.TrimPrefix(h.Name, "./")
		b, err := io.ReadAll(io.LimitReader(tr, 4<<20))
		if err != nil {
			return fmt.Errorf("%w: reading %s/%s: %v", errs.ErrDependency, member, n, err)
		}
		switch {
		case n == "control":
			c.Control = string(b)
			_ = readParagraphs(bytes.NewReader(b), "control", nil, func(p *paragraph) error {
				c.Package, c.Version, c.Architecture = p.Get("Package"), p.Get("Version"), p.Get("Architecture")
				return nil
			})
		case n == "conffiles":
			for _, l := range strings.Split(string(b), "\n") {
				if f := strings.Fields(l); len(f) > 0 {
					// "remove-on-upgrade /etc/x" flags come last.
					c.Conffiles = append(c.Conffiles, f[0])
				}
			}
		case n == "triggers":
			c.Triggers = string(b)
		case scriptNames[n]:
			c.Scripts[n] = string(b)
		}
	}
	return nil
}

// cleanEntry turns a tar name into a root-relative path; "" for the root
// itself.
func cleanEntry(name string) (string, error) {
	n := strings.TrimPrefix(name, "./")
	n = strings.TrimLeft(n, "/")
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: entry %q leaves the root", errs.ErrUnsafePatch, name)
		}
	}
	n = path.Clean("/" + n)[1:]
	return n, nil
}

func (x *extractor) unpack(ctx context.Context, member string, r io.Reader, c *Contents) error {
	zr, closer, err := decompress(member, r)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", errs.ErrDependency, member, err)
	}
	defer closer()
	tr := tar.NewReader(zr)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: reading %s: %v", errs.ErrDependency, member, err)
		}
		name, err := cleanEntry(h.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue
		}
		if err := x.entry(name, h, tr); err != nil {
			return fmt.Errorf("writing /%s: %w", name, err)
		}
		c.Paths = append(c.Paths, "/"+name)
	}
	// Directory metadata last, deepest first, so that writing into them
	// neither fails (read-only modes) nor moves their mtimes.
	sort.SliceStable(x.dirs, func(i, j int) bool { return len(x.dirs[i].Name) > len(x.dirs[j].Name) })
	for _, h := range x.dirs {
		name, _ := cleanEntry(h.Name)
		if err := x.meta(name, h, false); err != nil {
			return fmt.Errorf("writing /%s: %w", name, err)
		}
	}
	return nil
}

// prepare removes whatever non-directory sits at name, and makes sure the
// parent directory exists.
func (x *extractor) prepare(name string) error {
	if dir := path.Dir(name); dir != "." {
		if err := x.root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	fi, err := x.root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.IsDir():
		return fmt.Errorf("%w: a directory is in the way", fs.ErrExist)
	}
	return x.root.Remove(name)
}

func (x *extractor) entry(name string, h *tar.Header, tr io.Reader) error {
	switch h.Typeflag {
	case tar.TypeDir:
		// A symlink already there is kept, as dpkg keeps a symlink to a
		// directory (merged /usr, openssl's /usr/lib/ssl/certs →
		// /etc/ssl/certs); it is not followed here.
		if fi, err := x.root.Lstat(name); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return nil
		}
		fi, err := x.root.Stat(name)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%w: a non-directory is in the way", fs.ErrExist)
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if fi, lerr := x.root.Lstat(name); lerr == nil && !fi.IsDir() {
			// A dangling symlink or a file: replace it, as dpkg would.
			if err := x.root.Remove(name); err != nil {
				return err
			}
		}
		if err := x.root.MkdirAll(name, 0o700); err != nil {
			return err
		}
		x.dirs = append(x.dirs, h)
		return nil
	case tar.TypeReg, tar.TypeRegA:
		x.written += h.Size
		if x.written > x.max {
			return &errs.LimitError{Limit: fmt.Sprintf("unpacked size (%d bytes)", x.max)}
		}
		if err := x.prepare(name); err != nil {
			return err
		}
		f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, tr); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		return x.meta(name, h, false)
	case tar.TypeSymlink:
		if h.Linkname == "" {
			return fmt.Errorf("%w: symlink without a target", errs.ErrDependency)
		}
		if err := x.prepare(name); err != nil {
			return err
		}
		if err := x.root.Symlink(h.Linkname, name); err != nil {
			return err
		}
		return x.meta(name, h, true)
	case tar.TypeLink:
		target, err := cleanEntry(h.Linkname)
		if err != nil || target == "" {
			return fmt.Errorf("%w: hard link to %q", errs.ErrUnsafePatch, h.Linkname)
		}
		if err := x.prepare(name); err != nil {
			return err
		}
		return x.root.Link(target, name)
	case tar.TypeFifo:
		if err := x.prepare(name); err != nil {
			return err
		}
		if err := mkfifo(x.root, name, uint32(h.Mode&0o777)); err != nil {
			return err
		}
		return x.meta(name, h, false)
	case tar.TypeChar, tar.TypeBlock:
		return fmt.Errorf("%w: device node (%d,%d) refused: Debian packages ship none and the container runtime provides /dev", errs.ErrUnsafePatch, h.Devmajor, h.Devminor)
	case tar.TypeXGlobalHeader:
		return nil
	}
	return fmt.Errorf("%w: unsupported tar entry type %q", errs.ErrDependency, h.Typeflag)
}

// meta applies owner, mode (not for symlinks) and mtime, in that order
// (chown clears setuid bits).
func (x *extractor) meta(name string, h *tar.Header, symlink bool) error {
	if x.chown {
		if err := x.root.Lchown(name, h.Uid, h.Gid); err != nil {
			return err
		}
	}
	if !symlink {
		if err := x.root.Chmod(name, unixMode(h.Mode)); err != nil {
			return err
		}
	}
	return lutimes(x.root, name, h.ModTime)
}

// unixMode converts permission bits as tar stores them to a FileMode
// (Go's Chmod maps the setuid, setgid and sticky flags back).
func unixMode(m int64) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}
