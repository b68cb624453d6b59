package sign

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/testenv"
	"github.com/vmbuild/vmbuild/registry"
	"github.com/vmbuild/vmbuild/store"
)

func wantLimit(t *testing.T, err error, name string) {
	t.Helper()
	var le *errs.LimitError
	if !errors.As(err, &le) {
		t.Fatalf("want *errs.LimitError %q, got %T %v", name, err, err)
	}
	if le.Limit != name {
		t.Fatalf("limit named %q, want %q", le.Limit, name)
	}
}

// pushLayers pushes a .sig/.att image with the given layers to repo.
func pushLayers(t *testing.T, c *registry.Client, repo, tag string, layers []layer) {
	t.Helper()
	if _, err := pushSigImage(context.Background(), regStore(t, c, repo), tag, layers); err != nil {
		t.Fatal(err)
	}
}

func TestFetchLimits(t *testing.T) {
	reg := testenv.StartRegistry(t)
	ctx := context.Background()
	c := registry.New()
	repo := reg.Ref("acme/limits")
	_, desc := pushTinyImage(t, c, repo, "v1")
	s, _ := NewSigner(mustKey(t))

	// 101 signatures.
	var sigs []layer
	for i := 0; i < 101; i++ {
		payload, _ := SimpleSigningPayload(fmt.Sprintf("r/%d", i), desc.Digest)
		sig, _ := s.Sign(payload)
		sigs = append(sigs, simpleSigningLayer(payload, sig))
	}
	pushLayers(t, c, repo, store.CosignTag(desc.Digest, "sig"), sigs)
	_, err := FetchSignatures(ctx, regStore(t, c, repo), desc.Digest)
	wantLimit(t, err, "signatures per image (100)")
	// Publishing on top of it is refused the same way.
	_, err = newTestPublisher(c, WithFormats(FormatLegacy)).SignImage(ctx, repo+"@"+desc.Digest.String(), s)
	wantLimit(t, err, "signatures per image (100)")

	// 100 is fine.
	pushLayers(t, c, repo, store.CosignTag(desc.Digest, "sig"), sigs[:100])
	got, err := FetchSignatures(ctx, regStore(t, c, repo), desc.Digest)
	if err != nil || len(got) != 100 {
		t.Fatalf("100 signatures: %d, %v", len(got), err)
	}

	// 101 attestations.
	var atts []layer
	for i := 0; i < 101; i++ {
		env, _ := SignDSSE(s, InTotoPayloadType, []byte(fmt.Sprintf(`{"n":%d}`, i)))
		atts = append(atts, attestationLayer(env, "https://example/p"))
	}
	pushLayers(t, c, repo, store.CosignTag(desc.Digest, "att"), atts)
	_, err = FetchAttestations(ctx, regStore(t, c, repo), desc.Digest)
	wantLimit(t, err, "attestations per image (100)")

	// An attestation over 16 MiB.
	big := bytes.Repeat([]byte("x"), 16<<20+1)
	pushLayers(t, c, repo, store.CosignTag(desc.Digest, "att"), []layer{{desc: ocispec.Descriptor{MediaType: DSSEMediaType, Digest: digest.FromBytes(big), Size: int64(len(big))}, data: big}})
	_, err = FetchAttestations(ctx, regStore(t, c, repo), desc.Digest)
	wantLimit(t, err, "attestation size (16 MiB)")
}

func TestFetchHugeManifest(t *testing.T) {
	d := digest.FromString("image")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/manifests/"+store.CosignTag(d, "sig")) {
			w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
			body := `{"schemaVersion":2,"layers":[],"annotations":{"x":"` + strings.Repeat("y", 5<<20) + `"}}`
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			fmt.Fprint(w, body)
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	_, err := FetchSignatures(context.Background(), regStore(t, registry.New(), host+"/x"), d)
	wantLimit(t, err, "manifest size (4 MiB)")
}

func TestLayoutLimits(t *testing.T) {
	ctx := context.Background()
	work := t.TempDir()
	s, _ := NewSigner(mustKey(t))
	dir, img := makeLayout(t, work, "lim")
	l, err := store.OpenLayout(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	var sigs []layer
	for i := 0; i < 101; i++ {
		payload, _ := SimpleSigningPayload(fmt.Sprintf("r/%d", i), img.Digest)
		sig, _ := s.Sign(payload)
		sigs = append(sigs, simpleSigningLayer(payload, sig))
	}
	if _, err := pushSigImage(ctx, l, store.CosignTag(img.Digest, "sig"), sigs); err != nil {
		t.Fatal(err)
	}
	_, err = fetchLayoutSignatures(ctx, dir, img.Digest)
	wantLimit(t, err, "signatures per image (100)")
	_, err = signLayout(ctx, dir, img.Digest, s, nil)
	wantLimit(t, err, "signatures per image (100)")
}
