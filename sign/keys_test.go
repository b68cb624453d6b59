package sign

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/encrypted"

	"github.com/vmbuild/vmbuild/errs"
)

func TestKeyPairRoundTrip(t *testing.T) {
	priv, pub, err := GenerateKeyPair([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(priv), "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n") {
		t.Fatalf("private key PEM: %.60s", priv)
	}
	if !strings.HasPrefix(string(pub), "-----BEGIN PUBLIC KEY-----\n") {
		t.Fatalf("public key PEM: %.60s", pub)
	}
	// The encrypted payload is go-securesystemslib's JSON (kdf scrypt, cipher nacl/secretbox).
	block, _ := pem.Decode(priv)
	var enc struct {
		KDF struct {
			Name string `json:"Name"`
		} `json:"kdf"`
		Cipher struct {
			Name string `json:"Name"`
		} `json:"cipher"`
	}
	if err := json.Unmarshal(block.Bytes, &enc); err != nil || enc.KDF.Name != "scrypt" || enc.Cipher.Name != "nacl/secretbox" {
		t.Fatalf("encrypted key format: %s (%v)", block.Bytes, err)
	}
	s, err := LoadPrivateKey(priv, []byte("pw"))
	if err != nil {
		t.Fatalf("LoadPrivateKey: %v", err)
	}
	if string(s.PublicKeyPEM()) != string(pub) {
		t.Fatal("loaded key's public half differs")
	}
	if _, err := LoadPrivateKey(priv, []byte("wrong")); !errors.Is(err, errs.ErrKey) {
		t.Fatalf("wrong password: %v", err)
	}
	pk, err := LoadPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("hello")
	sig, err := s.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifySig(pk, msg, sig); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if verifySig(pk, []byte("hellO"), sig) == nil {
		t.Fatal("signature verifies over other bytes")
	}
	if s.Hint() == "" || s.Hint() != KeyHint(pk) {
		t.Fatal("hint mismatch")
	}

	// The older PEM type is accepted.
	old := pem.EncodeToMemory(&pem.Block{Type: CosignPrivateKeyPEMType, Bytes: block.Bytes})
	if _, err := LoadPrivateKey(old, []byte("pw")); err != nil {
		t.Fatalf("ENCRYPTED COSIGN PRIVATE KEY: %v", err)
	}
	// An empty password works as with cosign.
	p2, _, err := GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPrivateKey(p2, nil); err != nil {
		t.Fatalf("empty password: %v", err)
	}
}

func TestKeyRefusals(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(rk)
	enc, _ := encrypted.Encrypt(der, []byte("pw"))
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: SigstorePrivateKeyPEMType, Bytes: enc})
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for name, in := range map[string][]byte{
		"not pem":       []byte("hello"),
		"wrong type":    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		"rsa key":       rsaPEM,
		"garbage bytes": pem.EncodeToMemory(&pem.Block{Type: SigstorePrivateKeyPEMType, Bytes: []byte("{}")}),
	} {
		if _, err := LoadPrivateKey(in, []byte("pw")); !errors.Is(err, errs.ErrKey) {
			t.Errorf("%s: want ErrKey, got %v", name, err)
		}
	}
	if _, err := NewSigner(p384); !errors.Is(err, errs.ErrKey) {
		t.Errorf("P-384 signer accepted: %v", err)
	}
	rpub, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	if _, err := LoadPublicKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rpub})); !errors.Is(err, errs.ErrKey) {
		t.Errorf("RSA public key accepted: %v", err)
	}
}

func TestSimpleSigningPayloadBytes(t *testing.T) {
	d := digest.Digest("sha256:" + strings.Repeat("ab", 32))
	got, err := SimpleSigningPayload("127.0.0.1:5000/x/app", d)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/x/app"},"image":{"docker-manifest-digest":"sha256:` + strings.Repeat("ab", 32) + `"},"type":"cosign container image signature"},"optional":null}`
	if string(got) != want {
		t.Fatalf("payload\n got %s\nwant %s", got, want)
	}
	for repo, want := range map[string]string{
		"alpine":                 "index.docker.io/library/alpine",
		"docker.io/acme/app":     "index.docker.io/acme/app",
		"localhost:5000/x/y":     "localhost:5000/x/y",
		"ghcr.io/acme/app":       "ghcr.io/acme/app",
		"127.0.0.1:40000/vm/app": "127.0.0.1:40000/vm/app",
	} {
		if got, err := DockerReference(repo); err != nil || got != want {
			t.Errorf("DockerReference(%q) = %q, %v; want %q", repo, got, err, want)
		}
	}
}

