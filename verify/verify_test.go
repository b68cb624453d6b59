package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/testenv"
	"github.com/vmbuild/vmbuild/provenance"
	"github.com/vmbuild/vmbuild/registry"
	"github.com/vmbuild/vmbuild/sign"
	"github.com/vmbuild/vmbuild/store"
	"github.com/vmbuild/vmbuild/track/history"
)

// fixture is a registry with a signer and a verifier trusting it.
type fixture struct {
	reg *testenv.Registry
	c   *registry.Client
	s   *sign.Signer
	v   *Verifier
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{reg: testenv.StartRegistry(t), c: registry.New(), s: newSigner(t)}
	f.v = mustVerifier(t, WithPublicKeys(f.s.Public()))
	return f
}

// image pushes a fresh image and returns its target.
func (f *fixture) image(t *testing.T, salt string) Target {
	return pushTinyImage(t, f.c, f.reg.Ref("acme/app"), salt)
}

// published pushes an image signed and attested with in (edited by mod).
func (f *fixture) published(t *testing.T, salt string, mod func(*provenance.Input)) Target {
	tg := f.image(t, salt)
	in := provInput(tg.Repository, tg.Digest)
	if mod != nil {
		mod(&in)
	}
	signAndAttest(t, f.c, tg, f.s, stmtOf(t, in))
	return tg
}

func (f *fixture) verify(t *testing.T, tg Target, p *Policy) (*Report, error) {
	t.Helper()
	return f.v.Verify(context.Background(), tg, p)
}

func TestHappyPathRegistry(t *testing.T) {
	f := newFixture(t)
	tg := f.published(t, "ok", nil)
	rep, err := f.verify(t, tg, testPolicy())
	wantVerified(t, rep, err)
	if rep.Image != tg.String() || rep.Digest != tg.Digest {
		t.Fatalf("report names %s (%s), want %s", rep.Image, rep.Digest, tg)
	}
	if rep.Provenance == nil || rep.Provenance.Commit != testCommit || len(rep.Provenance.Patches) != 2 {
		t.Fatalf("provenance summary: %+v", rep.Provenance)
	}
	// Both formats were published: two of each.
	if c := check(t, rep, CheckAttestation); !strings.Contains(c.Reason, "2 attestations") {
		t.Fatalf("attestation check: %s", c.Reason)
	}
	// Only one format of each is enough.
	for _, format := range []sign.Format{sign.FormatLegacy, sign.FormatBundle} {
		tg := f.image(t, "only-"+format.String())
		attach(t, f.c, tg, f.s, stmtOf(t, provInput(tg.Repository, tg.Digest)), format)
		rep, err := f.verify(t, tg, testPolicy())
		wantVerified(t, rep, err)
		if c := check(t, rep, CheckSignature); !strings.Contains(c.Reason, format.String()+" signature") {
			t.Fatalf("%s: signature check says %q", format, c.Reason)
		}
	}
}

// TestSeveralKeys: any trusted key will do; the text names the one used.
func TestSeveralKeys(t *testing.T) {
	f := newFixture(t)
	tg := f.published(t, "keys", nil)
	other := newSigner(t)
	v := mustVerifier(t, WithPublicKeyPEM(other.PublicKeyPEM(), f.s.PublicKeyPEM()))
	rep, err := v.Verify(context.Background(), tg, testPolicy())
	wantVerified(t, rep, err)
	if c := check(t, rep, CheckSignature); !strings.Contains(c.Reason, keyID(f.s.Public())) {
		t.Fatalf("signature check does not name the key: %s", c.Reason)
	}
}

func TestAttestationCopiedFromAnotherImage(t *testing.T) {
	// cosign's TestInvalidBundle analogue: a valid, signed attestation of
	// image A copied onto image B.
	f := newFixture(t)
	a := f.published(t, "a", nil)
	b := f.image(t, "b")
	signAndAttest(t, f.c, b, f.s, nil)
	atts, err := sign.FetchAttestations(context.Background(), regStore(t, f.c, a.Repository), a.Digest)
	if err != nil || len(atts) == 0 {
		t.Fatalf("attestations of A: %d, %v", len(atts), err)
	}
	pushAttestations(t, f.c, b, atts[0].Envelope)
	rep, err := f.verify(t, b, testPolicy())
	wantRefused(t, rep, err, CheckSubject, a.Digest.String(), "another image")
	if check(t, rep, CheckDSSESignature).Status() != "PASS" || check(t, rep, CheckSignature).Status() != "PASS" {
		t.Fatal("the copied attestation's signature should verify: the subject is what is wrong")
	}
}

