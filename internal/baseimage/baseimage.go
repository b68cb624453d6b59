// Package baseimage builds vmbuild's deterministic busybox base image: one
// layer holding a static busybox, a symlink for each of its applets and a
// minimal /etc, with every timestamp, owner and compression header fixed, so
// the image digest depends only on the busybox binary (and on the optional
// extra files).
//
// The image is used by the demo (as an OCI image layout) and by integration
// tests (pushed to a loopback registry). It is not meant as a production
// base.
package baseimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
)

// Epoch is the timestamp of every file in the layer, of the image config's
// "created" field and of its history entry: the Unix epoch, as with
// SOURCE_DATE_EPOCH=0.
var Epoch = time.Unix(0, 0).UTC()

// DefaultBusyboxPath is where Debian's busybox-static package installs busybox.
const DefaultBusyboxPath = "/bin/busybox"

// DefaultPath is the PATH in the image config.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// RequiredApplets must be provided by the busybox binary: recipes, tests
// and the demo rely on them.
var RequiredApplets = []string{
	"sh", "sed", "cat", "cp", "mkdir", "rm", "find", "sort", "sha256sum",
	"date", "touch", "head", "tr", "env", "seq", "awk", "grep",
}

const (
	passwd = "root:x:0:0:root:/root:/bin/sh\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	group = "root:x:0:\n" +
		"nobody:x:65534:\n"
)

// Options configures Build. The zero value builds the default image from
// /bin/busybox for the host platform.
type Options struct {
	// BusyboxPath is a statically linked busybox. Default /bin/busybox.
	BusyboxPath string
	// Platform of the image. Default: the host's (platforms.DefaultSpec),
	// i.e. linux/amd64 on the usual build machine. It must match the
	// busybox binary's architecture.
	Platform *ocispec.Platform
	// ExtraFiles are added to the layer as regular files (mode 0644, owner
	// 0:0, mtime Epoch). Keys are absolute or relative paths inside the
	// image; missing parent directories are created (0755). An extra file
	// may replace a file of the default image (e.g. /etc/passwd), never a
	// directory.
	ExtraFiles map[string][]byte
	// Applets overrides the applet list that is otherwise read from
	// `busybox --list`. Mostly for tests and cross-architecture builds
	// where the binary cannot run.
	Applets []string
	// Logger receives debug messages. Default: discard.
	Logger *slog.Logger
}

// Image is a built base image: its blobs and their descriptors.
type Image struct {
	Manifest     ocispec.Manifest
	ManifestJSON []byte
	// ManifestDesc describes ManifestJSON; its Platform is set.
	ManifestDesc ocispec.Descriptor

	Config     ocispec.Image
	ConfigJSON []byte
	ConfigDesc ocispec.Descriptor

	// Layer is the gzip-compressed layer tarball.
	Layer     []byte
	LayerDesc ocispec.Descriptor
	// DiffID is the digest of the uncompressed layer.
	DiffID digest.Digest
}

// Digest is the manifest digest, the image's identity.
func (img *Image) Digest() digest.Digest { return img.ManifestDesc.Digest }

// Blob returns the bytes of one of the image's blobs.
func (img *Image) Blob(d digest.Digest) ([]byte, bool) {
	switch d {
	case img.ManifestDesc.Digest:
		return img.ManifestJSON, true
	case img.ConfigDesc.Digest:
		return img.ConfigJSON, true
	case img.LayerDesc.Digest:
		return img.Layer, true
	}
	return nil, false
}

// Descriptors lists the image's blobs, children before parents (layer,
// config, manifest): the order in which they can be written or pushed.
func (img *Image) Descriptors() []ocispec.Descriptor {
	return []ocispec.Descriptor{img.LayerDesc, img.ConfigDesc, img.ManifestDesc}
}

