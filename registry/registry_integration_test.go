package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/testenv"
	"github.com/vmbuild/vmbuild/registry"
)

// The tests against a real registry live in the external test package:
// testenv pushes its base image through store, which imports registry.

// pushTinyImage pushes a config, one layer and a manifest to repo:tag and
// returns the manifest descriptor and bytes.
func pushTinyImage(t *testing.T, c *registry.Client, repo, tag string) (ocispec.Descriptor, []byte) {
	t.Helper()
	ctx := context.Background()
	layer := []byte("not really a tarball, but a blob\n")
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["` + digest.FromBytes(layer).String() + `"]}}`)
	layerDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(layer), Size: int64(len(layer))}
	cfgDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	if err := c.PushBlob(ctx, repo, layerDesc, bytes.NewReader(layer)); err != nil {
		t.Fatalf("PushBlob layer: %v", err)
	}
	if err := c.PushBlob(ctx, repo, cfgDesc, bytes.NewReader(cfg)); err != nil {
		t.Fatalf("PushBlob config: %v", err)
	}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfgDesc, Layers: []ocispec.Descriptor{layerDesc}}
	m.SchemaVersion = 2
	mb, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := c.PushManifest(ctx, repo+":"+tag, ocispec.MediaTypeImageManifest, mb)
	if err != nil {
		t.Fatalf("PushManifest: %v", err)
	}
	return desc, mb
}

func TestRealRegistryRoundTrip(t *testing.T) {
	reg := testenv.StartRegistry(t)
	ctx := context.Background()
	c := registry.New()
	repo := reg.Ref("vm/tiny")

	desc, mb := pushTinyImage(t, c, repo, "v1")
	if desc.Digest != digest.FromBytes(mb) {
		t.Fatalf("descriptor digest %s, want %s", desc.Digest, digest.FromBytes(mb))
	}

	// Pushing the same blob again is a no-op, not an error.
	layer := []byte("not really a tarball, but a blob\n")
	if err := c.PushBlob(ctx, repo, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(layer), Size: int64(len(layer))}, bytes.NewReader(layer)); err != nil {
		t.Fatalf("second PushBlob: %v", err)
	}

	for _, ref := range []string{repo + ":v1", repo + "@" + desc.Digest.String()} {
		got, err := c.Resolve(ctx, ref)
		if err != nil {
			t.Fatalf("Resolve(%s): %v", ref, err)
		}
		if got.Digest != desc.Digest || got.Size != desc.Size || got.MediaType != ocispec.MediaTypeImageManifest {
			t.Fatalf("Resolve(%s) = %+v, want %+v", ref, got, desc)
		}
		b, fd, err := c.FetchManifest(ctx, ref)
		if err != nil {
			t.Fatalf("FetchManifest(%s): %v", ref, err)
		}
		if !bytes.Equal(b, mb) || fd.Digest != desc.Digest {
			t.Fatalf("FetchManifest(%s) returned other content", ref)
		}
	}

	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	b, err := c.FetchBlob(ctx, repo, m.Layers[0], 1<<20)
	if err != nil || !bytes.Equal(b, layer) {
		t.Fatalf("FetchBlob = %q, %v", b, err)
	}
	// A limit smaller than the descriptor's size is refused up front.
	_, err = c.FetchBlob(ctx, repo, m.Layers[0], 8)
	var le *errs.LimitError
	if !errors.As(err, &le) || le.Limit != "blob size (8 bytes)" {
		t.Fatalf("FetchBlob with small limit: %v", err)
	}
	// A descriptor that lies about the digest is refused by the check.
	bad := m.Layers[0]
	bad.Digest = digest.FromString("something else")
	if _, err := c.FetchBlob(ctx, repo, bad, 0); !errors.Is(err, errs.ErrNotFound) {
		t.Fatalf("FetchBlob of unknown digest: want ErrNotFound, got %v", err)
	}

	if err := c.Tag(ctx, repo, desc.Digest, "v2"); err != nil {
		t.Fatalf("Tag: %v", err)
	}
	if got, err := c.Resolve(ctx, repo+":v2"); err != nil || got.Digest != desc.Digest {
		t.Fatalf("Resolve after Tag = %v, %v", got, err)
	}
	tags, err := c.ListTags(ctx, repo)
	if err != nil || strings.Join(tags, ",") != "v1,v2" {
		t.Fatalf("ListTags = %v, %v", tags, err)
	}

	if _, err := c.Resolve(ctx, repo+":missing"); !errors.Is(err, errs.ErrNotFound) {
		t.Fatalf("Resolve missing tag: want ErrNotFound, got %v", err)
	}
	if _, _, err := c.FetchManifest(ctx, reg.Ref("vm/nothing")+"@"+digest.FromString("x").String()); !errors.Is(err, errs.ErrNotFound) {
		t.Fatalf("FetchManifest missing: want ErrNotFound, got %v", err)
	}
}

func TestRealRegistryReferrersFallback(t *testing.T) {
	reg := testenv.StartRegistry(t)
	ctx := context.Background()
	c := registry.New()
	repo := reg.Ref("vm/refs")
	subject, _ := pushTinyImage(t, c, repo, "latest")

	refs, err := c.Referrers(ctx, repo, subject.Digest, "")
	if err != nil || len(refs) != 0 {
		t.Fatalf("Referrers before any = %v, %v", refs, err)
	}

	empty := []byte("{}")
	emptyDesc := ocispec.DescriptorEmptyJSON
	if err := c.PushBlob(ctx, repo, emptyDesc, bytes.NewReader(empty)); err != nil {
		t.Fatal(err)
	}
	push := func(artifactType, payload string) ocispec.Descriptor {
		blob := []byte(payload)
		bd := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(blob), Size: int64(len(blob))}
		if err := c.PushBlob(ctx, repo, bd, bytes.NewReader(blob)); err != nil {
			t.Fatal(err)
		}
		m := ocispec.Manifest{
			MediaType:    ocispec.MediaTypeImageManifest,
			ArtifactType: artifactType,
			Config:       emptyDesc,
			Layers:       []ocispec.Descriptor{bd},
			Subject:      &ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
			Annotations:  map[string]string{"k": payload},
		}
		m.SchemaVersion = 2
		mb, _ := json.Marshal(m)
		d, err := c.PushManifest(ctx, repo+"@"+digest.FromBytes(mb).String(), ocispec.MediaTypeImageManifest, mb)
		if err != nil {
			t.Fatalf("PushManifest referrer: %v", err)
		}
		// Pushing it twice does not add a second index entry.
		if _, err := c.PushManifest(ctx, repo+"@"+d.Digest.String(), ocispec.MediaTypeImageManifest, mb); err != nil {
			t.Fatal(err)
		}
		return d
	}
	a := push("application/vnd.example.a", "one")
	b := push("application/vnd.example.b", "two")

	refs, err = c.Referrers(ctx, repo, subject.Digest, "")
	if err != nil || len(refs) != 2 {
		t.Fatalf("Referrers = %v, %v", refs, err)
	}
	if refs[0].Digest != a.Digest || refs[0].ArtifactType != "application/vnd.example.a" || refs[0].Annotations["k"] != "one" {
		t.Fatalf("first referrer = %+v", refs[0])
	}
	refs, err = c.Referrers(ctx, repo, subject.Digest, "application/vnd.example.b")
	if err != nil || len(refs) != 1 || refs[0].Digest != b.Digest {
		t.Fatalf("Referrers filtered = %v, %v", refs, err)
	}
	// The fallback tag is where the spec says.
	if _, err := c.Resolve(ctx, repo+":"+registry.FallbackTag(subject.Digest)); err != nil {
		t.Fatalf("fallback tag: %v", err)
	}
	if err := c.RemoveReferrer(ctx, repo, subject.Digest, a.Digest); err != nil {
		t.Fatalf("RemoveReferrer: %v", err)
	}
	refs, err = c.Referrers(ctx, repo, subject.Digest, "")
	if err != nil || len(refs) != 1 || refs[0].Digest != b.Digest {
		t.Fatalf("Referrers after remove = %v, %v", refs, err)
	}
}
