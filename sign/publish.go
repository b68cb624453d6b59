package sign

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/registry"
)

// Action says what publishing did with one artifact.
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
	Location string        // "repo:sha256-<hex>.sig", "repo@sha256:…" (referrer), or a layout path
	Digest   digest.Digest // manifest written, or found when unchanged
}

// Result reports what a publication wrote.
type Result struct {
	Subject   digest.Digest
	Artifacts []Artifact
}

// Publisher signs and attests images in a registry.
type Publisher struct {
	client   *registry.Client
	log      *slog.Logger
	formats  Format
	now      func() time.Time
	limits   Limits
	identity string
}

// PublisherOption configures a Publisher.
type PublisherOption func(*Publisher)

// WithFormats chooses the formats written (default FormatDefault).
func WithFormats(f Format) PublisherOption {
	return func(p *Publisher) {
		if f&FormatAll != 0 {
			p.formats = f & FormatAll
		}
	}
}

// WithLogger sets the logger (silent by default).
func WithLogger(l *slog.Logger) PublisherOption {
	return func(p *Publisher) {
		if l != nil {
			p.log = l
		}
	}
}

// WithClock sets the clock for the bundle referrers' creation annotation
// (default time.Now).
func WithClock(now func() time.Time) PublisherOption {
	return func(p *Publisher) {
		if now != nil {
			p.now = now
		}
	}
}

// WithIdentity sets the docker-reference that legacy signatures claim
// (default: the image's repository, as cosign does; for layouts, the image
// name recorded in index.json, else empty).
func WithIdentity(dockerReference string) PublisherOption {
	return func(p *Publisher) { p.identity = dockerReference }
}

// NewPublisher returns a Publisher writing through c.
func NewPublisher(c *registry.Client, opts ...PublisherOption) *Publisher {
	p := &Publisher{client: c, log: slog.New(slog.DiscardHandler), formats: FormatDefault, now: time.Now, limits: DefaultLimits()}
	for _, o := range opts {
		o(p)
	}
	return p
}

// target is a parsed "repo@digest".
type target struct {
	repo    string // normalized repository, e.g. 127.0.0.1:5000/x or docker.io/library/x
	subject ocispec.Descriptor
}

func (p *Publisher) target(ctx context.Context, ref string) (target, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return target{}, fmt.Errorf("parsing %q: %w", ref, err)
	}
	dg, ok := named.(reference.Digested)
	if !ok {
		return target{}, fmt.Errorf("%q is not a digest reference (repo@sha256:…): %w", ref, errs.ErrUsage)
	}
	if dg.Digest().Algorithm() != digest.SHA256 {
		return target{}, fmt.Errorf("%q: only sha256 digests are supported: %w", ref, errs.ErrUsage)
	}
	repo := reference.TrimNamed(named).String()
	desc, err := p.client.Resolve(ctx, repo+"@"+dg.Digest().String())
	if err != nil {
		return target{}, fmt.Errorf("resolving %s: %w", ref, err)
	}
	if desc.MediaType == "" {
		desc.MediaType = ocispec.MediaTypeImageManifest
	}
	return target{repo: repo, subject: desc}, nil
}

// SignImage signs the image ref ("repo@sha256:…") with s and publishes
// the signature in the configured formats. A signature by the same key
// over the same payload already there is not added again.
func (p *Publisher) SignImage(ctx context.Context, ref string, s *Signer) (Result, error) {
	t, err := p.target(ctx, ref)
	if err != nil {
		return Result{}, err
	}
	// The two formats write different tags and manifests: publish them at
	// once (each is a handful of registry round trips).
	legacy := func() (Artifact, error) {
		a, err := p.signLegacy(ctx, t, s)
		if err != nil {
			return a, fmt.Errorf("publishing signature of %s: %w", ref, publishErr(err))
		}
		return a, nil
	}
	bundle := func() (Artifact, error) {
		stmt, err := signStatement(t.subject.Digest)
		if err != nil {
			return Artifact{}, err
		}
		a, err := p.publishBundle(ctx, t, s, "signature", CosignSignPredicateType, stmt)
		if err != nil {
			return a, fmt.Errorf("publishing signature bundle of %s: %w", ref, publishErr(err))
		}
		return a, nil
	}
	return p.both(t, legacy, bundle)
}

