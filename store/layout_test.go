package store

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
)

func blobDesc(mt string, b []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

// image writes a tiny image (config, one layer, manifest) into l and
// returns the manifest descriptor.
func image(t *testing.T, l *Layout, salt string) ocispec.Descriptor {
	t.Helper()
	ctx := context.Background()
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"salt":"` + salt + `"}`)
	lay := []byte("layer " + salt)
	cd, ld := blobDesc(ocispec.MediaTypeImageConfig, cfg), blobDesc(ocispec.MediaTypeImageLayer, lay)
	man, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: []ocispec.Descriptor{ld}})
	for _, b := range []struct {
		d ocispec.Descriptor
		b []byte
	}{{cd, cfg}, {ld, lay}} {
		if err := l.PushBlob(ctx, b.d, b.b); err != nil {
			t.Fatal(err)
		}
	}
	md, err := l.PushManifest(ctx, ocispec.MediaTypeImageManifest, man, salt)
	if err != nil {
		t.Fatal(err)
	}
	return md
}

func testLayout(t *testing.T) *Layout {
	t.Helper()
	l, err := CreateLayout(context.Background(), filepath.Join(t.TempDir(), "oci"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLayoutRoundTrip(t *testing.T) {
	ctx := context.Background()
	l := testLayout(t)
	md := image(t, l, "a")
	got, err := l.Resolve(ctx, "a")
	if err != nil || got.Digest != md.Digest || got.Annotations[ocispec.AnnotationRefName] != "a" {
		t.Fatalf("Resolve(a) = %+v, %v", got, err)
	}
	if _, err := l.Resolve(ctx, "b"); !errors.Is(err, errs.ErrNotFound) {
		t.Fatalf("Resolve(b): %v", err)
	}
	b, desc, err := l.Manifest(ctx, md.Digest.String())
	if err != nil || desc.Digest != md.Digest || desc.MediaType != ocispec.MediaTypeImageManifest || digest.FromBytes(b) != md.Digest {
		t.Fatalf("Manifest: %+v, %v", desc, err)
	}
	if err := l.Tag(ctx, md.Digest, "b"); err != nil {
		t.Fatal(err)
	}
	if got, err := l.Resolve(ctx, "b"); err != nil || got.Digest != md.Digest {
		t.Fatalf("Resolve(b) after Tag: %+v, %v", got, err)
	}
	// A referrer, found by Referrers and removed with its blobs.
	art := []byte(`{"x":1}`)
	ad := blobDesc("application/x-test", art)
	if err := l.PushBlob(ctx, ad, art); err != nil {
		t.Fatal(err)
	}
	empty := blobDesc("application/vnd.oci.empty.v1+json", []byte("{}"))
	if err := l.PushBlob(ctx, empty, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	subj := md
	subj.Annotations = nil
	ref, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, ArtifactType: "application/x-test", Config: empty, Layers: []ocispec.Descriptor{ad}, Subject: &subj})
	rd, err := l.PushManifest(ctx, ocispec.MediaTypeImageManifest, ref, "")
	if err != nil {
		t.Fatal(err)
	}
	refs, err := l.Referrers(ctx, md.Digest, "application/x-test")
	if err != nil || len(refs) != 1 || refs[0].Digest != rd.Digest {
		t.Fatalf("Referrers: %+v, %v", refs, err)
	}
	if refs, _ := l.Referrers(ctx, md.Digest, "application/x-other"); len(refs) != 0 {
		t.Fatalf("Referrers filtered by another type: %+v", refs)
	}
	if err := l.RemoveReferrer(ctx, md.Digest, rd.Digest); err != nil {
		t.Fatal(err)
	}
	if refs, _ := l.Referrers(ctx, md.Digest, ""); len(refs) != 0 {
		t.Fatalf("Referrers after removal: %+v", refs)
	}
	if _, err := os.Stat(l.BlobPath(ad.Digest)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("removed referrer's layer still there: %v", err)
	}
	if _, err := os.Stat(l.BlobPath(md.Digest)); err != nil {
		t.Errorf("the image went too: %v", err)
	}
}

// cosign's tags are the layout's kind entries; replacing one deletes
// what only the old one used.
func TestLayoutCosignTags(t *testing.T) {
	ctx := context.Background()
	l := testLayout(t)
	md := image(t, l, "a")
	sigTag := CosignTag(md.Digest, "sig")
	if _, err := l.Resolve(ctx, sigTag); !errors.Is(err, errs.ErrNotFound) {
		t.Fatalf("no signatures yet: %v", err)
	}
	push := func(content string) ocispec.Descriptor {
		t.Helper()
		lay := []byte(content)
		ld := blobDesc("application/x-sig", lay)
		if err := l.PushBlob(ctx, ld, lay); err != nil {
			t.Fatal(err)
		}
		cfg := []byte(`{"c":"` + content + `"}`)
		cd := blobDesc(ocispec.MediaTypeImageConfig, cfg)
		if err := l.PushBlob(ctx, cd, cfg); err != nil {
			t.Fatal(err)
		}
		man, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: []ocispec.Descriptor{ld}})
		d, err := l.PushManifest(ctx, ocispec.MediaTypeImageManifest, man, sigTag)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	first := push("one")
	got, err := l.Resolve(ctx, sigTag)
	if err != nil || got.Digest != first.Digest || got.Annotations[KindAnnotation] != KindSignatures {
		t.Fatalf("Resolve(sig tag) = %+v, %v", got, err)
	}
	img, _ := l.Resolve(ctx, md.Digest.String())
	if img.Annotations[KindAnnotation] != KindImage || img.Annotations[ocispec.AnnotationRefName] != "a" {
		t.Fatalf("the image is not marked: %+v", img.Annotations)
	}
	second := push("two")
	idx, _ := l.Index(ctx)
	if n := len(idx.Manifests); n != 2 {
		t.Fatalf("index has %d entries, want the image and one sigs entry: %+v", n, idx.Manifests)
	}
	if _, err := os.Stat(l.BlobPath(first.Digest)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("replaced signature manifest still there: %v", err)
	}
	if _, err := os.Stat(l.BlobPath(digest.FromString("one"))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("replaced signature layer still there: %v", err)
	}
	if got, _ := l.Resolve(ctx, sigTag); got.Digest != second.Digest {
		t.Fatalf("sig tag resolves to %s, want %s", got.Digest, second.Digest)
	}
	// Another image cannot be signed in the same layout.
	other := image(t, l, "b")
	lay := []byte("x")
	man, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: blobDesc(ocispec.MediaTypeImageConfig, lay)})
	if _, err := l.PushManifest(ctx, ocispec.MediaTypeImageManifest, man, CosignTag(other.Digest, "sig")); !errors.Is(err, errs.ErrUsage) {
		t.Fatalf("a second signed image: %v", err)
	}
	if _, err := l.PushManifest(ctx, ocispec.MediaTypeImageManifest, man, CosignTag(digest.FromString("absent"), "sig")); !errors.Is(err, errs.ErrNotFound) {
		t.Fatalf("signing an image not in the layout: %v", err)
	}
}

func TestLayoutLimitsAndRefusals(t *testing.T) {
	ctx := context.Background()
	l := testLayout(t)
	md := image(t, l, "a")
	small, err := OpenLayout(ctx, l.Dir(), WithLayoutLimits(Limits{MaxManifestBytes: 16, MaxBlobBytes: 4}))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = small.Manifest(ctx, md.Digest.String())
	var le *errs.LimitError
	if !errors.As(err, &le) || le.Limit != "manifest size (16 bytes)" {
		t.Fatalf("small manifest limit: %v", err)
	}
	lay := []byte("layer a")
	_, err = small.Blob(ctx, blobDesc("x", lay), 0)
	if !errors.As(err, &le) || le.Limit != "blob size (4 bytes)" {
		t.Fatalf("small blob limit: %v", err)
	}
	// Content that does not match its digest.
	p := l.BlobPath(digest.FromBytes(lay))
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, []byte("layer b"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Blob(ctx, blobDesc("x", lay), 0); !errors.Is(err, errs.ErrLayout) {
		t.Fatalf("tampered blob: %v", err)
	}
	rc, err := l.Open(ctx, blobDesc("x", lay))
	if err != nil {
		t.Fatal(err)
	}
	_, err = readAll(rc)
	if !errors.Is(err, errs.ErrLayout) {
		t.Fatalf("tampered blob streamed: %v", err)
	}
	// A symbolic link out of the layout.
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("secret"), 0o644)
	sd := digest.FromString("secret")
	os.Symlink(secret, l.BlobPath(sd))
	if _, err := l.Blob(ctx, ocispec.Descriptor{Digest: sd, Size: 6}, 0); err == nil {
		t.Fatal("a blob linked out of the layout was read")
	}
	// Not a layout.
	if _, err := OpenLayout(ctx, t.TempDir()); !errors.Is(err, errs.ErrLayout) {
		t.Fatalf("a directory without oci-layout: %v", err)
	}
	// A done context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := l.Manifest(cctx, md.Digest.String()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func readAll(rc interface {
	Read([]byte) (int, error)
	Close() error
}) ([]byte, error) {
	defer rc.Close()
	var out []byte
	buf := make([]byte, 4)
	for {
		n, err := rc.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			if err.Error() == "EOF" {
				return out, nil
			}
			return out, err
		}
	}
}

// A FIFO in place of a blob or of index.json is refused at once: it never
// blocks a read (#15.6).
func TestLayoutFIFO(t *testing.T) {
	ctx := context.Background()
	l := testLayout(t)
	md := image(t, l, "a")
	p := l.BlobPath(md.Digest)
	os.Remove(p)
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 4)
	go func() {
		_, _, err := l.Manifest(ctx, md.Digest.String())
		done <- err
		_, err = l.Blob(ctx, md, 0)
		done <- err
		_, err = l.Open(ctx, md)
		done <- err
		_, err = l.Referrers(ctx, md.Digest, "")
		done <- err
	}()
	for i := 0; i < 4; i++ {
		select {
		case err := <-done:
			if i < 3 && !errors.Is(err, errs.ErrLayout) {
				t.Fatalf("read %d of a FIFO blob: %v", i, err)
			}
			if i == 3 && err != nil {
				t.Fatalf("Referrers skipping a FIFO: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("read %d of a FIFO blob blocks", i)
		}
	}
	ip := filepath.Join(l.Dir(), "index.json")
	os.Remove(ip)
	syscall.Mkfifo(ip, 0o644)
	go func() {
		_, err := l.Resolve(ctx, "a")
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, errs.ErrLayout) {
			t.Fatalf("FIFO index.json: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a FIFO index.json blocks")
	}
}
