package sign

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/vmbuild/vmbuild/errs"
)

// fuzzStatement is what the test key signed for the fuzz corpus.
const fuzzStatement = `{"_type":"https://in-toto.io/Statement/v1","predicate":{},"predicateType":"https://slsa.dev/provenance/v1","subject":[{"digest":{"sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}]}`

// fuzzSigner loads testdata/fuzz-key.pem, a key that exists only to sign
// the fuzz seeds.
func fuzzSigner(t testing.TB) *Signer {
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
	s, err := NewSigner(k.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// FuzzVerifyDSSE: for any input, VerifyDSSE with the test key never
// panics, refuses with a VerificationError, and accepts only an envelope
// whose payload type and payload are exactly what the key signed (no
// forgery through parsing quirks).
func FuzzVerifyDSSE(f *testing.F) {
	s := fuzzSigner(f)
	env, err := SignDSSE(s, InTotoPayloadType, []byte(fuzzStatement))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env)
	f.Add([]byte(`{"payloadType":"x","payload":"","signatures":[{"sig":""}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		pt, payload, err := VerifyDSSE(s.Public(), data)
		if err != nil {
			var ve *errs.VerificationError
			if !errors.As(err, &ve) {
				t.Fatalf("refusal is not a VerificationError: %T %v", err, err)
			}
			return
		}
		if pt != InTotoPayloadType || !bytes.Equal(payload, []byte(fuzzStatement)) {
			t.Fatalf("accepted a payload the key never signed: %q %q", pt, payload)
		}
	})
}

// FuzzBundle: bundle parsing never panics, and an envelope extracted from
// any input verifies only if it carries what the key signed.
func FuzzBundle(f *testing.F) {
	s := fuzzSigner(f)
	b, err := NewBundle(s, InTotoPayloadType, []byte(fuzzStatement))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := EnvelopeFromBundle(data)
		if err != nil {
			return
		}
		_, payload, err := VerifyDSSE(s.Public(), env)
		if err == nil && !bytes.Equal(payload, []byte(fuzzStatement)) {
			t.Fatalf("accepted a payload the key never signed: %q", payload)
		}
		_, _ = bundleContent(data)
	})
}

// FuzzVerifySimpleSigning: random payload/signature pairs are never
// accepted for the digest unless they are the signed payload.
func FuzzVerifySimpleSigning(f *testing.F) {
	s := fuzzSigner(f)
	d := digest.Digest("sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	payload, _ := SimpleSigningPayload("r/x", d)
	sig, _ := s.Sign(payload)
	f.Add(payload, sig)
	f.Fuzz(func(t *testing.T, p, sg []byte) {
		if _, err := VerifySimpleSigning(s.Public(), p, sg, d); err == nil && !bytes.Equal(p, payload) {
			t.Fatalf("accepted a payload the key never signed: %q", p)
		}
	})
}
