package sign

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/distribution/reference"
	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/opencontainers/go-digest"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/provenance"
)

// Media types, annotations and predicate types as cosign writes them.
const (
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	DSSEMediaType          = "application/vnd.dsse.envelope.v1+json"
	BundleMediaType        = "application/vnd.dev.sigstore.bundle.v0.3+json"
	InTotoPayloadType      = provenance.PayloadType
	EmptyConfigMediaType   = "application/vnd.oci.empty.v1+json"
	SignatureConfigType    = "application/vnd.oci.image.config.v1+json"

	SignatureAnnotation           = "dev.cosignproject.cosign/signature"
	PredicateTypeAnnotation       = "predicateType"
	BundlePredicateTypeAnnotation = "dev.sigstore.bundle.predicateType"
	BundleContentAnnotation       = "dev.sigstore.bundle.content"
	CreatedAnnotation             = "org.opencontainers.image.created"

	// CosignSignPredicateType is the predicate type of the in-toto
	// statement cosign v3 signs to sign an image in a bundle.
	CosignSignPredicateType = "https://sigstore.dev/cosign/sign/v1"
	// SimpleSigningType is critical.type of a simple-signing payload.
	SimpleSigningType = "cosign container image signature"
)

// SimpleSigning is a parsed cosign simple-signing payload.
type SimpleSigning struct {
	DockerReference string
	ManifestDigest  digest.Digest
	Optional        map[string]any
}

type ssPayload struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]any `json:"optional"`
}

// DockerReference renders a repository the way cosign (go-containerregistry)
// names it in payloads: "registry/path", with Docker Hub as
// "index.docker.io".
func DockerReference(repo string) (string, error) {
	named, err := reference.ParseNormalizedNamed(repo)
	if err != nil {
		return "", fmt.Errorf("parsing repository %q: %w", repo, err)
	}
	dom := reference.Domain(named)
	if dom == "docker.io" {
		dom = "index.docker.io"
	}
	return dom + "/" + reference.Path(named), nil
}

// SimpleSigningPayload returns the payload cosign signs for an image,
// byte for byte:
// {"critical":{"identity":{"docker-reference":R},"image":{"docker-manifest-digest":D},"type":"cosign container image signature"},"optional":null}
func SimpleSigningPayload(dockerReference string, d digest.Digest) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("building payload: %w", err)
	}
	var p ssPayload
	p.Critical.Identity.DockerReference = dockerReference
	p.Critical.Image.DockerManifestDigest = d.String()
	p.Critical.Type = SimpleSigningType
	return json.Marshal(p)
}

// ParseSimpleSigning parses a simple-signing payload.
func ParseSimpleSigning(payload []byte) (*SimpleSigning, error) {
	var p ssPayload
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("parsing simple-signing payload: %w", err)
	}
	if dec.More() {
		return nil, errors.New("parsing simple-signing payload: trailing data")
	}
	if p.Critical.Type != SimpleSigningType {
		return nil, fmt.Errorf("simple-signing payload has type %q, want %q", p.Critical.Type, SimpleSigningType)
	}
	d, err := digest.Parse(p.Critical.Image.DockerManifestDigest)
	if err != nil {
		return nil, fmt.Errorf("simple-signing payload: docker-manifest-digest: %w", err)
	}
	return &SimpleSigning{DockerReference: p.Critical.Identity.DockerReference, ManifestDigest: d, Optional: p.Optional}, nil
}

func refuse(check, format string, args ...any) error {
	return &errs.VerificationError{Check: check, Reason: fmt.Sprintf(format, args...)}
}

// VerifySimpleSigning checks a legacy cosign signature: sig (raw ASN.1,
// not base64) must verify over payload with pub, and the payload must be
// a simple-signing payload for want. Refusals are *errs.VerificationError;
// an unusable key is errs.ErrKey.
func VerifySimpleSigning(pub crypto.PublicKey, payload, sig []byte, want digest.Digest) (*SimpleSigning, error) {
	if _, err := hashFor(pub); err != nil {
		return nil, err
	}
	if err := verifySig(pub, payload, sig); err != nil {
		return nil, refuse("signature", "%v", err)
	}
	ss, err := ParseSimpleSigning(payload)
	if err != nil {
		return nil, refuse("signature", "%v", err)
	}
	if ss.ManifestDigest != want {
		return nil, refuse("signature", "payload signs %s, not %s", ss.ManifestDigest, want)
	}
	return ss, nil
}