// Build assembles the image in memory. It runs `busybox --list` unless
// Options.Applets is given.
func Build(ctx context.Context, opts Options) (*Image, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bbPath := opts.BusyboxPath
	if bbPath == "" {
		bbPath = DefaultBusyboxPath
	}
	var plat ocispec.Platform
	if opts.Platform != nil {
		plat = platforms.Normalize(*opts.Platform)
	} else {
		plat = platforms.Normalize(platforms.DefaultSpec())
	}
	if plat.OS != "linux" {
		return nil, fmt.Errorf("building base image: platform %s: only linux is supported", platforms.Format(plat))
	}

	bb, err := os.ReadFile(bbPath)
	if err != nil {
		return nil, fmt.Errorf("reading busybox: %w: %w (install Debian's busybox-static: `make deps`)", errs.ErrMissingTool, err)
	}
	if err := checkStaticELF(bbPath, bb, plat); err != nil {
		return nil, err
	}
	applets := opts.Applets
	if applets == nil {
		applets, err = listApplets(ctx, bbPath)
		if err != nil {
			return nil, err
		}
	}
	if err := checkApplets(applets); err != nil {
		return nil, fmt.Errorf("building base image from %s: %w", bbPath, err)
	}
	log.Debug("building busybox base image", "busybox", bbPath, "applets", len(applets), "platform", platforms.Format(plat))

	entries, err := layerEntries(bb, applets, opts.ExtraFiles)
	if err != nil {
		return nil, fmt.Errorf("building base image: %w", err)
	}
	tarBytes, err := writeTar(entries)
	if err != nil {
		return nil, fmt.Errorf("writing base image layer: %w", err)
	}
	gz, err := gzipBytes(tarBytes)
	if err != nil {
		return nil, fmt.Errorf("compressing base image layer: %w", err)
	}
	img := &Image{
		Layer:  gz,
		DiffID: digest.FromBytes(tarBytes),
	}
	img.LayerDesc = ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageLayerGzip,
		Digest:    digest.FromBytes(gz),
		Size:      int64(len(gz)),
	}

	created := Epoch
	img.Config = ocispec.Image{
		Created:  &created,
		Platform: plat,
		Config: ocispec.ImageConfig{
			Env: []string{DefaultPath},
			Cmd: []string{"sh"},
		},
		RootFS: ocispec.RootFS{
			Type:    "layers",
			DiffIDs: []digest.Digest{img.DiffID},
		},
		History: []ocispec.History{{
			Created:   &created,
			CreatedBy: "vmbuild internal/baseimage: static busybox, applet symlinks, /etc/passwd, /etc/group",
		}},
	}
	if img.ConfigJSON, err = json.Marshal(img.Config); err != nil {
		return nil, fmt.Errorf("encoding image config: %w", err)
	}
	img.ConfigDesc = ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageConfig,
		Digest:    digest.FromBytes(img.ConfigJSON),
		Size:      int64(len(img.ConfigJSON)),
	}

	img.Manifest = ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    img.ConfigDesc,
		Layers:    []ocispec.Descriptor{img.LayerDesc},
	}
	if img.ManifestJSON, err = json.Marshal(img.Manifest); err != nil {
		return nil, fmt.Errorf("encoding image manifest: %w", err)
	}
	p := plat
	img.ManifestDesc = ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest,
		Digest:    digest.FromBytes(img.ManifestJSON),
		Size:      int64(len(img.ManifestJSON)),
		Platform:  &p,
	}
	return img, nil
}

var elfMachines = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"386":     elf.EM_386,
	"arm":     elf.EM_ARM,
	"riscv64": elf.EM_RISCV,
	"ppc64le": elf.EM_PPC64,
	"s390x":   elf.EM_S390,
}

// checkStaticELF refuses a dynamically linked busybox (it could not run in
// an image without a libc) and one of the wrong architecture.
func checkStaticELF(name string, b []byte, plat ocispec.Platform) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("reading busybox %s: not an ELF executable: %w", name, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("reading busybox %s: %w: it is dynamically linked; install Debian's busybox-static (`make deps`)", name, errs.ErrMissingTool)
		}
	}
	if want, ok := elfMachines[plat.Architecture]; ok && f.Machine != want {
		return fmt.Errorf("reading busybox %s: it is built for %s, not for platform %s", name, f.Machine, platforms.Format(plat))
	}
	return nil
}