func TestSignedByAnotherKey(t *testing.T) {
	f := newFixture(t)
	tg := f.image(t, "other")
	other := newSigner(t)
	signAndAttest(t, f.c, tg, other, stmtOf(t, provInput(tg.Repository, tg.Digest)))
	rep, err := f.verify(t, tg, testPolicy())
	wantRefused(t, rep, err, CheckSignature, "verify with a trusted key")
	if c := check(t, rep, CheckDSSESignature); c.Status() != "FAIL" || !strings.Contains(c.Reason, "does not verify with a trusted key") {
		t.Fatalf("dsse-signature: %s %s", c.Status(), c.Reason)
	}
	// Signed by our key, attested by the other one.
	tg2 := f.image(t, "other-att")
	signAndAttest(t, f.c, tg2, f.s, nil)
	signAndAttest(t, f.c, tg2, other, stmtOf(t, provInput(tg2.Repository, tg2.Digest)))
	rep, err = f.verify(t, tg2, testPolicy())
	wantRefused(t, rep, err, CheckDSSESignature, "does not verify with a trusted key")
}

func TestPolicyCommit(t *testing.T) {
	f := newFixture(t)
	tg := f.published(t, "commit", func(in *provenance.Input) { in.Upstream.Commit = testCommit2 })
	rep, err := f.verify(t, tg, testPolicy())
	wantRefused(t, rep, err, CheckCommit, testCommit2, "not among the policy's 1 commit(s)")
	// The other policy checks are still evaluated.
	for _, n := range []string{CheckBuilder, CheckSource, CheckPatches, CheckBaseImage} {
		if c := check(t, rep, n); c.Status() != "PASS" {
			t.Fatalf("%s: %s %s", n, c.Status(), c.Reason)
		}
	}
	p := testPolicy()
	p.Commits = append(p.Commits, testCommit2)
	rep, err = f.verify(t, tg, p)
	wantVerified(t, rep, err)
}

func TestPolicyPatches(t *testing.T) {
	f := newFixture(t)
	extra := provenance.Patch{Name: "0003-sneaky.patch", Kind: provenance.PatchKindDiff, SHA256: strings.Repeat("03", 32)}
	tg := f.published(t, "extra", func(in *provenance.Input) { in.Patches = append(in.Patches, extra) })
	rep, err := f.verify(t, tg, testPolicy())
	wantRefused(t, rep, err, CheckPatches, `extra patch "0003-sneaky.patch"`, extra.SHA256)

	tg = f.published(t, "missing", func(in *provenance.Input) { in.Patches = in.Patches[:1] })
	rep, err = f.verify(t, tg, testPolicy())
	wantRefused(t, rep, err, CheckPatches, "missing patch", testPatch2.SHA256)

	// Same content under another name than the policy gives.
	tg = f.published(t, "renamed", func(in *provenance.Input) { in.Patches[0].Name = "renamed.patch" })
	rep, err = f.verify(t, tg, testPolicy())
	wantRefused(t, rep, err, CheckPatches, `recorded as "renamed.patch"`)

	// `patches: []` means none; an unpatched build passes it.
	tg = f.published(t, "none", func(in *provenance.Input) { in.Patches = nil })
	p := testPolicy()
	p.Patches = []PolicyPatch{}
	rep, err = f.verify(t, tg, p)
	wantVerified(t, rep, err)
	rep, err = f.verify(t, tg, testPolicy())
	wantRefused(t, rep, err, CheckPatches, "missing patch")
}

