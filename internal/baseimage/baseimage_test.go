package baseimage_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/internal/baseimage"
)

func requireBusybox(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(baseimage.DefaultBusyboxPath); err != nil {
		if os.Getenv("VMBUILD_INTEGRATION") == "1" {
			t.Fatalf("%s missing: run `make deps`", baseimage.DefaultBusyboxPath)
		}
		t.Skipf("%s missing: run `make deps`", baseimage.DefaultBusyboxPath)
	}
}

type tarEntry struct {
	hdr  *tar.Header
	data []byte
}

func readLayer(t *testing.T, img *baseimage.Image) ([]tarEntry, []byte) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(img.Layer))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if zr.Header.ModTime.Unix() > 0 || zr.Header.Name != "" || zr.Header.OS != 255 {
		t.Errorf("gzip header not fixed: %+v", zr.Header)
	}
	tr := tar.NewReader(bytes.NewReader(raw))
	var out []tarEntry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out = append(out, tarEntry{h, b})
	}
	return out, raw
}

func TestBuildDeterministicAndComplete(t *testing.T) {
	requireBusybox(t)
	ctx := context.Background()
	a, err := baseimage.Build(ctx, baseimage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := baseimage.Build(ctx, baseimage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest() != b.Digest() || !bytes.Equal(a.Layer, b.Layer) {
		t.Fatalf("two builds differ: %s vs %s", a.Digest(), b.Digest())
	}
	if a.ManifestDesc.Digest != digest.FromBytes(a.ManifestJSON) || a.ConfigDesc.Digest != digest.FromBytes(a.ConfigJSON) || a.LayerDesc.Digest != digest.FromBytes(a.Layer) {
		t.Fatal("descriptor digests do not match blob bytes")
	}
	if a.LayerDesc.MediaType != ocispec.MediaTypeImageLayerGzip || a.Manifest.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("media types: layer %s manifest %s", a.LayerDesc.MediaType, a.Manifest.MediaType)
	}

	var cfg ocispec.Image
	if err := json.Unmarshal(a.ConfigJSON, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture == "" || cfg.Created == nil || !cfg.Created.Equal(baseimage.Epoch) {
		t.Errorf("config platform/created: %+v %v", cfg.Platform, cfg.Created)
	}
	if len(cfg.Config.Cmd) != 1 || cfg.Config.Cmd[0] != "sh" || len(cfg.Config.Env) != 1 || !strings.HasPrefix(cfg.Config.Env[0], "PATH=") {
		t.Errorf("config: %+v", cfg.Config)
	}

	entries, raw := readLayer(t, a)
	if got := digest.FromBytes(raw); got != a.DiffID || cfg.RootFS.DiffIDs[0] != got {
		t.Errorf("diff id %s, config says %v, computed %s", a.DiffID, cfg.RootFS.DiffIDs, got)
	}
	byName := map[string]*tar.Header{}
	var names []string
	for _, e := range entries {
		h := e.hdr
		names = append(names, h.Name)
		byName[strings.TrimSuffix(h.Name, "/")] = h
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(baseimage.Epoch) {
			t.Errorf("%s: owner %d:%d (%q:%q) mtime %v", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
	}
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			t.Errorf("entries not sorted: %q before %q", names[i-1], names[i])
		}
	}
	for _, app := range baseimage.RequiredApplets {
		h := byName["bin/"+app]
		if h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
			t.Errorf("applet %s: %+v", app, h)
		}
	}
	want := map[string]int64{"tmp": 0o1777, "root": 0o700, "usr/bin": 0o755, "usr/local/bin": 0o755, "bin/busybox": 0o755, "etc/passwd": 0o644, "etc/group": 0o644}
	for n, mode := range want {
		if h := byName[n]; h == nil || h.Mode != mode {
			t.Errorf("%s: want mode %o, got %+v", n, mode, h)
		}
	}
	bb, _ := os.ReadFile(baseimage.DefaultBusyboxPath)
	for _, e := range entries {
		if e.hdr.Name == "bin/busybox" && !bytes.Equal(e.data, bb) {
			t.Error("bin/busybox differs from the installed binary")
		}
		if e.hdr.Name == "etc/passwd" && !strings.HasPrefix(string(e.data), "root:x:0:0:") {
			t.Errorf("etc/passwd: %q", e.data)
		}
	}
}

func TestExtraFilesChangeDigest(t *testing.T) {
	requireBusybox(t)
	ctx := context.Background()
	plain, err := baseimage.Build(ctx, baseimage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	extra, err := baseimage.Build(ctx, baseimage.Options{ExtraFiles: map[string][]byte{"/opt/app/marker": []byte("x\n"), "etc/passwd": []byte("root:x:0:0::/:/bin/sh\n")}})
	if err != nil {
		t.Fatal(err)
	}
	if plain.Digest() == extra.Digest() {
		t.Fatal("extra files did not change the digest")
	}
	entries, _ := readLayer(t, extra)
	seen := map[string]string{}
	for _, e := range entries {
		seen[e.hdr.Name] = string(e.data)
	}
	if _, ok := seen["opt/"]; !ok {
		t.Error("parent directory opt/ not created")
	}
	if seen["opt/app/marker"] != "x\n" || seen["etc/passwd"] != "root:x:0:0::/:/bin/sh\n" {
		t.Errorf("extra files not in layer: %q %q", seen["opt/app/marker"], seen["etc/passwd"])
	}
	if _, err := baseimage.Build(ctx, baseimage.Options{ExtraFiles: map[string][]byte{"/tmp": nil}}); err == nil {
		t.Error("replacing a directory was accepted")
	}
}

func TestRejectsDynamicBusyboxAndMissingApplets(t *testing.T) {
	ctx := context.Background()
	// The Go test binary itself is an ELF; on Debian, /bin/ls is dynamic.
	if _, err := os.Stat("/bin/ls"); err == nil {
		if _, err := baseimage.Build(ctx, baseimage.Options{BusyboxPath: "/bin/ls", Applets: baseimage.RequiredApplets}); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
			t.Errorf("dynamic binary: err = %v", err)
		}
	}
	requireBusybox(t)
	if _, err := baseimage.Build(ctx, baseimage.Options{Applets: []string{"sh"}}); err == nil || !strings.Contains(err.Error(), "lacks required applets") {
		t.Errorf("missing applets: err = %v", err)
	}
	if _, err := baseimage.Build(ctx, baseimage.Options{BusyboxPath: filepath.Join(t.TempDir(), "nope")}); err == nil {
		t.Error("missing busybox accepted")
	}
}

func TestWriteLayout(t *testing.T) {
	requireBusybox(t)
	ctx := context.Background()
	img, err := baseimage.Build(ctx, baseimage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	if err := baseimage.WriteLayout(ctx, img, dir, "latest"); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := baseimage.WriteLayout(ctx, img, dir, "latest"); err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	if !bytes.Equal(first, second) {
		t.Errorf("rewriting changed index.json:\n%s\n%s", first, second)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(second, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != img.Digest() || idx.Manifests[0].Annotations[ocispec.AnnotationRefName] != "latest" {
		t.Fatalf("index: %s", second)
	}
	layout, _ := os.ReadFile(filepath.Join(dir, "oci-layout"))
	if string(layout) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout: %s", layout)
	}
	for _, d := range img.Descriptors() {
		b, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", d.Digest.Encoded()))
		if err != nil || digest.FromBytes(b) != d.Digest {
			t.Errorf("blob %s: %v", d.Digest, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "ingest")); !os.IsNotExist(err) {
		t.Errorf("ingest dir left behind: %v", err)
	}

	// A second tag adds an entry; re-tagging replaces it.
	other, err := baseimage.Build(ctx, baseimage.Options{ExtraFiles: map[string][]byte{"x": []byte("y")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := baseimage.WriteLayout(ctx, other, dir, "other"); err != nil {
		t.Fatal(err)
	}
	if err := baseimage.WriteLayout(ctx, other, dir, "latest"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	idx = ocispec.Index{}
	_ = json.Unmarshal(b, &idx)
	if len(idx.Manifests) != 2 || idx.Manifests[0].Digest != other.Digest() || idx.Manifests[1].Annotations[ocispec.AnnotationRefName] != "other" {
		t.Errorf("index after retag: %s", b)
	}
}
