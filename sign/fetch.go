package sign

import (
	"context"
	"crypto"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/registry"
)

// Signature is an image signature as found, not yet verified.
type Signature struct {
	Format Format
	// Legacy format: the simple-signing payload and the raw signature.
	Payload   []byte
	Signature []byte
	// Bundle format: the DSSE envelope (JSON) over cosign's sign statement.
	Envelope []byte
	// Source says where it was found, for messages.
	Source string
}

// Attestation is a DSSE envelope as found, not yet verified.
type Attestation struct {
	Format   Format
	Envelope []byte // DSSE envelope JSON
	// PredicateType is what the publication claims (annotation or the
	// unverified statement); only a verified payload is to be trusted.
	PredicateType string
	Source        string
}

// VerifyImageSignature verifies sig with pub for the image digest want,
// whatever its format. Refusals are *errs.VerificationError.
func VerifyImageSignature(pub crypto.PublicKey, sig Signature, want digest.Digest) error {
	switch sig.Format {
	case FormatLegacy:
		_, err := VerifySimpleSigning(pub, sig.Payload, sig.Signature, want)
		return err
	case FormatBundle:
		return verifyBundleSignature(pub, sig.Envelope, want)
	}
	return refuse("signature", "unknown signature format %v", sig.Format)
}

// fetched is a bundle referrer read back.
type fetchedBundle struct {
	envelope      []byte
	predicateType string // from the (unverified) statement in the envelope
}

// fetchBundleReferrer reads the referrer manifest m of subject and the
// bundle in it, within limits, and checks that it names subject.
func (p *Publisher) fetchBundleReferrer(ctx context.Context, repo string, subject, m digest.Digest) (*fetchedBundle, error) {
	return fetchBundleReferrer(ctx, p.client, p.limits, repo, subject, m)
}

func fetchBundleReferrer(ctx context.Context, c *registry.Client, lim Limits, repo string, subject, m digest.Digest) (*fetchedBundle, error) {
	b, _, err := c.FetchManifest(ctx, repo+"@"+m.String())
	if err != nil {
		return nil, err
	}
	man, err := parseManifest(b)
	if err != nil {
		return nil, err
	}
	if man.Subject == nil || man.Subject.Digest != subject {
		return nil, fmt.Errorf("referrer %s does not name %s as its subject", m, subject)
	}
	if len(man.Layers) != 1 || man.Layers[0].MediaType != BundleMediaType {
		return nil, fmt.Errorf("referrer %s: want exactly one %s layer", m, BundleMediaType)
	}
	data, err := c.FetchBlob(ctx, repo, man.Layers[0], lim.MaxAttestationBytes)
	if err != nil {
		return nil, renameLimit(err, BundleMediaType, lim.MaxAttestationBytes)
	}
	return bundleContent(data)
}

func bundleContent(data []byte) (*fetchedBundle, error) {
	env, err := EnvelopeFromBundle(data)
	if err != nil {
		return nil, err
	}
	_, payload, err := ParseEnvelope(env)
	if err != nil {
		return nil, err
	}
	si, err := parseStatement(payload)
	if err != nil {
		return nil, err
	}
	return &fetchedBundle{envelope: env, predicateType: si.PredicateType}, nil
}

// attached is everything found for one image.
type attached struct {
	sigs []Signature
	atts []Attestation
}

func fetchAttached(ctx context.Context, c *registry.Client, repo string, d digest.Digest, wantSigs, wantAtts bool) (*attached, error) {
	lim := DefaultLimits()
	pub := NewPublisher(c)
	out := &attached{}
	if wantSigs {
		layers, _, err := pub.existingSigImage(ctx, repo, tagFor(d, "sig"), "signatures", lim.MaxSignatureBytes)
		if err != nil {
			return nil, fmt.Errorf("reading signatures of %s@%s: %w", repo, d, err)
		}
		for i, l := range layers {
			if l.desc.MediaType != SimpleSigningMediaType {
				continue
			}
			sig, err := b64(l.desc.Annotations[SignatureAnnotation])
			if err != nil {
				continue
			}
			out.sigs = append(out.sigs, Signature{Format: FormatLegacy, Payload: l.data, Signature: sig, Source: fmt.Sprintf("%s:%s layer %d", repo, tagFor(d, "sig"), i)})
		}
	}
	if wantAtts {
		layers, _, err := pub.existingSigImage(ctx, repo, tagFor(d, "att"), "attestations", lim.MaxAttestationBytes)
		if err != nil {
			return nil, fmt.Errorf("reading attestations of %s@%s: %w", repo, d, err)
		}
		for i, l := range layers {
			if l.desc.MediaType != DSSEMediaType {
				continue
			}
			out.atts = append(out.atts, Attestation{Format: FormatLegacy, Envelope: l.data, PredicateType: l.desc.Annotations[PredicateTypeAnnotation], Source: fmt.Sprintf("%s:%s layer %d", repo, tagFor(d, "att"), i)})
		}
	}
	refs, err := c.Referrers(ctx, repo, d, BundleMediaType)
	if err != nil {
		return nil, fmt.Errorf("listing referrers of %s@%s: %w", repo, d, err)
	}
	if len(refs) > 2*lim.MaxEntries {
		return nil, entriesLimit("bundles", 2*lim.MaxEntries, len(refs))
	}
	for _, r := range refs {
		fb, err := fetchBundleReferrer(ctx, c, lim, repo, d, r.Digest)
		if err != nil {
			if errors.Is(err, errs.ErrLimitExceeded) {
				return nil, err
			}
			// Not a bundle we can read (another tool's referrer): skip it,
			// as cosign does.
			continue
		}
		src := repo + "@" + r.Digest.String()
		if fb.predicateType == CosignSignPredicateType {
			if wantSigs {
				out.sigs = append(out.sigs, Signature{Format: FormatBundle, Envelope: fb.envelope, Source: src})
			}
		} else if wantAtts {
			out.atts = append(out.atts, Attestation{Format: FormatBundle, Envelope: fb.envelope, PredicateType: fb.predicateType, Source: src})
		}
	}
	if len(out.sigs) > lim.MaxEntries {
		return nil, entriesLimit("signatures", lim.MaxEntries, len(out.sigs))
	}
	if len(out.atts) > lim.MaxEntries {
		return nil, entriesLimit("attestations", lim.MaxEntries, len(out.atts))
	}
	return out, nil
}

// FetchSignatures reads the signatures of the image repo@d from the .sig
// tag and from bundle referrers, within the limits of DefaultLimits (at
// most 100 signatures, manifests ≤ 4 MiB, payloads ≤ 1 MiB, bundles ≤ 16
// MiB; each violation is an *errs.LimitError). Nothing is verified: pass
// each to VerifyImageSignature.
func FetchSignatures(ctx context.Context, c *registry.Client, repo string, d digest.Digest) ([]Signature, error) {
	a, err := fetchAttached(ctx, c, repo, d, true, false)
	if err != nil {
		return nil, err
	}
	return a.sigs, nil
}

// FetchAttestations reads the attestations (DSSE envelopes) of the image
// repo@d from the .att tag and from bundle referrers, within the limits of
// DefaultLimits (at most 100, ≤ 16 MiB each). Nothing is verified: pass
// each envelope to VerifyDSSE.
func FetchAttestations(ctx context.Context, c *registry.Client, repo string, d digest.Digest) ([]Attestation, error) {
	a, err := fetchAttached(ctx, c, repo, d, false, true)
	if err != nil {
		return nil, err
	}
	return a.atts, nil
}