func TestPolicySourceBaseBuilder(t *testing.T) {
	f := newFixture(t)
	tg := f.published(t, "fork", func(in *provenance.Input) { in.Upstream.URL = "https://github.com/evil/app.git" })
	rep, err := f.verify(t, tg, testPolicy())
	wantRefused(t, rep, err, CheckSource, "evil/app.git")

	tg = f.published(t, "base", func(in *provenance.Input) { in.Base.Digest = "sha256:" + strings.Repeat("bb", 32) })
	rep, err = f.verify(t, tg, testPolicy())
	wantRefused(t, rep, err, CheckBaseImage, "busybox:1.36@sha256:bbbb")

	// Dockerfile builds: every image the Dockerfile pulled is checked.
	tg = f.published(t, "dockerfile", func(in *provenance.Input) {
		in.Native, in.Base = nil, provenance.Image{}
		in.Dockerfile = &provenance.Dockerfile{Path: "Dockerfile", Args: map[string]string{}}
		in.Images = []provenance.Image{{Ref: "docker.io/library/ruby:3.4", Digest: testBase}, {Ref: "docker.io/library/node:22", Digest: "sha256:" + strings.Repeat("0e", 32)}}
	})
	rep, err = f.verify(t, tg, testPolicy())
	wantRefused(t, rep, err, CheckBaseImage, "node:22@sha256:0e0e")

	tg = f.published(t, "builder", func(in *provenance.Input) { in.BuilderID = "https://ci.example/runner@v1" })
	rep, err = f.verify(t, tg, testPolicy())
	wantRefused(t, rep, err, CheckBuilder, "https://ci.example/runner@v1", "is not trusted")
	// Without builders in the policy only the default builder is trusted.
	p := testPolicy()
	p.Builders = nil
	rep, err = f.verify(t, tg, p)
	wantRefused(t, rep, err, CheckBuilder, "only the default builder")
	p.Builders = []string{"https://ci.example/runner@v1"}
	rep, err = f.verify(t, tg, p)
	wantVerified(t, rep, err)
}

func TestSignedWithoutProvenance(t *testing.T) {
	// CVE-2022-35929: a signed image without any attestation must not pass
	// as "attestations verified".
	f := newFixture(t)
	tg := f.image(t, "noprov")
	signAndAttest(t, f.c, tg, f.s, nil)
	rep, err := f.verify(t, tg, testPolicy())
	wantRefused(t, rep, err, CheckAttestation, "no attestation is attached")
	if c := check(t, rep, CheckSignature); c.Status() != "PASS" {
		t.Fatalf("signature: %s", c.Reason)
	}
	rep, err = f.verify(t, tg, NoPolicy())
	wantRefused(t, rep, err, CheckAttestation, "no attestation is attached")

	// Not even signed.
	tg = f.image(t, "nothing")
	rep, err = f.verify(t, tg, NoPolicy())
	wantRefused(t, rep, err, CheckSignature, "no signature is attached")
}