// both runs the legacy and the bundle publication (those the publisher's
// formats select) concurrently and collects their artifacts in a fixed
// order (legacy first); the first error wins.
func (p *Publisher) both(t target, legacy, bundle func() (Artifact, error)) (Result, error) {
	type out struct {
		a   Artifact
		err error
	}
	res := Result{Subject: t.subject.Digest}
	var chL, chB chan out
	if p.formats&FormatLegacy != 0 {
		chL = make(chan out, 1)
		go func() { a, err := legacy(); chL <- out{a, err} }()
	}
	if p.formats&FormatBundle != 0 {
		chB = make(chan out, 1)
		go func() { a, err := bundle(); chB <- out{a, err} }()
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

// Attest signs the in-toto statement (JSON) in a DSSE envelope with s and
// publishes it for the image ref ("repo@sha256:…") in the configured
// formats. The statement's subject must name the image. An attestation of
// the same predicate type by the same key is replaced, as `cosign attest
// --replace` does; the same statement signed by the same key is left as is.
func (p *Publisher) Attest(ctx context.Context, ref string, statement []byte, s *Signer) (Result, error) {
	si, err := parseStatement(statement)
	if err != nil {
		return Result{}, fmt.Errorf("attesting %s: %w", ref, err)
	}
	t, err := p.target(ctx, ref)
	if err != nil {
		return Result{}, err
	}
	if !si.covers(t.subject.Digest) {
		return Result{}, fmt.Errorf("attesting %s: the statement's subject does not name %s: %w", ref, t.subject.Digest, errs.ErrUsage)
	}
	legacy := func() (Artifact, error) {
		a, err := p.attestLegacy(ctx, t, s, si.PredicateType, statement)
		if err != nil {
			return a, fmt.Errorf("publishing attestation of %s: %w", ref, publishErr(err))
		}
		return a, nil
	}
	bundle := func() (Artifact, error) {
		a, err := p.publishBundle(ctx, t, s, "attestation", si.PredicateType, statement)
		if err != nil {
			return a, fmt.Errorf("publishing attestation bundle of %s: %w", ref, publishErr(err))
		}
		return a, nil
	}
	return p.both(t, legacy, bundle)
}

// publishErr marks a failed publication with errs.ErrPublish, keeping the
// underlying classification (errs.ErrRegistry, *errs.LimitError, …).
func publishErr(err error) error {
	if errors.Is(err, errs.ErrPublish) {
		return err
	}
	return fmt.Errorf("%w: %w", errs.ErrPublish, err)
}

func tagFor(d digest.Digest, suffix string) string {
	return string(d.Algorithm()) + "-" + d.Encoded() + "." + suffix
}

// existingSigImage reads the layers of a .sig/.att image; a missing tag is
// an empty list.
func (p *Publisher) existingSigImage(ctx context.Context, repo, tag, what string, limit int64) ([]layer, digest.Digest, error) {
	b, desc, err := p.client.FetchManifest(ctx, repo+":"+tag)
	if errors.Is(err, errs.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	m, err := parseManifest(b)
	if err != nil {
		return nil, "", fmt.Errorf("%s:%s: %w: %w", repo, tag, errs.ErrRegistry, err)
	}
	if len(m.Layers) > p.limits.MaxEntries {
		return nil, "", entriesLimit(what, p.limits.MaxEntries, len(m.Layers))
	}
	out := make([]layer, 0, len(m.Layers))
	for _, l := range m.Layers {
		data, err := p.client.FetchBlob(ctx, repo, l, limit)
		if err != nil {
			return nil, "", renameLimit(err, l.MediaType, limit)
		}
		out = append(out, layer{desc: l, data: data})
	}
	return out, desc.Digest, nil
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

func (p *Publisher) signLegacy(ctx context.Context, t target, s *Signer) (Artifact, error) {
	dref := p.identity
	if dref == "" {
		var err error
		if dref, err = DockerReference(t.repo); err != nil {
			return Artifact{}, err
		}
	}
	payload, err := SimpleSigningPayload(dref, t.subject.Digest)
	if err != nil {
		return Artifact{}, err
	}
	tag := tagFor(t.subject.Digest, "sig")
	loc := t.repo + ":" + tag
	existing, cur, err := p.existingSigImage(ctx, t.repo, tag, "signatures", p.limits.MaxSignatureBytes)
	if err != nil {
		return Artifact{}, err
	}
	if dupSignature(existing, s.Public(), payload) {
		p.log.Debug("signature already present", "location", loc)
		return Artifact{Kind: "signature", Format: FormatLegacy, Action: Unchanged, Location: loc, Digest: cur}, nil
	}
	sig, err := s.Sign(payload)
	if err != nil {
		return Artifact{}, err
	}
	layers := append(existing, simpleSigningLayer(payload, sig))
	d, err := p.pushSigImage(ctx, t.repo, tag, layers)
	if err != nil {
		return Artifact{}, err
	}
	return Artifact{Kind: "signature", Format: FormatLegacy, Action: Added, Location: loc, Digest: d}, nil
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

func (p *Publisher) attestLegacy(ctx context.Context, t target, s *Signer, predicateType string, statement []byte) (Artifact, error) {
	tag := tagFor(t.subject.Digest, "att")
	loc := t.repo + ":" + tag
	existing, cur, err := p.existingSigImage(ctx, t.repo, tag, "attestations", p.limits.MaxAttestationBytes)
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
	d, err := p.pushSigImage(ctx, t.repo, tag, kept)
	if err != nil {
		return Artifact{}, err
	}
	action := Added
	if replaced {
		action = Replaced
	}
	return Artifact{Kind: "attestation", Format: FormatLegacy, Action: action, Location: loc, Digest: d}, nil
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

func (p *Publisher) pushSigImage(ctx context.Context, repo, tag string, layers []layer) (digest.Digest, error) {
	descs := make([]ocispec.Descriptor, 0, len(layers))
	for _, l := range layers {
		if err := p.client.PushBlob(ctx, repo, l.desc, bytes.NewReader(l.data)); err != nil {
			return "", err
		}
		descs = append(descs, l.desc)
	}
	cfg, man, err := sigImage(descs)
	if err != nil {
		return "", err
	}
	cd := ocispec.Descriptor{MediaType: SignatureConfigType, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	if err := p.client.PushBlob(ctx, repo, cd, bytes.NewReader(cfg)); err != nil {
		return "", err
	}
	desc, err := p.client.PushManifest(ctx, repo+":"+tag, ocispec.MediaTypeImageManifest, man)
	if err != nil {
		return "", err
	}
	return desc.Digest, nil
}

// bundleRef is an existing bundle referrer of ours.
type bundleRef struct {
	manifest digest.Digest
	payload  []byte
}

// ourBundles lists bundle referrers of subject whose predicate type
// annotation is predicateType and whose DSSE envelope verifies with pub.
func (p *Publisher) ourBundles(ctx context.Context, t target, pub any, predicateType string) ([]bundleRef, error) {
	refs, err := p.client.Referrers(ctx, t.repo, t.subject.Digest, BundleMediaType)
	if err != nil {
		return nil, err
	}
	if len(refs) > 2*p.limits.MaxEntries {
		return nil, entriesLimit("bundles", 2*p.limits.MaxEntries, len(refs))
	}
	var out []bundleRef
	for _, r := range refs {
		if r.Annotations != nil && r.Annotations[BundlePredicateTypeAnnotation] != "" && r.Annotations[BundlePredicateTypeAnnotation] != predicateType {
			continue
		}
		b, err := p.fetchBundleReferrer(ctx, t.repo, t.subject.Digest, r.Digest)
		if err != nil {
			p.log.Debug("skipping unreadable referrer", "digest", r.Digest, "err", err)
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

func (p *Publisher) publishBundle(ctx context.Context, t target, s *Signer, kind, predicateType string, statement []byte) (Artifact, error) {
	ours, err := p.ourBundles(ctx, t, s.Public(), predicateType)
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
	loc := ""
	if keep != "" {
		action = Unchanged
		loc = t.repo + "@" + keep.String()
	} else {
		bundle, err := NewBundle(s, InTotoPayloadType, statement)
		if err != nil {
			return Artifact{}, err
		}
		man, layerDesc, err := bundleReferrer(t.subject, bundle, predicateType, p.now())
		if err != nil {
			return Artifact{}, err
		}
		if err := p.client.PushBlob(ctx, t.repo, layerDesc, bytes.NewReader(bundle)); err != nil {
			return Artifact{}, err
		}
		ed := ocispec.Descriptor{MediaType: EmptyConfigMediaType, Digest: digest.FromBytes(emptyJSON), Size: int64(len(emptyJSON))}
		if err := p.client.PushBlob(ctx, t.repo, ed, bytes.NewReader(emptyJSON)); err != nil {
			return Artifact{}, err
		}
		md := digest.FromBytes(man)
		if _, err := p.client.PushManifest(ctx, t.repo+"@"+md.String(), ocispec.MediaTypeImageManifest, man); err != nil {
			return Artifact{}, err
		}
		keep = md
		loc = t.repo + "@" + md.String()
	}
	// New first, then remove what it replaces: never a moment without one.
	for _, d := range stale {
		if err := p.client.RemoveReferrer(ctx, t.repo, t.subject.Digest, d); err != nil {
			return Artifact{}, fmt.Errorf("removing replaced %s %s: %w", kind, d, err)
		}
		if action == Added {
			action = Replaced
		}
	}
	if action == Unchanged && len(stale) > 0 {
		action = Replaced
	}
	return Artifact{Kind: kind, Format: FormatBundle, Action: action, Location: loc, Digest: keep}, nil
}
