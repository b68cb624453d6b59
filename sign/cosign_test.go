package sign

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/vmbuild/vmbuild/internal/testenv"
	"github.com/vmbuild/vmbuild/provenance"
	"github.com/vmbuild/vmbuild/registry"
	"github.com/vmbuild/vmbuild/store"
)

// registryFlags are what stock cosign needs for a loopback http registry
// and a key-signed artifact that is not in a transparency log.
var registryFlags = []string{"--insecure-ignore-tlog", "--allow-insecure-registry", "--allow-http-registry"}

func verifyArgs(pub, ref string, extra ...string) []string {
	return append(append(append([]string{"verify", "--key", pub}, registryFlags...), extra...), ref)
}

func verifyAttArgs(pub, ref string, extra ...string) []string {
	return append(append(append([]string{"verify-attestation", "--key", pub, "--type", "slsaprovenance1"}, registryFlags...), extra...), ref)
}

// countLegacy returns the number of layers of the .sig or .att image.
func countLegacy(t *testing.T, c *registry.Client, repo string, d digest.Digest, suffix string) int {
	t.Helper()
	b, _, err := c.FetchManifest(context.Background(), repo+":"+store.CosignTag(d, suffix))
	if err != nil {
		t.Fatalf("fetching .%s: %v", suffix, err)
	}
	m, err := parseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	return len(m.Layers)
}

// countBundles returns the bundle referrers of d per predicate type.
func countBundles(t *testing.T, c *registry.Client, repo string, d digest.Digest) map[string]int {
	t.Helper()
	refs, err := c.Referrers(context.Background(), repo, d, BundleMediaType)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range refs {
		out[r.Annotations[BundlePredicateTypeAnnotation]]++
	}
	return out
}

