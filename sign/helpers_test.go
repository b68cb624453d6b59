package sign

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/internal/testenv"
	"github.com/vmbuild/vmbuild/provenance"
	"github.com/vmbuild/vmbuild/registry"
	"github.com/vmbuild/vmbuild/store"
)

// cosignBin returns bin/<name>. A missing binary skips the test only when
// VMBUILD_INTEGRATION is unset; otherwise the test fails.
func cosignBin(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(testenv.RepoRoot(), "bin", name)
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		if os.Getenv(testenv.EnvIntegration) == "" {
			t.Skipf("%s is missing (run `make tools`); set %s to make this a failure", p, testenv.EnvIntegration)
		}
		t.Fatalf("%s is missing: run `make tools`", p)
	}
	return p
}

// cosignRun runs a cosign binary in dir with an isolated HOME (no TUF
// cache, no config) and returns its combined output.
func cosignRun(t *testing.T, dir, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "TUF_ROOT="+filepath.Join(dir, ".sigstore"), "COSIGN_PASSWORD=test-password", "COSIGN_YES=true")
	out, err := cmd.CombinedOutput()
	t.Logf("$ %s %s\n%s", filepath.Base(bin), strings.Join(args, " "), tail(string(out), 1500))
	return string(out), err
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// mustPass and mustFail run a cosign command expecting success or failure.
func mustPass(t *testing.T, dir, bin string, args ...string) string {
	t.Helper()
	out, err := cosignRun(t, dir, bin, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", filepath.Base(bin), strings.Join(args, " "), err)
	}
	return out
}

func mustFail(t *testing.T, dir, bin string, args ...string) {
	t.Helper()
	if _, err := cosignRun(t, dir, bin, args...); err == nil {
		t.Fatalf("%s %s succeeded, want failure", filepath.Base(bin), strings.Join(args, " "))
	}
}

// minimalTrustedRoot is a Sigstore trusted root with no authorities at all:
// only key-based verification can pass with it. cosign v2.6 requires a
// trusted root as soon as it sees bundles, and fetches the public one over
// TUF unless given one; this sandbox has no network.
const minimalTrustedRoot = `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`

// keyFiles writes a key pair made by GenerateKeyPair into dir as name.key
// and name.pub and returns the signer.
func keyFiles(t *testing.T, dir, name string) *Signer {
	t.Helper()
	priv, pub, err := GenerateKeyPair([]byte("test-password"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), priv, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".pub"), pub, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := LoadPrivateKey(priv, []byte("test-password"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tinyImage returns the blobs and manifest of a one-layer image; salt
// makes distinct images.
func tinyImage(salt string) (cfg, lay, man []byte, cd, ld, md ocispec.Descriptor) {
	lay = []byte("a tiny layer " + salt + "\n")
	ld = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(lay), Size: int64(len(lay))}
	cfg = []byte(`{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["` + ld.Digest.String() + `"]}}`)
	cd = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: []ocispec.Descriptor{ld}}
	m.SchemaVersion = 2
	man, _ = json.Marshal(m)
	md = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(man), Size: int64(len(man))}
	return
}

// pushTinyImage pushes a tiny image to repo:tag with our registry client
// and returns "repo@digest" and its descriptor.
func pushTinyImage(t *testing.T, c *registry.Client, repo, salt string) (string, ocispec.Descriptor) {
	t.Helper()
	ctx := context.Background()
	cfg, lay, man, cd, ld, _ := tinyImage(salt)
	if err := c.PushBlob(ctx, repo, ld, bytes.NewReader(lay)); err != nil {
		t.Fatal(err)
	}
	if err := c.PushBlob(ctx, repo, cd, bytes.NewReader(cfg)); err != nil {
		t.Fatal(err)
	}
	desc, err := c.PushManifest(ctx, repo+":"+salt, ocispec.MediaTypeImageManifest, man)
	if err != nil {
		t.Fatal(err)
	}
	return repo + "@" + desc.Digest.String(), desc
}