// MaxEnvelopeSignatures bounds the signatures of a DSSE envelope that are
// tried.
const MaxEnvelopeSignatures = 16

// dsseSigner adapts Signer to go-securesystemslib's dsse.SignerVerifier.
// Its key id is empty, as cosign's envelopes have it.
type dsseSigner struct{ s *Signer }

func (d dsseSigner) Sign(_ context.Context, data []byte) ([]byte, error) { return d.s.Sign(data) }
func (d dsseSigner) Verify(_ context.Context, data, sig []byte) error {
	return verifySig(d.s.pub, data, sig)
}
func (d dsseSigner) KeyID() (string, error)   { return "", nil }
func (d dsseSigner) Public() crypto.PublicKey { return d.s.pub }

// SignDSSE signs payload in a DSSE envelope (PAE over payloadType and
// payload) and returns the envelope JSON, as cosign attest does.
func SignDSSE(s *Signer, payloadType string, payload []byte) ([]byte, error) {
	es, err := dsse.NewEnvelopeSigner(dsseSigner{s})
	if err != nil {
		return nil, fmt.Errorf("signing envelope: %w", err)
	}
	env, err := es.SignPayload(context.Background(), payloadType, payload)
	if err != nil {
		return nil, fmt.Errorf("signing envelope: %w", err)
	}
	return json.Marshal(env)
}

// ParseEnvelope parses DSSE envelope JSON: payloadType, base64 payload and
// 1..MaxEnvelopeSignatures base64 signatures are required.
func ParseEnvelope(data []byte) (*dsse.Envelope, []byte, error) {
	var env dsse.Envelope
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&env); err != nil {
		return nil, nil, fmt.Errorf("parsing DSSE envelope: %w", err)
	}
	if dec.More() {
		return nil, nil, errors.New("parsing DSSE envelope: trailing data")
	}
	if env.PayloadType == "" {
		return nil, nil, errors.New("DSSE envelope has no payloadType")
	}
	payload, err := b64(env.Payload)
	if err != nil {
		return nil, nil, fmt.Errorf("DSSE envelope payload: %w", err)
	}
	if len(env.Signatures) == 0 {
		return nil, nil, errors.New("DSSE envelope has no signature")
	}
	if len(env.Signatures) > MaxEnvelopeSignatures {
		return nil, nil, fmt.Errorf("DSSE envelope has %d signatures, more than %d", len(env.Signatures), MaxEnvelopeSignatures)
	}
	return &env, payload, nil
}

func b64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	b, err := base64.URLEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("not base64")
	}
	return b, nil
}

// VerifyDSSE checks a DSSE envelope: at least one signature must verify
// over PAE(payloadType, payload) with pub (key ids are hints and are
// ignored). It returns the payload type and the payload. Refusals are
// *errs.VerificationError.
func VerifyDSSE(pub crypto.PublicKey, envelope []byte) (payloadType string, payload []byte, err error) {
	if _, err := hashFor(pub); err != nil {
		return "", nil, err
	}
	env, body, err := ParseEnvelope(envelope)
	if err != nil {
		return "", nil, refuse("attestation", "%v", err)
	}
	pae := dsse.PAE(env.PayloadType, body)
	for _, s := range env.Signatures {
		sig, err := b64(s.Sig)
		if err != nil {
			continue
		}
		if verifySig(pub, pae, sig) == nil {
			return env.PayloadType, body, nil
		}
	}
	return "", nil, refuse("attestation", "no DSSE signature verifies with the key")
}

// NewBundle returns a Sigstore bundle v0.3 (protojson) holding a DSSE
// envelope signed by s over payload, with the key's hint as verification
// material, as cosign v3 makes for a key without a transparency log.
func NewBundle(s *Signer, payloadType string, payload []byte) ([]byte, error) {
	sig, err := s.Sign(dsse.PAE(payloadType, payload))
	if err != nil {
		return nil, err
	}
	b := &protobundle.Bundle{
		MediaType: BundleMediaType,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: s.Hint()}},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload:     payload,
			PayloadType: payloadType,
			Signatures:  []*protodsse.Signature{{Sig: sig}},
		}},
	}
	out, err := protojson.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("marshalling bundle: %w", err)
	}
	return canonicalJSON(out)
}