// TestCosignVerifiesRegistryPublication is the referee test: stock cosign
// v2 and v3 verify what Publisher writes, in both formats, and refuse it
// with another key.
func TestCosignVerifiesRegistryPublication(t *testing.T) {
	cosign := cosignBin(t, "cosign")
	cosign3 := cosignBin(t, "cosign3")
	reg := testenv.StartRegistry(t)
	ctx := context.Background()
	c := registry.New()
	work := t.TempDir()
	s := keyFiles(t, work, "vmbuild")
	keyFiles(t, work, "other")
	if err := os.WriteFile(filepath.Join(work, "trusted_root.json"), []byte(minimalTrustedRoot), 0o644); err != nil {
		t.Fatal(err)
	}
	repo := reg.Ref("acme/app")

	// 1. Both formats.
	ref, desc := pushTinyImage(t, c, repo, "both")
	stmt := provenanceFor(t, repo, desc.Digest, "1")
	p := newTestPublisher(c, WithFormats(FormatAll), WithClock(func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) }))
	res, err := p.SignImage(ctx, ref, s)
	if err != nil {
		t.Fatalf("SignImage: %v", err)
	}
	if len(res.Artifacts) != 2 || res.Artifacts[0].Action != Added || res.Artifacts[1].Action != Added {
		t.Fatalf("SignImage result: %+v", res)
	}
	res, err = p.Attest(ctx, ref, stmt, s)
	if err != nil {
		t.Fatalf("Attest: %v", err)
	}
	if len(res.Artifacts) != 2 || res.Artifacts[0].Format != FormatLegacy || res.Artifacts[1].Format != FormatBundle {
		t.Fatalf("Attest result: %+v", res)
	}
	// cosign v3 reads the bundles (its default) with nothing but the key.
	out := mustPass(t, work, cosign3, verifyArgs("vmbuild.pub", ref)...)
	if !strings.Contains(out, CosignSignPredicateType) {
		t.Fatalf("cosign3 verify did not verify the bundle signature:\n%s", out)
	}
	out = mustPass(t, work, cosign3, verifyAttArgs("vmbuild.pub", ref)...)
	if !strings.Contains(out, base64.StdEncoding.EncodeToString(stmt)[:40]) {
		t.Fatalf("cosign3 verify-attestation output lacks our statement:\n%s", out)
	}
	// cosign v2.6 switches to the bundles too when it sees them, and then
	// wants a trusted root (from TUF online; here, an empty one).
	mustPass(t, work, cosign, verifyArgs("vmbuild.pub", ref, "--trusted-root", "trusted_root.json")...)
	mustPass(t, work, cosign, verifyAttArgs("vmbuild.pub", ref, "--trusted-root", "trusted_root.json")...)
	// Another key is refused by both.
	mustFail(t, work, cosign3, verifyArgs("other.pub", ref)...)
	mustFail(t, work, cosign3, verifyAttArgs("other.pub", ref)...)
	mustFail(t, work, cosign, verifyArgs("other.pub", ref, "--trusted-root", "trusted_root.json")...)
	mustFail(t, work, cosign, verifyAttArgs("other.pub", ref, "--trusted-root", "trusted_root.json")...)

	// Our own read side finds both formats and verifies them.
	sigs, err := FetchSignatures(ctx, regStore(t, c, repo), desc.Digest)
	if err != nil || len(sigs) != 2 {
		t.Fatalf("FetchSignatures = %d, %v", len(sigs), err)
	}
	for _, sg := range sigs {
		if err := VerifyImageSignature(s.Public(), sg, desc.Digest); err != nil {
			t.Fatalf("VerifyImageSignature(%v from %s): %v", sg.Format, sg.Source, err)
		}
	}
	atts, err := FetchAttestations(ctx, regStore(t, c, repo), desc.Digest)
	if err != nil || len(atts) != 2 {
		t.Fatalf("FetchAttestations = %d, %v", len(atts), err)
	}
	for _, a := range atts {
		pt, payload, err := VerifyDSSE(s.Public(), a.Envelope)
		if err != nil || pt != InTotoPayloadType || string(payload) != string(stmt) || a.PredicateType != provenance.PredicateType {
			t.Fatalf("attestation %s: %v", a.Source, err)
		}
		if _, err := provenance.Parse(payload); err != nil {
			t.Fatalf("provenance.Parse: %v", err)
		}
	}

	// A new statement replaces the old one: cosign sees only the new one.
	stmt2 := provenanceFor(t, repo, desc.Digest, "2")
	if _, err := p.Attest(ctx, ref, stmt2, s); err != nil {
		t.Fatal(err)
	}
	for _, run := range []struct {
		bin  string
		args []string
	}{
		{cosign3, verifyAttArgs("vmbuild.pub", ref)},
		{cosign, verifyAttArgs("vmbuild.pub", ref, "--trusted-root", "trusted_root.json")},
	} {
		out := mustPass(t, work, run.bin, run.args...)
		if !strings.Contains(out, base64.StdEncoding.EncodeToString(stmt2)) || strings.Contains(out, base64.StdEncoding.EncodeToString(stmt)) {
			t.Fatalf("%s verify-attestation after replacement does not show only the new statement", filepath.Base(run.bin))
		}
	}

	// 2. Legacy format only: the exact commands, no trusted root needed.
	lref, ldesc := pushTinyImage(t, c, repo, "legacy")
	lp := newTestPublisher(c, WithFormats(FormatLegacy))
	if _, err := lp.SignImage(ctx, lref, s); err != nil {
		t.Fatal(err)
	}
	if _, err := lp.Attest(ctx, lref, provenanceFor(t, repo, ldesc.Digest, "1"), s); err != nil {
		t.Fatal(err)
	}
	out = mustPass(t, work, cosign, verifyArgs("vmbuild.pub", lref)...)
	if !strings.Contains(out, SimpleSigningType) {
		t.Fatalf("cosign verify did not verify the legacy signature:\n%s", out)
	}
	mustPass(t, work, cosign, verifyAttArgs("vmbuild.pub", lref)...)
	mustPass(t, work, cosign3, verifyArgs("vmbuild.pub", lref)...)
	mustPass(t, work, cosign3, verifyAttArgs("vmbuild.pub", lref)...)
	mustFail(t, work, cosign, verifyArgs("other.pub", lref)...)
	mustFail(t, work, cosign, verifyAttArgs("other.pub", lref)...)
	mustFail(t, work, cosign3, verifyArgs("other.pub", lref)...)
	lstmt2 := provenanceFor(t, repo, ldesc.Digest, "2")
	if _, err := lp.Attest(ctx, lref, lstmt2, s); err != nil {
		t.Fatal(err)
	}
	out = mustPass(t, work, cosign, verifyAttArgs("vmbuild.pub", lref)...)
	if !strings.Contains(out, base64.StdEncoding.EncodeToString(lstmt2)) || strings.Count(out, `"payloadType"`) != 1 {
		t.Fatalf("cosign verify-attestation after legacy replacement:\n%s", out)
	}

	// 3. Bundle format only.
	bref, bdesc := pushTinyImage(t, c, repo, "bundle")
	bp := newTestPublisher(c, WithFormats(FormatBundle))
	if _, err := bp.SignImage(ctx, bref, s); err != nil {
		t.Fatal(err)
	}
	if _, err := bp.Attest(ctx, bref, provenanceFor(t, repo, bdesc.Digest, "1"), s); err != nil {
		t.Fatal(err)
	}
	mustPass(t, work, cosign3, verifyArgs("vmbuild.pub", bref)...)
	mustPass(t, work, cosign3, verifyAttArgs("vmbuild.pub", bref)...)
	mustFail(t, work, cosign3, verifyArgs("other.pub", bref)...)
}

