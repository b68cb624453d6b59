package sign

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/store"
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

// fetchedBundle is a bundle referrer read back.
type fetchedBundle struct {
	envelope      []byte
	predicateType string // from the (unverified) statement in the envelope
}

// fetchBundleReferrer reads the referrer manifest m of subject and the
// bundle in it, within limits, and checks that it names subject.
func fetchBundleReferrer(ctx context.Context, st store.Store, lim Limits, subject, m digest.Digest) (*fetchedBundle, error) {
	b, _, err := st.Manifest(ctx, m.String())
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
	data, err := st.Blob(ctx, man.Layers[0], lim.MaxAttestationBytes)
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

// Attached is everything found attached to one image, not yet verified.
type Attached struct {
	Signatures   []Signature
	Attestations []Attestation
}

// What selects what Fetch reads.
type What uint8

const (
	Signatures What = 1 << iota
	Attestations
	Everything = Signatures | Attestations
)

// Fetch reads what is attached to the image d in st in the given formats
// (0: all): the cosign tags (.sig, .att) and the bundle referrers, listed
// once for both, read concurrently, within the limits of DefaultLimits
// (at most 100 signatures and 100 attestations, payloads ≤ 1 MiB,
// attestations and bundles ≤ 16 MiB; the store bounds manifests and
// referrer counts; each violation is an *errs.LimitError). Nothing is
// verified: pass each signature to VerifyImageSignature and each envelope
// to VerifyDSSE.
func Fetch(ctx context.Context, st store.Store, d digest.Digest, what What, formats Format) (*Attached, error) {
	if formats&FormatAll == 0 {
		formats = FormatAll
	}
	lim := DefaultLimits()
	where := st.String() + "@" + d.String()
	var sigs []Signature
	var atts, bundleAtts []Attestation
	var bundleSigs []Signature
	var errSig, errAtt, errBundle error
	var wg sync.WaitGroup
	if what&Signatures != 0 && formats&FormatLegacy != 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tag := store.CosignTag(d, "sig")
			layers, _, err := readSigImage(ctx, st, tag, "signatures", lim.MaxEntries, lim.MaxSignatureBytes)
			if err != nil {
				errSig = fmt.Errorf("reading signatures of %s: %w", where, err)
				return
			}
			for i, l := range layers {
				if l.desc.MediaType != SimpleSigningMediaType {
					continue
				}
				sig, err := b64(l.desc.Annotations[SignatureAnnotation])
				if err != nil {
					continue
				}
				sigs = append(sigs, Signature{Format: FormatLegacy, Payload: l.data, Signature: sig, Source: fmt.Sprintf("%s:%s layer %d", st, tag, i)})
			}
		}()
	}
	if what&Attestations != 0 && formats&FormatLegacy != 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tag := store.CosignTag(d, "att")
			layers, _, err := readSigImage(ctx, st, tag, "attestations", lim.MaxEntries, lim.MaxAttestationBytes)
			if err != nil {
				errAtt = fmt.Errorf("reading attestations of %s: %w", where, err)
				return
			}
			for i, l := range layers {
				if l.desc.MediaType != DSSEMediaType {
					continue
				}
				atts = append(atts, Attestation{Format: FormatLegacy, Envelope: l.data, PredicateType: l.desc.Annotations[PredicateTypeAnnotation], Source: fmt.Sprintf("%s:%s layer %d", st, tag, i)})
			}
		}()
	}
	if formats&FormatBundle != 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bundleSigs, bundleAtts, errBundle = fetchBundles(ctx, st, d, what, lim)
		}()
	}
	wg.Wait()
	for _, err := range []error{errSig, errAtt, errBundle} {
		if err != nil {
			return nil, err
		}
	}
	out := &Attached{Signatures: append(sigs, bundleSigs...), Attestations: append(atts, bundleAtts...)}
	if len(out.Signatures) > lim.MaxEntries {
		return nil, entriesLimit("signatures", lim.MaxEntries, len(out.Signatures))
	}
	if len(out.Attestations) > lim.MaxEntries {
		return nil, entriesLimit("attestations", lim.MaxEntries, len(out.Attestations))
	}
	return out, nil
}

// fetchBundles reads the bundle referrers of d.
func fetchBundles(ctx context.Context, st store.Store, d digest.Digest, what What, lim Limits) ([]Signature, []Attestation, error) {
	where := st.String() + "@" + d.String()
	refs, err := st.Referrers(ctx, d, BundleMediaType)
	if err != nil {
		return nil, nil, fmt.Errorf("listing referrers of %s: %w", where, err)
	}
	if len(refs) > 2*lim.MaxEntries {
		return nil, nil, entriesLimit("bundles", 2*lim.MaxEntries, len(refs))
	}
	var sigs []Signature
	var atts []Attestation
	for _, r := range refs {
		if pt := r.Annotations[BundlePredicateTypeAnnotation]; pt != "" {
			// Skip, unread, what the caller did not ask for.
			isSig := pt == CosignSignPredicateType
			if isSig && what&Signatures == 0 || !isSig && what&Attestations == 0 {
				continue
			}
		}
		fb, err := fetchBundleReferrer(ctx, st, lim, d, r.Digest)
		if err != nil {
			if errors.Is(err, errs.ErrLimitExceeded) || ctx.Err() != nil {
				return nil, nil, err
			}
			// Not a bundle we can read (another tool's referrer): skip it,
			// as cosign does.
			continue
		}
		src := st.String() + "@" + r.Digest.String()
		if fb.predicateType == CosignSignPredicateType {
			if what&Signatures != 0 {
				sigs = append(sigs, Signature{Format: FormatBundle, Envelope: fb.envelope, Source: src})
			}
		} else if what&Attestations != 0 {
			atts = append(atts, Attestation{Format: FormatBundle, Envelope: fb.envelope, PredicateType: fb.predicateType, Source: src})
		}
	}
	return sigs, atts, nil
}

// FetchSignatures reads the signatures of the image d in st: Fetch's
// signatures.
func FetchSignatures(ctx context.Context, st store.Store, d digest.Digest) ([]Signature, error) {
	a, err := Fetch(ctx, st, d, Signatures, FormatAll)
	if err != nil {
		return nil, err
	}
	return a.Signatures, nil
}

// FetchAttestations reads the attestations (DSSE envelopes) of the image
// d in st: Fetch's attestations.
func FetchAttestations(ctx context.Context, st store.Store, d digest.Digest) ([]Attestation, error) {
	a, err := Fetch(ctx, st, d, Attestations, FormatAll)
	if err != nil {
		return nil, err
	}
	return a.Attestations, nil
}