func listApplets(ctx context.Context, bbPath string) ([]string, error) {
	cmd := exec.CommandContext(ctx, bbPath, "--list")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("listing busybox applets (%s --list): %w: %s", bbPath, err, strings.TrimSpace(stderr.String()))
	}
	var applets []string
	for _, l := range strings.Split(string(out), "\n") {
		// Some builds list "busybox" itself; the binary is already there.
		if l = strings.TrimSpace(l); l != "" && l != "busybox" {
			applets = append(applets, l)
		}
	}
	return applets, nil
}

func checkApplets(applets []string) error {
	have := make(map[string]bool, len(applets))
	for _, a := range applets {
		if a == "" || a == "." || a == ".." || a == "busybox" || strings.ContainsAny(a, "/\x00") {
			return fmt.Errorf("invalid applet name %q", a)
		}
		have[a] = true
	}
	var missing []string
	for _, a := range RequiredApplets {
		if !have[a] {
			missing = append(missing, a)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("busybox lacks required applets: %s", strings.Join(missing, ", "))
	}
	return nil
}

type entry struct {
	name     string // clean, relative, no trailing slash
	typ      byte   // tar.TypeDir, tar.TypeReg, tar.TypeSymlink
	mode     int64
	data     []byte
	linkname string
}

func layerEntries(bb []byte, applets []string, extra map[string][]byte) ([]entry, error) {
	m := map[string]entry{}
	dir := func(name string, mode int64) { m[name] = entry{name: name, typ: tar.TypeDir, mode: mode} }
	dir("bin", 0o755)
	dir("etc", 0o755)
	dir("root", 0o700)
	dir("tmp", 0o1777)
	dir("usr", 0o755)
	dir("usr/bin", 0o755)
	dir("usr/local", 0o755)
	dir("usr/local/bin", 0o755)
	m["bin/busybox"] = entry{name: "bin/busybox", typ: tar.TypeReg, mode: 0o755, data: bb}
	m["etc/passwd"] = entry{name: "etc/passwd", typ: tar.TypeReg, mode: 0o644, data: []byte(passwd)}
	m["etc/group"] = entry{name: "etc/group", typ: tar.TypeReg, mode: 0o644, data: []byte(group)}
	for _, a := range applets {
		n := "bin/" + a
		m[n] = entry{name: n, typ: tar.TypeSymlink, mode: 0o777, linkname: "busybox"}
	}

	names := make([]string, 0, len(extra))
	for k := range extra {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		n := path.Clean("/" + k)[1:]
		if n == "" || strings.HasSuffix(k, "/") {
			return nil, fmt.Errorf("extra file %q: not a file path", k)
		}
		if old, ok := m[n]; ok && old.typ == tar.TypeDir {
			return nil, fmt.Errorf("extra file %q: would replace directory /%s", k, n)
		}
		if n == "bin/busybox" {
			return nil, fmt.Errorf("extra file %q: would replace busybox", k)
		}
		for p := path.Dir(n); p != "."; p = path.Dir(p) {
			old, ok := m[p]
			if !ok {
				dir(p, 0o755)
			} else if old.typ != tar.TypeDir {
				return nil, fmt.Errorf("extra file %q: parent /%s is not a directory", k, p)
			}
		}
		m[n] = entry{name: n, typ: tar.TypeReg, mode: 0o644, data: extra[k]}
	}

	out := make([]entry, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	// Sorting by path puts every directory before its contents.
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

func writeTar(entries []entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Typeflag: e.typ,
			Name:     e.name,
			Mode:     e.mode,
			ModTime:  Epoch,
			Uid:      0,
			Gid:      0,
			Format:   tar.FormatPAX,
		}
		switch e.typ {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeReg:
			h.Size = int64(len(e.data))
		case tar.TypeSymlink:
			h.Linkname = e.linkname
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("writing tar header for %s: %w", e.name, err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, fmt.Errorf("writing %s: %w", e.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// gzipBytes compresses with a fixed header: no name, no comment, mtime 0,
// OS "unknown" (Go's defaults), best compression. The output depends only
// on the input and on Go's compress/flate, which is pinned by the toolchain.
func gzipBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	zw.Header = gzip.Header{OS: 255}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