// EnvelopeFromBundle extracts the DSSE envelope (as DSSE JSON) from a
// Sigstore bundle v0.3. Bundles of other versions or with a message
// signature are refused.
func EnvelopeFromBundle(bundle []byte) ([]byte, error) {
	var b protobundle.Bundle
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(bundle, &b); err != nil {
		return nil, fmt.Errorf("parsing bundle: %w", err)
	}
	if b.GetMediaType() != BundleMediaType {
		return nil, fmt.Errorf("bundle media type %q, want %q", b.GetMediaType(), BundleMediaType)
	}
	env := b.GetDsseEnvelope()
	if env == nil {
		return nil, errors.New("bundle holds no DSSE envelope")
	}
	if b.GetVerificationMaterial() == nil {
		return nil, errors.New("bundle has no verification material")
	}
	d := dsse.Envelope{PayloadType: env.GetPayloadType(), Payload: base64.StdEncoding.EncodeToString(env.GetPayload())}
	for _, s := range env.GetSignatures() {
		d.Signatures = append(d.Signatures, dsse.Signature{KeyID: s.GetKeyid(), Sig: base64.StdEncoding.EncodeToString(s.GetSig())})
	}
	return json.Marshal(d)
}

// statementInfo is what publishing needs from an in-toto statement.
type statementInfo struct {
	PredicateType string
	st            *provenance.Statement
}

// parseStatement reads an in-toto statement with provenance.ReadStatement:
// v1, or the v0.1 cosign (v2 attest, and v3's bundles) still writes. What
// a statement claims is only trusted after the verifier parsed it
// strictly.
func parseStatement(data []byte) (*statementInfo, error) {
	st, err := provenance.ReadStatement(data)
	if err != nil {
		var ve *errs.VerificationError
		if errors.As(err, &ve) {
			// Publishing and listing, not verifying: a plain error.
			return nil, fmt.Errorf("parsing in-toto statement: %s", ve.Reason)
		}
		return nil, fmt.Errorf("parsing in-toto statement: %w", err)
	}
	if st.PredicateType == "" {
		return nil, errors.New("statement has no predicateType")
	}
	return &statementInfo{PredicateType: st.PredicateType, st: st}, nil
}

func (si *statementInfo) covers(d digest.Digest) bool { return si.st.About(d) }

// signStatement returns cosign v3's image-signing statement for d,
// {"_type":…,"predicate":{},"predicateType":"https://sigstore.dev/cosign/sign/v1","subject":[{"annotations":{},"digest":{"sha256":hex}}]},
// with sorted keys so that signing twice gives the same payload.
func signStatement(d digest.Digest) ([]byte, error) {
	// As cosign v3 writes it: empty subject annotations and predicate.
	st := &intoto.Statement{
		Type:          intoto.StatementTypeUri,
		Subject:       []*intoto.ResourceDescriptor{{Digest: map[string]string{string(d.Algorithm()): d.Encoded()}, Annotations: &structpb.Struct{}}},
		PredicateType: CosignSignPredicateType,
		Predicate:     &structpb.Struct{},
	}
	b, err := protojson.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("marshalling sign statement: %w", err)
	}
	return canonicalJSON(b)
}

// canonicalJSON re-encodes JSON compactly with sorted keys (protojson
// randomizes white space).
func canonicalJSON(b []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// verifyBundleSignature checks a bundle-format image signature envelope:
// DSSE verifies, the statement is cosign's sign statement, and its subject
// is want.
func verifyBundleSignature(pub crypto.PublicKey, envelope []byte, want digest.Digest) error {
	pt, payload, err := VerifyDSSE(pub, envelope)
	if err != nil {
		var ve *errs.VerificationError
		if errors.As(err, &ve) {
			ve.Check = "signature"
		}
		return err
	}
	if pt != InTotoPayloadType {
		return refuse("signature", "envelope payload type %q, want %q", pt, InTotoPayloadType)
	}
	si, err := parseStatement(payload)
	if err != nil {
		return refuse("signature", "%v", err)
	}
	if si.PredicateType != CosignSignPredicateType {
		return refuse("signature", "statement predicate type %q, want %q", si.PredicateType, CosignSignPredicateType)
	}
	if !si.covers(want) {
		return refuse("signature", "statement subject does not name %s", want)
	}
	return nil
}