// makeLayout writes an OCI layout holding a tiny image, as BuildKit's oci
// exporter leaves it, and returns its directory and the image descriptor.
func makeLayout(t *testing.T, parent, salt string) (string, ocispec.Descriptor) {
	t.Helper()
	dir := filepath.Join(parent, "layout-"+salt)
	cfg, lay, man, _, _, md := tinyImage(salt)
	for _, b := range [][]byte{cfg, lay, man} {
		p := filepath.Join(dir, "blobs", "sha256", digest.FromBytes(b).Encoded())
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	entry := md
	entry.Annotations = map[string]string{"io.containerd.image.name": "127.0.0.1:5000/acme/app:" + salt, ocispec.AnnotationRefName: salt}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{entry}}
	idx.SchemaVersion = 2
	ib, _ := json.Marshal(idx)
	if err := os.WriteFile(filepath.Join(dir, "index.json"), ib, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, md
}

// provenanceFor returns a real SLSA v1 statement for the image; variant
// changes the invocation so that statements differ.
func provenanceFor(t *testing.T, name string, d digest.Digest, variant string) []byte {
	t.Helper()
	st, err := provenance.New(provenance.Input{
		Subject:         provenance.Subject{Name: name, Digest: d.String()},
		Recipe:          provenance.Recipe{Name: "app", Path: "recipes/app.yaml", SHA256: strings.Repeat("1", 64)},
		Upstream:        provenance.Upstream{URL: "https://github.com/acme/app.git", Ref: "main", Commit: strings.Repeat("2", 40)},
		Native:          &provenance.Native{Layers: []string{"deps", "app"}},
		BuildKitVersion: "v0.34.2",
		LLBDigest:       "sha256:" + strings.Repeat("3", 64),
		Base:            provenance.Image{Ref: "busybox:1.36", Digest: "sha256:" + strings.Repeat("4", 64)},
		InvocationID:    "invocation-" + variant,
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := provenance.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// regStore returns the store of repository repo through c.
func regStore(t testing.TB, c *registry.Client, repo string) store.Store {
	t.Helper()
	st, err := store.NewRegistry(c, repo)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// testPublisher attaches to images named "repo@sha256:…", as the tests
// name them.
type testPublisher struct {
	c *registry.Client
	a *Attacher
}

func newTestPublisher(c *registry.Client, opts ...AttachOption) testPublisher {
	return testPublisher{c: c, a: NewAttacher(opts...)}
}

func (p testPublisher) target(ref string) (store.Store, ocispec.Descriptor, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	d, ok := named.(reference.Digested)
	if !ok {
		return nil, ocispec.Descriptor{}, fmt.Errorf("%q is not a digest reference", ref)
	}
	st, err := store.NewRegistry(p.c, reference.TrimNamed(named).String())
	return st, ocispec.Descriptor{Digest: d.Digest()}, err
}

func (p testPublisher) SignImage(ctx context.Context, ref string, s *Signer) (Result, error) {
	st, d, err := p.target(ref)
	if err != nil {
		return Result{}, err
	}
	return p.a.Sign(ctx, st, d, s)
}

func (p testPublisher) Attest(ctx context.Context, ref string, stmt []byte, s *Signer) (Result, error) {
	st, d, err := p.target(ref)
	if err != nil {
		return Result{}, err
	}
	return p.a.Attest(ctx, st, d, stmt, s)
}

// signLayout signs (and, with a statement, attests) the image d in the
// layout dir.
func signLayout(ctx context.Context, dir string, d digest.Digest, s *Signer, stmt []byte, opts ...AttachOption) (Result, error) {
	l, err := store.OpenLayout(ctx, dir)
	if err != nil {
		return Result{}, err
	}
	a := NewAttacher(opts...)
	res, err := a.Sign(ctx, l, ocispec.Descriptor{Digest: d}, s)
	if err != nil || stmt == nil {
		return res, err
	}
	ra, err := a.Attest(ctx, l, ocispec.Descriptor{Digest: d}, stmt, s)
	res.Artifacts = append(res.Artifacts, ra.Artifacts...)
	return res, err
}

func layoutFetch(ctx context.Context, dir string, d digest.Digest, what What) (*Attached, error) {
	l, err := store.OpenLayout(ctx, dir)
	if err != nil {
		return nil, err
	}
	if _, err := l.Resolve(ctx, d.String()); err != nil {
		return nil, err
	}
	return Fetch(ctx, l, d, what, FormatAll)
}

func fetchLayoutSignatures(ctx context.Context, dir string, d digest.Digest) ([]Signature, error) {
	a, err := layoutFetch(ctx, dir, d, Signatures)
	if err != nil {
		return nil, err
	}
	return a.Signatures, nil
}

func fetchLayoutAttestations(ctx context.Context, dir string, d digest.Digest) ([]Attestation, error) {
	a, err := layoutFetch(ctx, dir, d, Attestations)
	if err != nil {
		return nil, err
	}
	return a.Attestations, nil
}