// envelopeFor signs payload as a DSSE envelope with s.
func envelopeFor(t *testing.T, s *sign.Signer, payloadType string, payload []byte) []byte {
	t.Helper()
	env, err := sign.SignDSSE(s, payloadType, payload)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestWrongPayloadType(t *testing.T) {
	f := newFixture(t)
	tg := f.image(t, "ptype")
	signAndAttest(t, f.c, tg, f.s, nil)
	// A valid signature, over PAE with another payload type.
	pushAttestations(t, f.c, tg, envelopeFor(t, f.s, "application/json", stmtOf(t, provInput(tg.Repository, tg.Digest))))
	rep, err := f.verify(t, tg, testPolicy())
	wantRefused(t, rep, err, CheckPayloadType, `"application/json"`, sign.InTotoPayloadType)
	if check(t, rep, CheckDSSESignature).Status() != "PASS" {
		t.Fatal("the envelope's signature is valid")
	}
	// Rewriting the payloadType of a valid in-toto envelope breaks its
	// signature instead.
	env := envelopeFor(t, f.s, sign.InTotoPayloadType, stmtOf(t, provInput(tg.Repository, tg.Digest)))
	env = bytes.Replace(env, []byte(`"payloadType":"application/vnd.in-toto+json"`), []byte(`"payloadType":"application/vnd.in-toto+jsoN"`), 1)
	pushAttestations(t, f.c, tg, env)
	rep, err = f.verify(t, tg, testPolicy())
	wantRefused(t, rep, err, CheckDSSESignature)
}

func TestMalformedPayload(t *testing.T) {
	f := newFixture(t)
	tg := f.image(t, "malformed")
	signAndAttest(t, f.c, tg, f.s, nil)
	good := stmtOf(t, provInput(tg.Repository, tg.Digest))
	for name, payload := range map[string][]byte{
		"truncated":      good[:len(good)/2],
		"not JSON":       []byte("this is not json at all"),
		"trailing":       append(append([]byte{}, good...), []byte(` {"x":1}`)...),
		"array":          []byte(`[1,2,3]`),
		"null":           []byte(`null`),
		"wrong _type":    bytes.Replace(good, []byte(`"https://in-toto.io/Statement/v1"`), []byte(`"https://in-toto.io/Statement/v2"`), 1),
		"no subject":     bytes.Replace(good, []byte(`"subject":`), []byte(`"subjects":`), 1),
		"case-folded":    bytes.Replace(good, []byte(`"_type":`), []byte(`"_TYPE":`), 1),
		"empty":          {},
		"predicate null": bytes.Replace(good, []byte(`"predicate":{`), []byte(`"predicate":null,"x":{`), 1),
	} {
		pushAttestations(t, f.c, tg, envelopeFor(t, f.s, sign.InTotoPayloadType, payload))
		rep, err := f.verify(t, tg, testPolicy())
		t.Run(name, func(t *testing.T) { wantRefused(t, rep, err, CheckStatement, "not an in-toto v1 statement") })
	}
}

// editPredicate applies edit to the decoded statement and re-encodes it.
func editStatement(t *testing.T, stmt []byte, edit func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(stmt, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func buildDef(m map[string]any) map[string]any {
	return m["predicate"].(map[string]any)["buildDefinition"].(map[string]any)
}

func TestUnknownExternalParameter(t *testing.T) {
	f := newFixture(t)
	tg := f.image(t, "extparam")
	signAndAttest(t, f.c, tg, f.s, nil)
	good := stmtOf(t, provInput(tg.Repository, tg.Digest))
	for name, c := range map[string]struct {
		edit func(m map[string]any)
		want string
	}{
		"top level": {func(m map[string]any) {
			buildDef(m)["externalParameters"].(map[string]any)["cacheFrom"] = "registry.evil/cache"
		}, `"externalParameters.cacheFrom"`},
		"nested": {func(m map[string]any) {
			buildDef(m)["externalParameters"].(map[string]any)["build"].(map[string]any)["network"] = "host"
		}, `"externalParameters.build.network"`},
		"in a patch": {func(m map[string]any) {
			buildDef(m)["externalParameters"].(map[string]any)["patches"].([]any)[1].(map[string]any)["url"] = "x"
		}, `"externalParameters.patches[1].url"`},
		"in upstream": {func(m map[string]any) {
			buildDef(m)["externalParameters"].(map[string]any)["upstream"].(map[string]any)["submodules"] = true
		}, `"externalParameters.upstream.submodules"`},
	} {
		pushAttestations(t, f.c, tg, envelopeFor(t, f.s, sign.InTotoPayloadType, editStatement(t, good, c.edit)))
		rep, err := f.verify(t, tg, testPolicy())
		t.Run(name, func(t *testing.T) {
			wantRefused(t, rep, err, CheckExternalParameters, "unknown external parameter", c.want)
		})
	}
	// Other malformations are the strict parser's: reported by check
	// provenance, naming the field.
	bad := editStatement(t, good, func(m map[string]any) {
		delete(buildDef(m)["externalParameters"].(map[string]any), "patches")
	})
	pushAttestations(t, f.c, tg, envelopeFor(t, f.s, sign.InTotoPayloadType, bad))
	rep, err := f.verify(t, tg, testPolicy())
	wantRefused(t, rep, err, CheckProvenance, `missing key "patches"`)
	// Wrong buildType.
	bad = editStatement(t, good, func(m map[string]any) { buildDef(m)["buildType"] = "https://example.com/other@v1" })
	pushAttestations(t, f.c, tg, envelopeFor(t, f.s, sign.InTotoPayloadType, bad))
	rep, err = f.verify(t, tg, testPolicy())
	wantRefused(t, rep, err, CheckBuildType, "https://example.com/other@v1")
	// Wrong predicateType (another kind of attestation only).
	bad = editStatement(t, good, func(m map[string]any) { m["predicateType"] = "https://spdx.dev/Document" })
	pushAttestations(t, f.c, tg, envelopeFor(t, f.s, sign.InTotoPayloadType, bad))
	rep, err = f.verify(t, tg, testPolicy())
	wantRefused(t, rep, err, CheckPredicateType, "https://spdx.dev/Document")
}

// TestSeveralAttestations: an unrelated attestation beside the provenance
// does not hurt; an attacker's unsigned one beside it neither; the
// failure report names the closest candidate.
func TestSeveralAttestations(t *testing.T) {
	f := newFixture(t)
	tg := f.image(t, "several")
	signAndAttest(t, f.c, tg, f.s, nil)
	good := stmtOf(t, provInput(tg.Repository, tg.Digest))
	sbom := editStatement(t, good, func(m map[string]any) {
		m["predicateType"] = "https://spdx.dev/Document"
		m["predicate"] = map[string]any{}
	})
	evil := newSigner(t)
	pushAttestations(t, f.c, tg,
		envelopeFor(t, f.s, sign.InTotoPayloadType, sbom),
		envelopeFor(t, evil, sign.InTotoPayloadType, good),
		envelopeFor(t, f.s, sign.InTotoPayloadType, good))
	rep, err := f.verify(t, tg, testPolicy())
	wantVerified(t, rep, err)

	bad := stmtOf(t, func() provenance.Input {
		in := provInput(tg.Repository, tg.Digest)
		in.Upstream.Commit = testCommit2
		return in
	}())
	pushAttestations(t, f.c, tg,
		envelopeFor(t, f.s, sign.InTotoPayloadType, sbom),
		envelopeFor(t, f.s, sign.InTotoPayloadType, bad))
	rep, err = f.verify(t, tg, testPolicy())
	wantRefused(t, rep, err, CheckCommit, "closest of 2 attestations", "layer 1")
}

func TestNoPolicy(t *testing.T) {
	f := newFixture(t)
	tg := f.published(t, "nopolicy", nil)
	rep, err := f.verify(t, tg, NoPolicy())
	wantVerified(t, rep, err, append(policyOnly, CheckSource, CheckCommit, CheckPatches, CheckBaseImage)...)
	if rep.Policy != "none" {
		t.Fatalf("policy %q", rep.Policy)
	}
	// Without a policy only the default builder is trusted.
	tg = f.published(t, "nopolicy-ci", func(in *provenance.Input) { in.BuilderID = "https://ci.example/runner@v1" })
	rep, err = f.verify(t, tg, NoPolicy())
	wantRefused(t, rep, err, CheckBuilder, "without a policy, only the default builder")

	// A nil policy is not "no policy": it is a configuration error.
	rep, err = f.verify(t, tg, nil)
	if !errors.Is(err, errs.ErrInvalidPolicy) || errs.IsVerification(err) || rep != nil {
		t.Fatalf("nil policy: %v", err)
	}
	// Neither is a policy with constraints left out.
	rep, err = f.verify(t, tg, &Policy{Source: testSource})
	if !errors.Is(err, errs.ErrInvalidPolicy) || !strings.Contains(err.Error(), "commits: required") {
		t.Fatalf("incomplete policy: %v", err)
	}
	// Explicit any passes (skipped), and shows it.
	p := &Policy{AnySource: true, AnyCommit: true, AnyPatches: true, AnyBaseImage: true, Builders: []string{"https://ci.example/runner@v1"}}
	rep, err = f.verify(t, tg, p)
	wantVerified(t, rep, err, append(policyOnly, CheckSource, CheckCommit, CheckPatches, CheckBaseImage)...)
	if c := check(t, rep, CheckCommit); !strings.Contains(c.Reason, "allows any commit") {
		t.Fatalf("commit: %s", c.Reason)
	}
}

func TestTagNeedsResolve(t *testing.T) {
	f := newFixture(t)
	tg := f.published(t, "v1", nil)
	ref, err := ParseReference(tg.Repository + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	if !ref.IsTag() || ref.Tag != "v1" {
		t.Fatalf("parsed %+v", ref)
	}
	// Verify refuses an unresolved tag: a Target must carry a digest.
	rep, err := f.v.Verify(context.Background(), ref.Target, testPolicy())
	if !errors.Is(err, errs.ErrUsage) || rep != nil || !strings.Contains(err.Error(), "resolve a tag first") {
		t.Fatalf("Verify(tag): %v", err)
	}
	got, err := f.v.Resolve(context.Background(), ref)
	if err != nil || got != tg {
		t.Fatalf("Resolve = %v, %v; want %v", got, err, tg)
	}
	rep, err = f.v.Verify(context.Background(), got, testPolicy())
	wantVerified(t, rep, err)
	// A digest reference resolves to itself without asking the registry.
	ref, _ = ParseReference(tg.String())
	if got, err := f.v.Resolve(context.Background(), ref); err != nil || got != tg {
		t.Fatalf("Resolve(digest) = %v, %v", got, err)
	}
}

func TestParseReference(t *testing.T) {
	d := digest.FromString("x")
	for in, want := range map[string]Reference{
		"127.0.0.1:5000/acme/app@" + d.String():    {Target: Target{Repository: "127.0.0.1:5000/acme/app", Digest: d}},
		"127.0.0.1:5000/acme/app:v1@" + d.String(): {Target: Target{Repository: "127.0.0.1:5000/acme/app", Digest: d}},
		"alpine":                     {Target: Target{Repository: "docker.io/library/alpine"}, Tag: "latest"},
		"ghcr.io/acme/app:v2":        {Target: Target{Repository: "ghcr.io/acme/app"}, Tag: "v2"},
		"oci:out/demo@" + d.String(): {Target: Target{Layout: "out/demo", Digest: d}},
		"oci:/abs/dir:stable":        {Target: Target{Layout: "/abs/dir"}, Tag: "stable"},
		"oci:./out/demo":             {Target: Target{Layout: "out/demo"}, Tag: "latest"},
		"oci:host:5000/dir/x":        {Target: Target{Layout: "host:5000/dir/x"}, Tag: "latest"},
	} {
		got, err := ParseReference(in)
		if err != nil || got != want {
			t.Errorf("ParseReference(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "acme/App", "oci:", "oci:@" + d.String(), "oci:dir@sha256:abc", "x@sha512:" + strings.Repeat("a", 128), "oci:dir:"} {
		if _, err := ParseReference(in); !errors.Is(err, errs.ErrUsage) {
			t.Errorf("ParseReference(%q): %v, want a usage error", in, err)
		}
	}
}

func TestLayout(t *testing.T) {
	work := t.TempDir()
	s := newSigner(t)
	dir, d := makeLayout(t, work, "v1")
	in := provInput("127.0.0.1:5000/acme/app", d)
	signLayout(t, dir, d, s, stmtOf(t, in))
	v := mustVerifier(t, WithPublicKeys(s.Public()))
	ctx := context.Background()
	ref, err := ParseReference(LayoutPrefix + dir + "@" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := v.Verify(ctx, ref.Target, testPolicy())
	wantVerified(t, rep, err)
	if rep.Image != "oci:"+dir+"@"+d.String() {
		t.Fatalf("image %s", rep.Image)
	}
	// By tag, resolved once through index.json.
	ref, _ = ParseReference(LayoutPrefix + dir + ":v1")
	tg, err := v.Resolve(ctx, ref)
	if err != nil || tg.Digest != d || tg.Layout != dir {
		t.Fatalf("Resolve(layout tag) = %v, %v", tg, err)
	}
	ref, _ = ParseReference(LayoutPrefix + dir + ":nope")
	if _, err := v.Resolve(ctx, ref); !errors.Is(err, errs.ErrNotFound) {
		t.Fatalf("Resolve(missing layout tag): %v", err)
	}
	// Another key: refused.
	v2 := mustVerifier(t, WithPublicKeys(newSigner(t).Public()))
	rep, err = v2.Verify(ctx, Target{Layout: dir, Digest: d}, testPolicy())
	wantRefused(t, rep, err, CheckSignature)
	// An image that is not in the layout: not found, not a verification.
	rep, err = v.Verify(ctx, Target{Layout: dir, Digest: digest.FromString("nope")}, testPolicy())
	if !errors.Is(err, errs.ErrNotFound) || errs.IsVerification(err) {
		t.Fatalf("missing image: %v", err)
	}
	// A layout whose blob was swapped.
	dir2, d2 := makeLayout(t, work, "swapped")
	signLayout(t, dir2, d2, s, stmtOf(t, provInput("x/y", d2)))
	blob := filepath.Join(dir2, "blobs", "sha256", d2.Encoded())
	os.Chmod(blob, 0o644)
	if err := os.WriteFile(blob, []byte(`{"schemaVersion":2}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, Target{Layout: dir2, Digest: d2}, testPolicy()); !errors.Is(err, errs.ErrLayout) || errs.IsVerification(err) {
		t.Fatalf("swapped blob: %v", err)
	}
}

// writeHistory writes a track history with the given commits published
// and one that failed.
func writeHistory(t *testing.T, path string, published ...string) {
	t.Helper()
	for _, c := range published {
		if err := history.Append(path, history.Entry{Commit: c, Outcome: history.Published, Digest: "sha256:" + strings.Repeat("e", 64), Start: time.Unix(1, 0), End: time.Unix(2, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := history.Append(path, history.Entry{Commit: strings.Repeat("f", 40), Outcome: history.BuildFailed}); err != nil {
		t.Fatal(err)
	}
}

func TestHistoryPolicy(t *testing.T) {
	f := newFixture(t)
	work := t.TempDir()
	hist := filepath.Join(work, "app.history.jsonl")
	writeHistory(t, hist, testCommit2)
	pol := []byte(`apiVersion: vmbuild/v1
kind: VerifyPolicy
source: ` + testSource + `
history: app.history.jsonl
patches:
  - name: 0001-fix.patch
    sha256: ` + testPatch1.SHA256 + `
  - sha256: ` + testPatch2.SHA256 + `
baseImages: [` + testBase + `]
`)
	pp := filepath.Join(work, "policy.yaml")
	if err := os.WriteFile(pp, pol, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := LoadPolicy(pp)
	if err != nil {
		t.Fatal(err)
	}
	if p.HistoryFile != hist {
		t.Fatalf("history resolved to %s, want %s", p.HistoryFile, hist)
	}
	tg := f.published(t, "hist", func(in *provenance.Input) { in.Upstream.Commit = testCommit2 })
	rep, err := f.verify(t, tg, p)
	wantVerified(t, rep, err, policyOnly...)
	if c := check(t, rep, CheckCommit); !strings.Contains(c.Reason, "recorded as published in "+hist) {
		t.Fatalf("commit: %s", c.Reason)
	}
	// testCommit is not in the history; a failed build's commit neither.
	tg = f.published(t, "hist2", nil)
	rep, err = f.verify(t, tg, p)
	wantRefused(t, rep, err, CheckCommit, "not recorded as published in "+hist)
	tg = f.published(t, "hist3", func(in *provenance.Input) { in.Upstream.Commit = strings.Repeat("f", 40) })
	rep, err = f.verify(t, tg, p)
	wantRefused(t, rep, err, CheckCommit, "not recorded as published")
	// The history is read at each Verify: a new publication counts.
	writeHistory(t, hist, strings.Repeat("f", 40))
	rep, err = f.verify(t, tg, p)
	wantVerified(t, rep, err, policyOnly...)
	// A history that disappeared is a configuration error.
	os.Remove(hist)
	if _, err := f.verify(t, tg, p); !errors.Is(err, errs.ErrInvalidPolicy) || errs.IsVerification(err) {
		t.Fatalf("missing history: %v", err)
	}
}

// TestLayoutHistoryPolicy: the happy path on an OCI layout with a policy
// file that allows the commits of a history.
func TestLayoutHistoryPolicy(t *testing.T) {
	work := t.TempDir()
	s := newSigner(t)
	dir, d := makeLayout(t, work, "hist")
	signLayout(t, dir, d, s, stmtOf(t, provInput("127.0.0.1:5000/acme/app", d)))
	writeHistory(t, filepath.Join(work, "h.jsonl"), testCommit)
	pp := filepath.Join(work, "p.yaml")
	os.WriteFile(pp, []byte("apiVersion: vmbuild/v1\nkind: VerifyPolicy\nsource: "+testSource+"\nhistory: h.jsonl\npatches: any\nbaseImages: any\n"), 0o644)
	p, err := LoadPolicy(pp)
	if err != nil {
		t.Fatal(err)
	}
	v := mustVerifier(t, WithPublicKeys(s.Public()))
	rep, err := v.Verify(context.Background(), Target{Layout: dir, Digest: d}, p)
	wantVerified(t, rep, err, append(policyOnly, CheckPatches, CheckBaseImage)...)
}

func TestReportJSONAndText(t *testing.T) {
	f := newFixture(t)
	tg := f.published(t, "json", func(in *provenance.Input) { in.Upstream.Commit = testCommit2 })
	rep, _ := f.verify(t, tg, testPolicy())
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Image    string `json:"image"`
		Verified bool   `json:"verified"`
		Checks   []struct {
			Name   string `json:"name"`
			OK     bool   `json:"ok"`
			Reason string `json:"reason"`
		} `json:"checks"`
	}
	if err := json.Unmarshal(b, &back); err != nil || back.Verified || back.Image != tg.String() || len(back.Checks) != len(CheckNames()) {
		t.Fatalf("json report: %s", b)
	}
	var txt strings.Builder
	rep.WriteText(&txt)
	t.Logf("text report:\n%s", txt.String())
	for _, want := range []string{"PASS  signature ", "FAIL  commit ", "NOT VERIFIED  " + tg.String()} {
		if !strings.Contains(txt.String(), want) {
			t.Fatalf("text report lacks %q:\n%s", want, txt.String())
		}
	}
}

func TestNewOptions(t *testing.T) {
	if _, err := New(); !errors.Is(err, errs.ErrKey) {
		t.Fatalf("New without keys: %v", err)
	}
	if _, err := New(WithPublicKeyPEM([]byte("junk"))); !errors.Is(err, errs.ErrKey) {
		t.Fatalf("New with a junk key: %v", err)
	}
	s := newSigner(t)
	if _, err := New(WithPublicKeys(s.Public()), WithTimeout(0)); !errors.Is(err, errs.ErrUsage) {
		t.Fatalf("zero timeout: %v", err)
	}
	if _, err := New(WithPublicKeys(s.Public()), WithMaxTotalBytes(1<<20)); !errors.Is(err, errs.ErrUsage) {
		t.Fatalf("tiny budget: %v", err)
	}
	if _, err := New(WithPublicKeys(s.Public()), WithPublicKeyPEM(s.PublicKeyPEM())); err != nil {
		t.Fatal(err)
	}
}

// TestStatementV01: the two ways stock cosign v2 re-encodes a statement
// are accepted, nothing more.
func TestStatementV01(t *testing.T) {
	f := newFixture(t)
	tg := f.image(t, "v01")
	signAndAttest(t, f.c, tg, f.s, nil)
	good := stmtOf(t, provInput(tg.Repository, tg.Digest))
	v01 := bytes.Replace(good, []byte(`"https://in-toto.io/Statement/v1"`), []byte(`"https://in-toto.io/Statement/v0.1"`), 1)
	cosignStyle := bytes.Replace(v01, []byte(`"invocationId"`), []byte(`"invocationID"`), 1)
	for name, payload := range map[string][]byte{"v0.1": v01, "v0.1 with invocationID": cosignStyle} {
		pushAttestations(t, f.c, tg, envelopeFor(t, f.s, sign.InTotoPayloadType, payload))
		rep, err := f.verify(t, tg, testPolicy())
		t.Run(name, func(t *testing.T) { wantVerified(t, rep, err) })
	}
	both := bytes.Replace(cosignStyle, []byte(`"invocationID":`), []byte(`"invocationId":"x","invocationID":`), 1)
	pushAttestations(t, f.c, tg, envelopeFor(t, f.s, sign.InTotoPayloadType, both))
	rep, err := f.verify(t, tg, testPolicy())
	wantRefused(t, rep, err, CheckProvenance, "both invocationID and invocationId")
	// A duplicate key is refused, also in a v0.1 statement, whose
	// rewrite used to keep the last one.
	dup := bytes.Replace(cosignStyle, []byte(`"predicateType":`), []byte(`"predicateType":"https://example.com/other","predicateType":`), 1)
	pushAttestations(t, f.c, tg, envelopeFor(t, f.s, sign.InTotoPayloadType, dup))
	rep, err = f.verify(t, tg, testPolicy())
	wantRefused(t, rep, err, CheckStatement, `key "predicateType" appears twice`)
	// invocationID in a v1 statement is not cosign's: refused.
	v1ID := bytes.Replace(good, []byte(`"invocationId"`), []byte(`"invocationID"`), 1)
	pushAttestations(t, f.c, tg, envelopeFor(t, f.s, sign.InTotoPayloadType, v1ID))
	rep, err = f.verify(t, tg, testPolicy())
	wantRefused(t, rep, err, CheckProvenance, "invocationID")
}

// TestLayoutFIFO: a FIFO in place of a blob of the layout (the image
// manifest, a signature payload) is an error within the deadline, never a
// read that blocks past it (#15.6).
func TestLayoutFIFO(t *testing.T) {
	s := newSigner(t)
	for _, which := range []string{"manifest", "signature"} {
		t.Run(which, func(t *testing.T) {
			dir, d := makeLayout(t, t.TempDir(), "fifo")
			signLayout(t, dir, d, s, stmtOf(t, provInput("127.0.0.1:5000/acme/app", d)))
			victim := d
			if which == "signature" {
				l, err := store.OpenLayout(context.Background(), dir)
				if err != nil {
					t.Fatal(err)
				}
				b, _, err := l.Manifest(context.Background(), store.CosignTag(d, "sig"))
				if err != nil {
					t.Fatal(err)
				}
				var m ocispec.Manifest
				if err := json.Unmarshal(b, &m); err != nil || len(m.Layers) == 0 {
					t.Fatalf("signature image: %v", err)
				}
				victim = m.Layers[0].Digest
			}
			p := filepath.Join(dir, "blobs", "sha256", victim.Encoded())
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
			v := mustVerifier(t, WithPublicKeys(s.Public()), WithTimeout(2*time.Second))
			done := make(chan error, 1)
			start := time.Now()
			go func() {
				_, err := v.Verify(context.Background(), Target{Layout: dir, Digest: d}, testPolicy())
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || errs.IsVerification(err) || !errors.Is(err, errs.ErrLayout) {
					t.Fatalf("a FIFO blob: %v", err)
				}
				if took := time.Since(start); took > 2*time.Second {
					t.Fatalf("returned after %s, past the deadline", took)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("Verify blocks on a FIFO blob past its deadline")
			}
		})
	}
}