// TestPublishIdempotent: publishing twice adds nothing; a new statement
// replaces the old attestation instead of adding a second one.
func TestPublishIdempotent(t *testing.T) {
	reg := testenv.StartRegistry(t)
	ctx := context.Background()
	c := registry.New()
	work := t.TempDir()
	s := keyFiles(t, work, "vmbuild")
	other := keyFiles(t, work, "other")
	repo := reg.Ref("acme/idem")
	ref, desc := pushTinyImage(t, c, repo, "v1")
	stmt1 := provenanceFor(t, repo, desc.Digest, "1")
	p := newTestPublisher(c, WithFormats(FormatAll))

	for round := 0; round < 2; round++ {
		rs, err := p.SignImage(ctx, ref, s)
		if err != nil {
			t.Fatal(err)
		}
		ra, err := p.Attest(ctx, ref, stmt1, s)
		if err != nil {
			t.Fatal(err)
		}
		want := Added
		if round == 1 {
			want = Unchanged
		}
		for _, a := range append(rs.Artifacts, ra.Artifacts...) {
			if a.Action != want {
				t.Fatalf("round %d: %s %v: %s, want %s", round, a.Kind, a.Format, a.Action, want)
			}
		}
		if n := countLegacy(t, c, repo, desc.Digest, "sig"); n != 1 {
			t.Fatalf("round %d: %d legacy signatures", round, n)
		}
		if n := countLegacy(t, c, repo, desc.Digest, "att"); n != 1 {
			t.Fatalf("round %d: %d legacy attestations", round, n)
		}
		if got := countBundles(t, c, repo, desc.Digest); got[CosignSignPredicateType] != 1 || got[provenance.PredicateType] != 1 || len(got) != 2 {
			t.Fatalf("round %d: bundles %v", round, got)
		}
	}

	// A rebuild with new provenance replaces the attestation.
	stmt2 := provenanceFor(t, repo, desc.Digest, "2")
	ra, err := p.Attest(ctx, ref, stmt2, s)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range ra.Artifacts {
		if a.Action != Replaced {
			t.Fatalf("new statement: %s %v: %s, want replaced", a.Kind, a.Format, a.Action)
		}
	}
	if n := countLegacy(t, c, repo, desc.Digest, "att"); n != 1 {
		t.Fatalf("after replace: %d legacy attestations", n)
	}
	if got := countBundles(t, c, repo, desc.Digest); got[provenance.PredicateType] != 1 {
		t.Fatalf("after replace: bundles %v", got)
	}
	atts, err := FetchAttestations(ctx, regStore(t, c, repo), desc.Digest)
	if err != nil || len(atts) != 2 {
		t.Fatalf("FetchAttestations: %d, %v", len(atts), err)
	}
	for _, a := range atts {
		_, payload, err := VerifyDSSE(s.Public(), a.Envelope)
		if err != nil || string(payload) != string(stmt2) {
			t.Fatalf("%s holds the old statement (%v)", a.Source, err)
		}
	}

	// Another key's signature and attestation are added beside ours, not
	// in place of them.
	if _, err := p.SignImage(ctx, ref, other); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Attest(ctx, ref, stmt2, other); err != nil {
		t.Fatal(err)
	}
	if n := countLegacy(t, c, repo, desc.Digest, "sig"); n != 2 {
		t.Fatalf("second key: %d legacy signatures", n)
	}
	if n := countLegacy(t, c, repo, desc.Digest, "att"); n != 2 {
		t.Fatalf("second key: %d legacy attestations", n)
	}
	if got := countBundles(t, c, repo, desc.Digest); got[CosignSignPredicateType] != 2 || got[provenance.PredicateType] != 2 {
		t.Fatalf("second key: bundles %v", got)
	}

	// A statement about another image is refused.
	if _, err := p.Attest(ctx, ref, provenanceFor(t, repo, digest.FromString("other"), "1"), s); err == nil {
		t.Fatal("attesting a statement about another image succeeded")
	}
	if _, err := p.SignImage(ctx, repo+":v1", s); err == nil {
		t.Fatal("signing a tag (not a digest) succeeded")
	}
}

