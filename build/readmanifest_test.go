package build

import (
	"context"
	"encoding/json"
	"testing"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/store"
)

func TestReadManifest(t *testing.T) {
	ctx := context.Background()
	st, err := store.CreateLayout(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	cd := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	if err := st.PushBlob(ctx, cd, cfg); err != nil {
		t.Fatal(err)
	}
	man, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: []ocispec.Descriptor{}})
	md, err := st.PushManifest(ctx, ocispec.MediaTypeImageManifest, man, "latest")
	if err != nil {
		t.Fatal(err)
	}
	res := &Result{Digest: md.Digest}
	if err := res.ReadManifest(ctx, st); err != nil {
		t.Fatal(err)
	}
	if res.Manifest == nil || res.Manifest.Config.Digest != cd.Digest || res.Config == nil || res.Config.OS != "linux" {
		t.Fatalf("read %+v %+v", res.Manifest, res.Config)
	}
	res = &Result{Digest: digest.FromString("missing")}
	if err := res.ReadManifest(ctx, st); err == nil || res.Manifest != nil {
		t.Fatalf("a missing image read back: %v", err)
	}
}
