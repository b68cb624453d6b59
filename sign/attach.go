package sign

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/registry"
	"github.com/vmbuild/vmbuild/store"
)

// Action says what attaching did with one artifact.
type Action string

const (
	Added     Action = "added"     // written; nothing of ours was there
	Replaced  Action = "replaced"  // written; an older one by the same key was removed
	Unchanged Action = "unchanged" // the same payload signed by the same key was there already
)

// Artifact is one signature or attestation publication.
type Artifact struct {
	Kind     string        // "signature" or "attestation"
	Format   Format        // FormatLegacy or FormatBundle
	Action   Action        //
	Location string        // "REPO:sha256-<hex>.sig" (or oci:DIR:…), "REPO@sha256:…" (a referrer)
	Digest   digest.Digest // manifest written, or found when unchanged
}

// Result reports what an Attacher wrote.
type Result struct {
	Subject   digest.Digest
	Artifacts []Artifact
}

// Attacher signs and attests images in a store (a registry repository or
// an OCI layout: one code path for both), in cosign's formats. It is
// idempotent: a signature by the same key over the same payload is not
// added again (cosign's duplicate detector), an attestation of the same
// predicate type by the same key is replaced (`cosign attest --replace`),
// and the same statement signed by the same key is left as is.
type Attacher struct {
	log      *slog.Logger
	formats  Format
	now      func() time.Time
	limits   Limits
	identity string
}

// AttachOption configures an Attacher.
type AttachOption func(*Attacher)

// WithFormats chooses the formats written (default FormatDefault).
func WithFormats(f Format) AttachOption {
	return func(a *Attacher) {
		if f&FormatAll != 0 {
			a.formats = f & FormatAll
		}
	}
}

// WithLogger sets the logger (silent by default).
func WithLogger(l *slog.Logger) AttachOption {
	return func(a *Attacher) {
		if l != nil {
			a.log = l
		}
	}
}

// WithClock sets the clock for the bundle referrers' creation annotation
// (default time.Now).
func WithClock(now func() time.Time) AttachOption {
	return func(a *Attacher) {
		if now != nil {
			a.now = now
		}
	}
}

// WithIdentity sets the docker-reference that legacy signatures claim
// (default: the store's repository, as cosign does; for a layout, the
// image name recorded in index.json, else empty).
func WithIdentity(dockerReference string) AttachOption {
	return func(a *Attacher) { a.identity = dockerReference }
}