// TestCosignKeysInterop: keys from `cosign generate-key-pair` load and
// sign for cosign; cosign signs with our keys and we verify what it wrote.
func TestCosignKeysInterop(t *testing.T) {
	cosign := cosignBin(t, "cosign")
	reg := testenv.StartRegistry(t)
	ctx := context.Background()
	c := registry.New()
	work := t.TempDir()
	mustPass(t, work, cosign, "generate-key-pair")
	privPEM, err := os.ReadFile(filepath.Join(work, "cosign.key"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(privPEM), SigstorePrivateKeyPEMType) {
		t.Fatalf("cosign wrote %.60s", privPEM)
	}
	s, err := LoadPrivateKey(privPEM, []byte("test-password"))
	if err != nil {
		t.Fatalf("loading cosign's key: %v", err)
	}
	pubPEM, _ := os.ReadFile(filepath.Join(work, "cosign.pub"))
	pub, err := LoadPublicKey(pubPEM)
	if err != nil {
		t.Fatalf("loading cosign's public key: %v", err)
	}
	if KeyHint(pub) != s.Hint() {
		t.Fatal("cosign.pub does not match cosign.key")
	}
	repo := reg.Ref("acme/keys")
	ref, desc := pushTinyImage(t, c, repo, "v1")
	if _, err := newTestPublisher(c, WithFormats(FormatLegacy)).SignImage(ctx, ref, s); err != nil {
		t.Fatal(err)
	}
	if _, err := newTestPublisher(c, WithFormats(FormatLegacy)).Attest(ctx, ref, provenanceFor(t, repo, desc.Digest, "1"), s); err != nil {
		t.Fatal(err)
	}
	mustPass(t, work, cosign, verifyArgs("cosign.pub", ref)...)
	mustPass(t, work, cosign, verifyAttArgs("cosign.pub", ref)...)

	// The other direction: cosign signs with a key we generated.
	ours := keyFiles(t, work, "ours")
	ref2, desc2 := pushTinyImage(t, c, repo, "v2")
	mustPass(t, work, cosign, append(append([]string{"sign", "--key", "ours.key", "--tlog-upload=false", "-y"}, registryFlags[1:]...), ref2)...)
	sigs, err := FetchSignatures(ctx, regStore(t, c, repo), desc2.Digest)
	if err != nil || len(sigs) != 1 {
		t.Fatalf("FetchSignatures after cosign sign: %d, %v", len(sigs), err)
	}
	if err := VerifyImageSignature(ours.Public(), sigs[0], desc2.Digest); err != nil {
		t.Fatalf("cosign's signature with our key: %v", err)
	}
	// cosign's .sig image is what we would have written for that layer.
	b, _, err := c.FetchManifest(ctx, repo+":"+store.CosignTag(desc2.Digest, "sig"))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := parseManifest(b)
	cfg, _, _ := sigImage(m.Layers)
	if digest.FromBytes(cfg) != m.Config.Digest {
		t.Fatalf("our .sig config for cosign's layers differs from cosign's %s:\n%s", m.Config.Digest, cfg)
	}
	// Signing again with our code and the same key is recognised as a
	// duplicate only if the payload is the same; cosign's payload names the
	// repository the same way ours does.
	res, err := newTestPublisher(c, WithFormats(FormatLegacy)).SignImage(ctx, ref2, ours)
	if err != nil {
		t.Fatal(err)
	}
	if res.Artifacts[0].Action != Unchanged {
		t.Fatalf("re-signing what cosign signed: %s (payloads differ?)", res.Artifacts[0].Action)
	}
}
