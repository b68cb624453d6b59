package verify

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/provenance"
	"github.com/vmbuild/vmbuild/registry"
	"github.com/vmbuild/vmbuild/sign"
	"github.com/vmbuild/vmbuild/store"
)

// TestMain removes the vmbuild binary the CLI tests build. (testenv.Main
// would also stop shared BuildKit daemons; these tests start none.)
func TestMain(m *testing.M) {
	code := m.Run()
	if vmbuildBin.dir != "" {
		os.RemoveAll(vmbuildBin.dir)
	}
	os.Exit(code)
}

// Fixed values of the test provenance and policy.
var (
	testSource  = "https://github.com/acme/app.git"
	testCommit  = strings.Repeat("c", 40)
	testCommit2 = strings.Repeat("d", 40)
	testBase    = "sha256:" + strings.Repeat("ba", 32)
	testPatch1  = provenance.Patch{Name: "0001-fix.patch", Kind: provenance.PatchKindDiff, SHA256: strings.Repeat("01", 32), Options: &provenance.PatchOptions{}, Outcome: provenance.OutcomeApplied}
	testPatch2  = provenance.Patch{Name: "0002-tweak.sh", Kind: provenance.PatchKindScript, SHA256: strings.Repeat("02", 32), Options: &provenance.PatchOptions{}, Outcome: provenance.OutcomeApplied}
	testRecipe  = strings.Repeat("ab", 32)
)

// policyOnly are the checks of policy fields that testPolicy sets and
// policies written before those fields leave out: such a policy reports
// them as skipped.
var policyOnly = []string{CheckRecipe, CheckFrontend, CheckHermetic}

func newSigner(t testing.TB) *sign.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sign.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// provInput is the provenance input of a normal build of name@d.
func provInput(name string, d digest.Digest) provenance.Input {
	return provenance.Input{
		Subject:         provenance.Subject{Name: name, Digest: d.String()},
		Recipe:          provenance.Recipe{Name: "app", Path: "recipes/app/app.yaml", SHA256: testRecipe},
		Upstream:        provenance.Upstream{URL: testSource, Ref: "main", Commit: testCommit, CommitTime: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)},
		Patches:         []provenance.Patch{testPatch1, testPatch2},
		Native:          &provenance.Native{Layers: []string{"deps", "app"}},
		BuildKitVersion: "v0.34.2",
		LLBDigest:       "sha256:" + strings.Repeat("0d", 32),
		Base:            provenance.Image{Ref: "docker.io/library/busybox:1.36", Digest: testBase},
		NonHermetic:     []provenance.Access{},
		InvocationID:    "test-invocation",
		StartedOn:       time.Date(2025, 1, 2, 4, 0, 0, 0, time.UTC),
		FinishedOn:      time.Date(2025, 1, 2, 4, 1, 0, 0, time.UTC),
	}
}

func stmtOf(t testing.TB, in provenance.Input) []byte {
	t.Helper()
	st, err := provenance.New(in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := provenance.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testPolicy accepts exactly the build of provInput.
func testPolicy() *Policy {
	return &Policy{
		Source:     testSource,
		Commits:    []string{testCommit},
		Patches:    []PolicyPatch{{Name: testPatch1.Name, SHA256: testPatch1.SHA256}, {SHA256: testPatch2.SHA256}},
		BaseImages: []digest.Digest{digest.Digest(testBase)},
		Builders:   []string{provenance.DefaultBuilderID},
		// A native build: no frontend image.
		Recipes:       []string{testRecipe},
		Frontends:     []digest.Digest{},
		StrictPatches: true,
		Hermetic:      true,
	}
}

// tinyImage returns the blobs and manifest of a one-layer image; salt
// makes distinct images.
func tinyImage(salt string) (cfg, lay, man []byte, cd, ld, md ocispec.Descriptor) {
	lay = []byte("a tiny layer " + salt + "\n")
	ld = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(lay), Size: int64(len(lay))}
	cfg = []byte(`{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["` + ld.Digest.String() + `"]}}`)
	cd = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: []ocispec.Descriptor{ld}}
	man, _ = json.Marshal(m)
	md = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(man), Size: int64(len(man))}
	return
}

// pushTinyImage pushes a tiny image to repo:salt and returns its target.
func pushTinyImage(t testing.TB, c *registry.Client, repo, salt string) Target {
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
	return Target{Repository: repo, Digest: desc.Digest}
}

// makeLayout writes an OCI layout holding a tiny image tagged salt, as
// `vmbuild build --output oci:DIR` leaves it.
func makeLayout(t testing.TB, parent, salt string) (string, digest.Digest) {
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
	entry.Annotations = map[string]string{ocispec.AnnotationRefName: salt}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{entry}}
	ib, _ := json.Marshal(idx)
	if err := os.WriteFile(filepath.Join(dir, "index.json"), ib, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, md.Digest
}

// signAndAttest publishes a signature and (when stmt is not nil) an
// attestation of t, in both formats, as `vmbuild build --push
// --signature-format all` does.
func signAndAttest(t testing.TB, c *registry.Client, tg Target, s *sign.Signer, stmt []byte) {
	t.Helper()
	attach(t, c, tg, s, stmt, sign.FormatAll)
}

