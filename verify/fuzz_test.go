package verify

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/provenance"
	"github.com/vmbuild/vmbuild/sign"
)

// The fuzz targets check one property: random input is never accepted.
// An input may verify only when it is exactly what the trusted key
// signed (FuzzVerifyEnvelope) or, when the key signs whatever the fuzzer
// makes, when an independent reading of the statement agrees that it
// satisfies the policy (FuzzVerifyStatement).

// fuzzDigest is the image the fuzz evidence is about.
var fuzzDigest = digest.FromString("the image under fuzz")

// fuzzSigner loads testdata/fuzz-key.pem, a key that exists only to sign
// the fuzz corpus.
func fuzzSigner(t testing.TB) *sign.Signer {
	t.Helper()
	b, err := os.ReadFile("testdata/fuzz-key.pem")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sign.NewSigner(k.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fuzzEvidence is a signed image whose only attestation is envelope.
func fuzzEvidence(t testing.TB, s *sign.Signer, envelope []byte) evidence {
	t.Helper()
	payload, err := sign.SimpleSigningPayload("127.0.0.1:5000/acme/app", fuzzDigest)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	return evidence{
		digest: fuzzDigest,
		sigs:   []sign.Signature{{Format: sign.FormatLegacy, Payload: payload, Signature: sig, Source: "fuzz"}},
		atts:   []sign.Attestation{{Format: sign.FormatLegacy, Envelope: envelope, Source: "fuzz"}},
		keys:   []crypto.PublicKey{s.Public()},
		policy: testPolicy(),
	}
}

// fuzzStatements are the seed statements: the good one, and variants
// that must fail at each check.
func fuzzStatements(t testing.TB) map[string][]byte {
	t.Helper()
	in := provInput("127.0.0.1:5000/acme/app", fuzzDigest)
	good := stmtOf(t, in)
	other := in
	other.Upstream.Commit = testCommit2
	df := in
	df.Native, df.Base = nil, provenance.Image{}
	df.Dockerfile = &provenance.Dockerfile{Path: "Dockerfile", Args: map[string]string{"A": "b"}}
	df.Images = []provenance.Image{{Ref: "docker.io/library/ruby:3.4", Digest: testBase}}
	cosign := bytes.Replace(good, []byte(`"https://in-toto.io/Statement/v1"`), []byte(`"https://in-toto.io/Statement/v0.1"`), 1)
	cosign = bytes.Replace(cosign, []byte(`"invocationId"`), []byte(`"invocationID"`), 1)
	twice := in
	again := testPatch1
	again.Name = "again.patch"
	twice.Patches = append(append([]provenance.Patch{}, in.Patches...), again)
	lenient := in
	lenient.Patches = []provenance.Patch{testPatch1, testPatch2}
	lenient.Patches[0].Options = &provenance.PatchOptions{Fuzz: 1}
	network := in
	network.NonHermetic = []provenance.Access{{Kind: provenance.AccessNetwork, Step: "RUN x", Network: provenance.NetworkSandbox}}
	old := in
	old.Patches = []provenance.Patch{{Name: testPatch1.Name, Kind: testPatch1.Kind, SHA256: testPatch1.SHA256}, {Name: testPatch2.Name, Kind: testPatch2.Kind, SHA256: testPatch2.SHA256}}
	old.NonHermetic = nil
	frontend := df
	frontend.Frontend = &provenance.Image{Ref: "docker.io/docker/dockerfile:1.7", Digest: testBase}
	recipe := in
	recipe.Recipe.SHA256 = strings.Repeat("12", 32)
	return map[string][]byte{
		"good":       good,
		"cosign":     cosign,
		"dockerfile": stmtOf(t, df),
		"commit":     stmtOf(t, other),
		"twice":      stmtOf(t, twice),
		"lenient":    stmtOf(t, lenient),
		"network":    stmtOf(t, network),
		"old":        stmtOf(t, old),
		"frontend":   stmtOf(t, frontend),
		"recipe":     stmtOf(t, recipe),
		"extparam":   bytes.Replace(good, []byte(`"externalParameters":{`), []byte(`"externalParameters":{"cache":"x",`), 1),
		"buildtype":  bytes.Replace(good, []byte(provenance.BuildType), []byte("https://example.com/bt"), 1),
		"truncated":  good[:len(good)/3],
		"dupkey":     bytes.Replace(good, []byte(`"_type":`), []byte(`"_type":"x","_type":`), 1),
	}
}

// FuzzVerifyEnvelope: for any attestation envelope, evaluation never
// panics, and verifies only an envelope carrying exactly a statement the
// trusted key signed as in-toto (the corpus' "good" ones).
func FuzzVerifyEnvelope(f *testing.F) {
	s := fuzzSigner(f)
	stmts := fuzzStatements(f)
	accepted := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(stmts)) {
		env, err := sign.SignDSSE(s, sign.InTotoPayloadType, stmts[name])
		if err != nil {
			f.Fatal(err)
		}
		f.Add(env)
		if name == "good" || name == "cosign" || name == "dockerfile" {
			accepted[string(stmts[name])] = true
		}
		env, _ = sign.SignDSSE(s, "application/json", stmts[name])
		f.Add(env)
	}
	// The seeds behave as intended.
	for name, want := range map[string]bool{"good": true, "cosign": true, "commit": false, "extparam": false,
		"twice": false, "lenient": false, "network": false, "old": false, "frontend": false, "recipe": false} {
		env, _ := sign.SignDSSE(s, sign.InTotoPayloadType, stmts[name])
		if got := evaluate(fuzzEvidence(f, s, env)).verified(); got != want && name != "dockerfile" {
			f.Fatalf("seed %s: verified=%v", name, got)
		}
	}
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"sig":"MEUCIQ=="}]}`))
	ev := fuzzEvidence(f, s, nil)
	f.Fuzz(func(t *testing.T, envelope []byte) {
		e := ev
		e.atts = []sign.Attestation{{Format: sign.FormatLegacy, Envelope: envelope, Source: "fuzz"}}
		o := evaluate(e)
		if len(o.checks) != len(CheckNames()) {
			t.Fatalf("%d checks", len(o.checks))
		}
		if !o.verified() {
			if _, ok := o.firstFailure(); !ok {
				t.Fatal("not verified, and no check failed")
			}
			return
		}
		pt, payload, err := sign.VerifyDSSE(s.Public(), envelope)
		if err != nil || pt != sign.InTotoPayloadType || !accepted[string(payload)] {
			t.Fatalf("verified an envelope the key did not sign as is (payloadType %q, %v): %q", pt, err, envelope)
		}
	})
}

// FuzzVerifyStatement: the trusted key signs whatever statement the
// fuzzer makes; evaluation verifies it only when an independent reading
// (provenance.Parse and the policy, checked here by hand) agrees.
func FuzzVerifyStatement(f *testing.F) {
	s := fuzzSigner(f)
	stmts := fuzzStatements(f)
	for _, name := range slices.Sorted(maps.Keys(stmts)) {
		f.Add(stmts[name])
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	pol := testPolicy()
	ev := fuzzEvidence(f, s, nil)
	f.Fuzz(func(t *testing.T, payload []byte) {
		env, err := sign.SignDSSE(s, sign.InTotoPayloadType, payload)
		if err != nil {
			t.Fatal(err)
		}
		e := ev
		e.atts = []sign.Attestation{{Format: sign.FormatLegacy, Envelope: env, Source: "fuzz"}}
		o := evaluate(e)
		if !o.verified() {
			return
		}
		// Independent oracle.
		p := payload
		if bytes.Contains(p, []byte(provenance.StatementV01)) {
			var m map[string]any
			if json.Unmarshal(p, &m) != nil {
				t.Fatalf("verified a v0.1 statement that is not JSON: %q", payload)
			}
			m["_type"] = provenance.StatementV1
			if md, ok := dig(m, "predicate", "runDetails", "metadata").(map[string]any); ok {
				if v, ok := md["invocationID"]; ok {
					md["invocationId"] = v
					delete(md, "invocationID")
				}
			}
			p, _ = json.Marshal(m)
		}
		info, err := provenance.Parse(p)
		if err != nil {
			t.Fatalf("verified a statement provenance.Parse refuses (%v): %q", err, payload)
		}
		var problems []string
		if info.Subject.Digest != fuzzDigest.String() {
			problems = append(problems, "subject "+info.Subject.Digest)
		}
		if info.Upstream.URL != pol.Source {
			problems = append(problems, "source "+info.Upstream.URL)
		}
		if !slices.Contains(pol.Commits, info.Upstream.Commit) {
			problems = append(problems, "commit "+info.Upstream.Commit)
		}
		if !slices.Contains(pol.Builders, info.BuilderID) {
			problems = append(problems, "builder "+info.BuilderID)
		}
		var got, want []string
		for _, pt := range info.Patches {
			got = append(got, pt.SHA256)
		}
		for _, pt := range pol.Patches {
			want = append(want, pt.SHA256)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			problems = append(problems, "patches")
		}
		for _, pt := range info.Patches {
			if pol.StrictPatches && (pt.Options == nil || *pt.Options != (provenance.PatchOptions{}) || pt.Outcome != provenance.OutcomeApplied) {
				problems = append(problems, "patch not strict "+pt.Name)
			}
		}
		for _, im := range append([]provenance.Image{info.Base}, info.Images...) {
			if im.Ref != "" && !slices.Contains(pol.BaseImages, digest.Digest(im.Digest)) {
				problems = append(problems, "base "+im.Digest)
			}
		}
		if !slices.Contains(pol.Recipes, info.Recipe.SHA256) {
			problems = append(problems, "recipe "+info.Recipe.SHA256)
		}
		if info.Frontend != nil && !slices.Contains(pol.Frontends, digest.Digest(info.Frontend.Digest)) {
			problems = append(problems, "frontend "+info.Frontend.Digest)
		}
		if pol.Hermetic && (info.NonHermetic == nil || len(info.NonHermetic) > 0) {
			problems = append(problems, "not hermetic")
		}
		if len(problems) > 0 {
			t.Fatalf("verified a statement that breaks the policy (%s): %q", strings.Join(problems, ", "), payload)
		}
	})
}

func dig(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

// FuzzParsePolicy: any policy text either parses into a valid policy or
// is refused with a *PolicyError naming the file; never a panic.
func FuzzParsePolicy(f *testing.F) {
	ex, err := os.ReadFile("testdata/policy.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ex)
	f.Add([]byte(minimalPolicy))
	f.Add([]byte("apiVersion: vmbuild/v1\nkind: VerifyPolicy\nsource: any\ncommits: any\npatches: any\nbaseImages: any\n"))
	f.Add([]byte(minimalPolicy + "x: &a [*a]\n"))
	f.Add([]byte("a: &a [*a, *a, *a]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := ParsePolicy("f.yaml", raw)
		if err != nil {
			var pe *PolicyError
			if !errors.As(err, &pe) || !errors.Is(err, errs.ErrInvalidPolicy) || len(pe.Fields) == 0 {
				t.Fatalf("error %T %v", err, err)
			}
			for _, fe := range pe.Fields {
				if fe.File != "f.yaml" || !strings.HasPrefix(fe.Error(), "f.yaml") {
					t.Fatalf("field error without the file: %v", fe)
				}
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("parsed an invalid policy: %v\n%q", err, raw)
		}
	})
}

// TestWriteFuzzCorpus rewrites testdata/fuzz from the seeds when
// VMBUILD_WRITE_FUZZ_CORPUS=1 (the committed corpus; `go test` runs it).
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("VMBUILD_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("set VMBUILD_WRITE_FUZZ_CORPUS=1 to rewrite testdata/fuzz")
	}
	s := fuzzSigner(t)
	write := func(target, name string, b []byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(b)))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stmts := fuzzStatements(t)
	for _, name := range []string{"good", "cosign", "commit", "extparam", "truncated", "twice", "lenient", "network", "old", "frontend", "recipe"} {
		env, _ := sign.SignDSSE(s, sign.InTotoPayloadType, stmts[name])
		write("FuzzVerifyEnvelope", name, env)
		write("FuzzVerifyStatement", name, stmts[name])
	}
	env, _ := sign.SignDSSE(s, "text/plain", stmts["good"])
	write("FuzzVerifyEnvelope", "payloadtype", env)
	ex, _ := os.ReadFile("testdata/policy.yaml")
	write("FuzzParsePolicy", "example", ex)
	write("FuzzParsePolicy", "minimal", []byte(minimalPolicy))
	write("FuzzParsePolicy", "alias", []byte("a: &a [*a]\n"))
}