func TestVerifySimpleSigning(t *testing.T) {
	s, _ := NewSigner(mustKey(t))
	other, _ := NewSigner(mustKey(t))
	d := digest.FromString("image")
	payload, _ := SimpleSigningPayload("r/x", d)
	sig, _ := s.Sign(payload)
	if _, err := VerifySimpleSigning(s.Public(), payload, sig, d); err != nil {
		t.Fatalf("valid signature refused: %v", err)
	}
	for name, f := range map[string]func() error{
		"other key": func() error { _, err := VerifySimpleSigning(other.Public(), payload, sig, d); return err },
		"other digest": func() error {
			_, err := VerifySimpleSigning(s.Public(), payload, sig, digest.FromString("x"))
			return err
		},
		"tampered": func() error {
			p := []byte(strings.Replace(string(payload), "r/x", "r/y", 1))
			_, err := VerifySimpleSigning(s.Public(), p, sig, d)
			return err
		},
		"wrong type": func() error {
			p := []byte(strings.Replace(string(payload), SimpleSigningType, "atomic container signature", 1))
			sig, _ := s.Sign(p)
			_, err := VerifySimpleSigning(s.Public(), p, sig, d)
			return err
		},
		"truncated sig": func() error { _, err := VerifySimpleSigning(s.Public(), payload, sig[:10], d); return err },
	} {
		err := f()
		var ve *errs.VerificationError
		if !errors.As(err, &ve) {
			t.Errorf("%s: want VerificationError, got %v", name, err)
		}
	}
}

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestDSSERoundTrip(t *testing.T) {
	s, _ := NewSigner(mustKey(t))
	other, _ := NewSigner(mustKey(t))
	stmt := []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"` + strings.Repeat("a", 64) + `"}}],"predicateType":"x","predicate":{}}`)
	env, err := SignDSSE(s, InTotoPayloadType, stmt)
	if err != nil {
		t.Fatal(err)
	}
	// cosign's shape: payloadType, payload, signatures[{keyid:"", sig}].
	var raw map[string]any
	if err := json.Unmarshal(env, &raw); err != nil {
		t.Fatal(err)
	}
	sigs := raw["signatures"].([]any)
	if len(sigs) != 1 || sigs[0].(map[string]any)["keyid"] != "" {
		t.Fatalf("envelope signatures: %v", raw["signatures"])
	}
	pt, payload, err := VerifyDSSE(s.Public(), env)
	if err != nil || pt != InTotoPayloadType || string(payload) != string(stmt) {
		t.Fatalf("VerifyDSSE = %q, %q, %v", pt, payload, err)
	}
	var ve *errs.VerificationError
	if _, _, err := VerifyDSSE(other.Public(), env); !errors.As(err, &ve) {
		t.Fatalf("other key: %v", err)
	}
	// Changing the payload type breaks PAE.
	tampered := strings.Replace(string(env), InTotoPayloadType, "application/json", 1)
	if _, _, err := VerifyDSSE(s.Public(), []byte(tampered)); !errors.As(err, &ve) {
		t.Fatalf("tampered payloadType: %v", err)
	}
	// Changing the payload breaks it too.
	var e map[string]any
	json.Unmarshal(env, &e)
	e["payload"] = base64.StdEncoding.EncodeToString([]byte(strings.Replace(string(stmt), `"x"`, `"y"`, 1)))
	tb, _ := json.Marshal(e)
	if _, _, err := VerifyDSSE(s.Public(), tb); !errors.As(err, &ve) {
		t.Fatalf("tampered payload: %v", err)
	}

	// Bundle: the envelope inside verifies the same way.
	b, err := NewBundle(s, InTotoPayloadType, stmt)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"hint":"`+s.Hint()+`"`) || !strings.Contains(string(b), `"mediaType":"`+BundleMediaType+`"`) {
		t.Fatalf("bundle: %s", b)
	}
	be, err := EnvelopeFromBundle(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, p2, err := VerifyDSSE(s.Public(), be); err != nil || string(p2) != string(stmt) {
		t.Fatalf("bundle envelope: %v", err)
	}
	if _, err := EnvelopeFromBundle([]byte(strings.Replace(string(b), "v0.3", "v0.2", 1))); err == nil {
		t.Fatal("v0.2 bundle media type accepted")
	}
}

func TestSignStatementShape(t *testing.T) {
	d := digest.FromString("img")
	st, err := signStatement(d)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"_type":"https://in-toto.io/Statement/v1","predicate":{},"predicateType":"https://sigstore.dev/cosign/sign/v1","subject":[{"annotations":{},"digest":{"sha256":"` + d.Encoded() + `"}}]}`
	if string(st) != want {
		t.Fatalf("sign statement\n got %s\nwant %s", st, want)
	}
	s, _ := NewSigner(mustKey(t))
	env, _ := SignDSSE(s, InTotoPayloadType, st)
	if err := VerifyImageSignature(s.Public(), Signature{Format: FormatBundle, Envelope: env}, d); err != nil {
		t.Fatalf("bundle signature refused: %v", err)
	}
	var ve *errs.VerificationError
	if err := VerifyImageSignature(s.Public(), Signature{Format: FormatBundle, Envelope: env}, digest.FromString("other")); !errors.As(err, &ve) {
		t.Fatalf("bundle signature for another digest: %v", err)
	}
	// An attestation envelope is not an image signature.
	att, _ := SignDSSE(s, InTotoPayloadType, []byte(strings.Replace(string(st), CosignSignPredicateType, "https://slsa.dev/provenance/v1", 1)))
	if err := VerifyImageSignature(s.Public(), Signature{Format: FormatBundle, Envelope: att}, d); !errors.As(err, &ve) {
		t.Fatalf("attestation taken for a signature: %v", err)
	}
}

func TestSigImageConfigMatchesCosign(t *testing.T) {
	// Bytes cosign v2.6.5 wrote for a one-signature .sig image (observed).
	l := "sha256:29358e76f9ccc865e81d325511e0fb51a4686726142e28d9332692fd9da50c31"
	cfg, man, err := sigImage([]ocispec.Descriptor{{MediaType: SimpleSigningMediaType, Digest: digest.Digest(l), Size: 237}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":["` + l + `"]},"config":{}}`
	if string(cfg) != want {
		t.Fatalf("config\n got %s\nwant %s", cfg, want)
	}
	if !strings.Contains(string(man), `"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:d3fc02c2afe485e7ed247b078186f2dcd1fbf1a66ca3d7b19fb060d1d9186c58","size":233}`) {
		t.Fatalf("manifest: %s", man)
	}
}