// attach signs and (when stmt is not nil) attests tg in formats.
func attach(t testing.TB, c *registry.Client, tg Target, s *sign.Signer, stmt []byte, formats sign.Format) {
	t.Helper()
	ctx := context.Background()
	a := sign.NewAttacher(sign.WithFormats(formats))
	st := regStore(t, c, tg.Repository)
	if _, err := a.Sign(ctx, st, ocispec.Descriptor{Digest: tg.Digest}, s); err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if stmt != nil {
		if _, err := a.Attest(ctx, st, ocispec.Descriptor{Digest: tg.Digest}, stmt, s); err != nil {
			t.Fatalf("Attest: %v", err)
		}
	}
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

// signLayout signs and attests the image d in the layout dir, in both
// formats.
func signLayout(t testing.TB, dir string, d digest.Digest, s *sign.Signer, stmt []byte) {
	t.Helper()
	ctx := context.Background()
	l, err := store.OpenLayout(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	a := sign.NewAttacher(sign.WithFormats(sign.FormatAll))
	if _, err := a.Sign(ctx, l, ocispec.Descriptor{Digest: d}, s); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Attest(ctx, l, ocispec.Descriptor{Digest: d}, stmt, s); err != nil {
		t.Fatal(err)
	}
}

// pushAttestations writes a cosign .att image holding exactly these DSSE
// envelopes (whatever they contain) for tg, replacing any.
func pushAttestations(t testing.TB, c *registry.Client, tg Target, envelopes ...[]byte) {
	t.Helper()
	pushSigTag(t, c, tg, "att", sign.DSSEMediaType, envelopes, func(b []byte) map[string]string {
		return map[string]string{sign.PredicateTypeAnnotation: provenance.PredicateType, sign.SignatureAnnotation: ""}
	})
}

// pushSigTag writes a cosign .sig/.att style image with one layer per blob.
func pushSigTag(t testing.TB, c *registry.Client, tg Target, suffix, mediaType string, blobs [][]byte, ann func([]byte) map[string]string) {
	t.Helper()
	ctx := context.Background()
	layers := []ocispec.Descriptor{}
	var diffIDs []string
	for _, b := range blobs {
		d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b)), Annotations: ann(b)}
		if err := c.PushBlob(ctx, tg.Repository, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		layers = append(layers, d)
		diffIDs = append(diffIDs, d.Digest.String())
	}
	cfg, _ := json.Marshal(map[string]any{"architecture": "", "os": "", "config": map[string]any{}, "rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
	cd := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	if err := c.PushBlob(ctx, tg.Repository, cd, bytes.NewReader(cfg)); err != nil {
		t.Fatal(err)
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: layers}
	mb, _ := json.Marshal(m)
	tag := string(tg.Digest.Algorithm()) + "-" + tg.Digest.Encoded() + "." + suffix
	if _, err := c.PushManifest(ctx, tg.Repository+":"+tag, ocispec.MediaTypeImageManifest, mb); err != nil {
		t.Fatal(err)
	}
}

func mustVerifier(t testing.TB, opts ...Option) *Verifier {
	t.Helper()
	v, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// check returns the named check of a report.
func check(t testing.TB, rep *Report, name string) Check {
	t.Helper()
	if rep == nil {
		t.Fatalf("no report")
	}
	for _, c := range rep.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("report has no check %q", name)
	return Check{}
}

// wantVerified asserts that the verification passed with every check
// passing (or skipped, for the names in skipped).
func wantVerified(t testing.TB, rep *Report, err error, skipped ...string) {
	t.Helper()
	// The fixtures' base is an image: a debianBase constraint is tested
	// on its own (TestCheckDebianBase), and skipped here.
	skipped = append(skipped, CheckDebianBase)
	if err != nil {
		logReport(t, rep)
		t.Fatalf("Verify: %v", err)
	}
	if !rep.Verified {
		logReport(t, rep)
		t.Fatal("report not verified")
	}
	if len(rep.Checks) != len(CheckNames()) {
		t.Fatalf("%d checks, want %d", len(rep.Checks), len(CheckNames()))
	}
	for i, c := range rep.Checks {
		if c.Name != CheckNames()[i] {
			t.Fatalf("check %d is %q, want %q", i, c.Name, CheckNames()[i])
		}
		want := "PASS"
		for _, s := range skipped {
			if s == c.Name {
				want = "SKIP"
			}
		}
		if c.Status() != want {
			logReport(t, rep)
			t.Fatalf("check %s: %s, want %s", c.Name, c.Status(), want)
		}
	}
}

// wantRefused asserts a verification failure at check name whose reason
// contains every fragment, reported both in the error and the report.
func wantRefused(t testing.TB, rep *Report, err error, name string, fragments ...string) {
	t.Helper()
	var ve *errs.VerificationError
	if !errors.As(err, &ve) {
		logReport(t, rep)
		t.Fatalf("want *errs.VerificationError at %q, got %T %v", name, err, err)
	}
	if rep == nil || rep.Verified {
		t.Fatalf("refused but report verified=%v", rep != nil && rep.Verified)
	}
	if ve.Check != name {
		logReport(t, rep)
		t.Fatalf("refused by check %q (%s), want %q", ve.Check, ve.Reason, name)
	}
	c := check(t, rep, name)
	if c.Status() != "FAIL" {
		t.Fatalf("check %s is %s, want FAIL", name, c.Status())
	}
	for _, f := range fragments {
		if !strings.Contains(c.Reason, f) {
			logReport(t, rep)
			t.Fatalf("check %s reason %q lacks %q", name, c.Reason, f)
		}
	}
	if errors.Is(err, errs.ErrLimitExceeded) || errors.Is(err, errs.ErrRegistry) {
		t.Fatalf("a verification failure is classified as transport: %v", err)
	}
}

func logReport(t testing.TB, rep *Report) {
	t.Helper()
	if rep == nil {
		t.Log("(no report)")
		return
	}
	var b strings.Builder
	_ = rep.WriteText(&b)
	t.Log("\n" + b.String())
}