// NewAttacher returns an Attacher.
func NewAttacher(opts ...AttachOption) *Attacher {
	a := &Attacher{log: slog.New(slog.DiscardHandler), formats: FormatDefault, now: time.Now, limits: DefaultLimits()}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Formats returns the formats the Attacher writes.
func (a *Attacher) Formats() Format { return a.formats }

// subject completes the image descriptor from the store: its media type
// and size (the bundle referrers name them), and for a layout its
// index.json annotations (the identity).
func (a *Attacher) subject(ctx context.Context, st store.Store, subject ocispec.Descriptor) (ocispec.Descriptor, error) {
	if err := subject.Digest.Validate(); err != nil || subject.Digest.Algorithm() != digest.SHA256 {
		return subject, fmt.Errorf("%q is not a sha256 digest: %w", subject.Digest, errs.ErrUsage)
	}
	if subject.MediaType != "" && subject.Size > 0 && st.Repository() != "" {
		return subject, nil
	}
	desc, err := st.Resolve(ctx, subject.Digest.String())
	if err != nil {
		return subject, fmt.Errorf("resolving %s@%s: %w", st, subject.Digest, err)
	}
	if desc.Digest != subject.Digest {
		return subject, fmt.Errorf("resolving %s@%s: the store answered with %s: %w", st, subject.Digest, desc.Digest, errs.ErrRegistry)
	}
	if desc.MediaType == "" {
		desc.MediaType = ocispec.MediaTypeImageManifest
	}
	return desc, nil
}

// Sign signs the image subject in st with s and attaches the signature in
// the configured formats. A subject without media type or size is
// resolved in st.
func (a *Attacher) Sign(ctx context.Context, st store.Store, subject ocispec.Descriptor, s *Signer) (Result, error) {
	t, err := a.subject(ctx, st, subject)
	if err != nil {
		return Result{Subject: subject.Digest}, fmt.Errorf("signing: %w", err)
	}
	where := st.String() + "@" + t.Digest.String()
	legacy := func() (Artifact, error) {
		art, err := a.signLegacy(ctx, st, t, s)
		if err != nil {
			return art, fmt.Errorf("attaching signature of %s: %w", where, publishErr(err))
		}
		return art, nil
	}
	bundle := func() (Artifact, error) {
		stmt, err := signStatement(t.Digest)
		if err != nil {
			return Artifact{}, err
		}
		art, err := a.attachBundle(ctx, st, t, s, "signature", CosignSignPredicateType, stmt)
		if err != nil {
			return art, fmt.Errorf("attaching signature bundle of %s: %w", where, publishErr(err))
		}
		return art, nil
	}
	return a.both(t.Digest, legacy, bundle)
}

// Attest signs the in-toto statement (JSON) in a DSSE envelope with s and
// attaches it to the image subject in st in the configured formats. The
// statement's subject must name the image.
func (a *Attacher) Attest(ctx context.Context, st store.Store, subject ocispec.Descriptor, statement []byte, s *Signer) (Result, error) {
	si, err := parseStatement(statement)
	if err != nil {
		return Result{Subject: subject.Digest}, fmt.Errorf("attesting %s@%s: %w", st, subject.Digest, err)
	}
	if !si.covers(subject.Digest) {
		return Result{Subject: subject.Digest}, fmt.Errorf("attesting %s@%s: the statement's subject does not name the image: %w", st, subject.Digest, errs.ErrUsage)
	}
	t, err := a.subject(ctx, st, subject)
	if err != nil {
		return Result{Subject: subject.Digest}, fmt.Errorf("attesting: %w", err)
	}
	where := st.String() + "@" + t.Digest.String()
	legacy := func() (Artifact, error) {
		art, err := a.attestLegacy(ctx, st, t, s, si.PredicateType, statement)
		if err != nil {
			return art, fmt.Errorf("attaching attestation of %s: %w", where, publishErr(err))
		}
		return art, nil
	}
	bundle := func() (Artifact, error) {
		art, err := a.attachBundle(ctx, st, t, s, "attestation", si.PredicateType, statement)
		if err != nil {
			return art, fmt.Errorf("attaching attestation bundle of %s: %w", where, publishErr(err))
		}
		return art, nil
	}
	return a.both(t.Digest, legacy, bundle)
}

// both runs the legacy and the bundle publication (those the formats
// select) concurrently and collects their artifacts in a fixed order
// (legacy first); the first error wins.
func (a *Attacher) both(subject digest.Digest, legacy, bundle func() (Artifact, error)) (Result, error) {
	type out struct {
		a   Artifact
		err error
	}
	res := Result{Subject: subject}
	var chL, chB chan out
	if a.formats&FormatLegacy != 0 {
		chL = make(chan out, 1)
		go func() { art, err := legacy(); chL <- out{art, err} }()
	}
	if a.formats&FormatBundle != 0 {
		chB = make(chan out, 1)
		go func() { art, err := bundle(); chB <- out{art, err} }()
	}
	var firstErr error
	for _, ch := range []chan out{chL, chB} {
		if ch == nil {
			continue
		}
		o := <-ch
		if o.err != nil {
			if firstErr == nil {
				firstErr = o.err
			}
			continue
		}
		res.Artifacts = append(res.Artifacts, o.a)
	}
	return res, firstErr
}

// publishErr marks a failed publication with errs.ErrPublish, keeping the
// underlying classification (errs.ErrRegistry, *errs.LimitError, …).
func publishErr(err error) error {
	if errors.Is(err, errs.ErrPublish) {
		return err
	}
	return fmt.Errorf("%w: %w", errs.ErrPublish, err)
}

// identityFor is the docker-reference a legacy signature claims: the
// WithIdentity option; else the store's repository; else (a layout) the
// image name BuildKit's exporter recorded in index.json
// (io.containerd.image.name or a full org.opencontainers.image.ref.name),
// else empty (`cosign verify` checks only the digest).
func (a *Attacher) identityFor(st store.Store, subject ocispec.Descriptor) (string, error) {
	if a.identity != "" {
		return a.identity, nil
	}
	if repo := st.Repository(); repo != "" {
		return DockerReference(repo)
	}
	for _, k := range []string{images.AnnotationImageName, ocispec.AnnotationRefName} {
		if v := subject.Annotations[k]; v != "" {
			named, err := reference.ParseNormalizedNamed(v)
			if err != nil {
				continue
			}
			if r, err := DockerReference(reference.TrimNamed(named).String()); err == nil {
				return r, nil
			}
		}
	}
	return "", nil
}

func (a *Attacher) signLegacy(ctx context.Context, st store.Store, t ocispec.Descriptor, s *Signer) (Artifact, error) {
	dref, err := a.identityFor(st, t)
	if err != nil {
		return Artifact{}, err
	}
	payload, err := SimpleSigningPayload(dref, t.Digest)
	if err != nil {
		return Artifact{}, err
	}
	tag := store.CosignTag(t.Digest, "sig")
	loc := st.String() + ":" + tag
	existing, cur, err := readSigImage(ctx, st, tag, "signatures", a.limits.MaxEntries, a.limits.MaxSignatureBytes)
	if err != nil {
		return Artifact{}, err
	}
	if dupSignature(existing, s.Public(), payload) {
		a.log.Debug("signature already present", "location", loc)
		return Artifact{Kind: "signature", Format: FormatLegacy, Action: Unchanged, Location: loc, Digest: cur}, nil
	}
	sig, err := s.Sign(payload)
	if err != nil {
		return Artifact{}, err
	}
	d, err := pushSigImage(ctx, st, tag, append(existing, simpleSigningLayer(payload, sig)))
	if err != nil {
		return Artifact{}, err
	}
	return Artifact{Kind: "signature", Format: FormatLegacy, Action: Added, Location: loc, Digest: d}, nil
}

func (a *Attacher) attestLegacy(ctx context.Context, st store.Store, t ocispec.Descriptor, s *Signer, predicateType string, statement []byte) (Artifact, error) {
	tag := store.CosignTag(t.Digest, "att")
	loc := st.String() + ":" + tag
	existing, cur, err := readSigImage(ctx, st, tag, "attestations", a.limits.MaxEntries, a.limits.MaxAttestationBytes)
	if err != nil {
		return Artifact{}, err
	}
	kept, replaced, unchanged := replaceAttestation(existing, s.Public(), predicateType, statement)
	if unchanged && !replaced {
		return Artifact{Kind: "attestation", Format: FormatLegacy, Action: Unchanged, Location: loc, Digest: cur}, nil
	}
	if unchanged {
		// Duplicates of the same statement: keep one.
		kept = dedupeStatement(kept, s.Public(), predicateType, statement)
	} else {
		env, err := SignDSSE(s, InTotoPayloadType, statement)
		if err != nil {
			return Artifact{}, err
		}
		kept = append(kept, attestationLayer(env, predicateType))
	}
	d, err := pushSigImage(ctx, st, tag, kept)
	if err != nil {
		return Artifact{}, err
	}
	action := Added
	if replaced {
		action = Replaced
	}
	return Artifact{Kind: "attestation", Format: FormatLegacy, Action: action, Location: loc, Digest: d}, nil
}

// readSigImage reads the layers of a .sig/.att image; a missing tag is an
// empty list.
func readSigImage(ctx context.Context, st store.Store, tag, what string, maxEntries int, limit int64) ([]layer, digest.Digest, error) {
	b, desc, err := st.Manifest(ctx, tag)
	if errors.Is(err, errs.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	m, err := parseManifest(b)
	if err != nil {
		return nil, "", fmt.Errorf("%s:%s: %w: %w", st, tag, errs.ErrRegistry, err)
	}
	if len(m.Layers) > maxEntries {
		return nil, "", entriesLimit(what, maxEntries, len(m.Layers))
	}
	out := make([]layer, 0, len(m.Layers))
	for _, l := range m.Layers {
		data, err := st.Blob(ctx, l, limit)
		if err != nil {
			return nil, "", renameLimit(err, l.MediaType, limit)
		}
		out = append(out, layer{desc: l, data: data})
	}
	return out, desc.Digest, nil
}

func pushSigImage(ctx context.Context, st store.Store, tag string, layers []layer) (digest.Digest, error) {
	descs := make([]ocispec.Descriptor, 0, len(layers))
	for _, l := range layers {
		if err := st.PushBlob(ctx, l.desc, l.data); err != nil {
			return "", err
		}
		descs = append(descs, l.desc)
	}
	cfg, man, err := sigImage(descs)
	if err != nil {
		return "", err
	}
	cd := ocispec.Descriptor{MediaType: SignatureConfigType, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	if err := st.PushBlob(ctx, cd, cfg); err != nil {
		return "", err
	}
	desc, err := st.PushManifest(ctx, ocispec.MediaTypeImageManifest, man, tag)
	if err != nil {
		return "", err
	}
	return desc.Digest, nil
}

// renameLimit names a blob limit after what the blob is.
func renameLimit(err error, mediaType string, limit int64) error {
	var le *errs.LimitError
	if !errors.As(err, &le) || !strings.Contains(le.Limit, "blob size") {
		// Only the per-blob size limit is renamed; others (a caller's
		// total budget, counts) keep their names.
		return err
	}
	what := "signature payload"
	if mediaType == DSSEMediaType || mediaType == BundleMediaType {
		what = "attestation"
	}
	return &errs.LimitError{Limit: fmt.Sprintf("%s size (%s)", what, registry.FormatBytes(limit)), Got: le.Got}
}

// dupSignature reports whether layers hold a simple-signing layer with
// exactly payload whose signature verifies with pub (cosign's dupe
// detector).
func dupSignature(layers []layer, pub any, payload []byte) bool {
	for _, l := range layers {
		if l.desc.MediaType != SimpleSigningMediaType || !bytes.Equal(l.data, payload) {
			continue
		}
		sig, err := b64(l.desc.Annotations[SignatureAnnotation])
		if err != nil {
			continue
		}
		if verifySig(pub, payload, sig) == nil {
			return true
		}
	}
	return false
}

// replaceAttestation splits existing attestation layers: those of
// predicateType verified by pub are dropped (replaced); unchanged is true
// when one of them holds exactly statement.
func replaceAttestation(layers []layer, pub any, predicateType string, statement []byte) (kept []layer, replaced, unchanged bool) {
	for _, l := range layers {
		if l.desc.MediaType == DSSEMediaType && l.desc.Annotations[PredicateTypeAnnotation] == predicateType {
			if _, payload, err := VerifyDSSE(pub, l.data); err == nil {
				if bytes.Equal(payload, statement) {
					unchanged = true
					kept = append(kept, l)
				} else {
					replaced = true
				}
				continue
			}
		}
		kept = append(kept, l)
	}
	return kept, replaced, unchanged
}

func dedupeStatement(layers []layer, pub any, predicateType string, statement []byte) []layer {
	var out []layer
	seen := false
	for _, l := range layers {
		if l.desc.MediaType == DSSEMediaType && l.desc.Annotations[PredicateTypeAnnotation] == predicateType {
			if _, payload, err := VerifyDSSE(pub, l.data); err == nil && bytes.Equal(payload, statement) {
				if seen {
					continue
				}
				seen = true
			}
		}
		out = append(out, l)
	}
	return out
}

// bundleRef is an existing bundle referrer of ours.
type bundleRef struct {
	manifest digest.Digest
	payload  []byte
}

// ourBundles lists bundle referrers of subject whose predicate type is
// predicateType and whose DSSE envelope verifies with pub.
func (a *Attacher) ourBundles(ctx context.Context, st store.Store, subject digest.Digest, pub any, predicateType string) ([]bundleRef, error) {
	refs, err := st.Referrers(ctx, subject, BundleMediaType)
	if err != nil {
		return nil, err
	}
	if len(refs) > 2*a.limits.MaxEntries {
		return nil, entriesLimit("bundles", 2*a.limits.MaxEntries, len(refs))
	}
	var out []bundleRef
	for _, r := range refs {
		if r.Annotations != nil && r.Annotations[BundlePredicateTypeAnnotation] != "" && r.Annotations[BundlePredicateTypeAnnotation] != predicateType {
			continue
		}
		b, err := fetchBundleReferrer(ctx, st, a.limits, subject, r.Digest)
		if err != nil {
			a.log.Debug("skipping unreadable referrer", "digest", r.Digest, "err", err)
			if errors.Is(err, errs.ErrLimitExceeded) {
				return nil, err
			}
			continue
		}
		if b.predicateType != predicateType {
			continue
		}
		_, payload, err := VerifyDSSE(pub, b.envelope)
		if err != nil {
			continue
		}
		out = append(out, bundleRef{manifest: r.Digest, payload: payload})
	}
	return out, nil
}

func (a *Attacher) attachBundle(ctx context.Context, st store.Store, t ocispec.Descriptor, s *Signer, kind, predicateType string, statement []byte) (Artifact, error) {
	ours, err := a.ourBundles(ctx, st, t.Digest, s.Public(), predicateType)
	if err != nil {
		return Artifact{}, err
	}
	var stale []digest.Digest
	var keep digest.Digest
	for _, b := range ours {
		if keep == "" && bytes.Equal(b.payload, statement) {
			keep = b.manifest
			continue
		}
		stale = append(stale, b.manifest)
	}
	action := Added
	if keep != "" {
		action = Unchanged
	} else {
		bundle, err := NewBundle(s, InTotoPayloadType, statement)
		if err != nil {
			return Artifact{}, err
		}
		man, layerDesc, err := bundleReferrer(t, bundle, predicateType, a.now())
		if err != nil {
			return Artifact{}, err
		}
		if err := st.PushBlob(ctx, layerDesc, bundle); err != nil {
			return Artifact{}, err
		}
		ed := ocispec.Descriptor{MediaType: EmptyConfigMediaType, Digest: digest.FromBytes(emptyJSON), Size: int64(len(emptyJSON))}
		if err := st.PushBlob(ctx, ed, emptyJSON); err != nil {
			return Artifact{}, err
		}
		md, err := st.PushManifest(ctx, ocispec.MediaTypeImageManifest, man, "")
		if err != nil {
			return Artifact{}, err
		}
		keep = md.Digest
	}
	// New first, then remove what it replaces: never a moment without one.
	for _, d := range stale {
		if err := st.RemoveReferrer(ctx, t.Digest, d); err != nil {
			return Artifact{}, fmt.Errorf("removing replaced %s %s: %w", kind, d, err)
		}
		action = Replaced
	}
	return Artifact{Kind: kind, Format: FormatBundle, Action: action, Location: st.String() + "@" + keep.String(), Digest: keep}, nil
}

// Signed reports whether found (what Fetch read for the image in st)
// holds, in every format of the Attacher, the signature by pub that Sign
// would otherwise write: the same payload, verifying under pub. It then
// returns the Result Sign would have returned (every artifact
// unchanged), so that a caller can skip Sign, and loading the private
// key, for an image that is already signed.
func (a *Attacher) Signed(st store.Store, subject ocispec.Descriptor, pub crypto.PublicKey, found *Attached) (Result, bool) {
	res := Result{Subject: subject.Digest}
	if found == nil || pub == nil {
		return res, false
	}
	if a.formats&FormatLegacy != 0 {
		dref, err := a.identityFor(st, subject)
		if err != nil {
			return res, false
		}
		payload, err := SimpleSigningPayload(dref, subject.Digest)
		if err != nil {
			return res, false
		}
		src := ""
		for _, s := range found.Signatures {
			if s.Format == FormatLegacy && bytes.Equal(s.Payload, payload) && verifySig(pub, payload, s.Signature) == nil {
				src = s.Source
				break
			}
		}
		if src == "" {
			return res, false
		}
		res.Artifacts = append(res.Artifacts, Artifact{Kind: "signature", Format: FormatLegacy, Action: Unchanged, Location: st.String() + ":" + store.CosignTag(subject.Digest, "sig")})
	}
	if a.formats&FormatBundle != 0 {
		stmt, err := signStatement(subject.Digest)
		if err != nil {
			return res, false
		}
		src := ""
		for _, s := range found.Signatures {
			if s.Format != FormatBundle {
				continue
			}
			if _, payload, err := VerifyDSSE(pub, s.Envelope); err == nil && bytes.Equal(payload, stmt) {
				src = s.Source
				break
			}
		}
		if src == "" {
			return res, false
		}
		res.Artifacts = append(res.Artifacts, Artifact{Kind: "signature", Format: FormatBundle, Action: Unchanged, Location: src})
	}
	return res, true
}
