// Package publish makes a built image trustworthy and visible, in a fixed
// order: the image is pushed by digest (by the build), then signed, then
// its SLSA provenance is attested, and only then do tags move. If signing
// or attesting fails no tag moves, and the error says what was and was not
// published; running the same publish again completes it without
// duplicating signatures (the sign package is idempotent). It publishes
// into any store.Store, a registry repository or an OCI layout, through
// one code path; [Publisher] is the seam for what sits on top.
package publish

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/redact"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/provenance"
	"github.com/vmbuild/vmbuild/recipe"
	"github.com/vmbuild/vmbuild/sbom"
	"github.com/vmbuild/vmbuild/sign"
	"github.com/vmbuild/vmbuild/store"
)

// Options configure publishing.
type Options struct {
	// Signer signs the image and the provenance. Without one (and without
	// LoadSigner), publishing only moves tags, and logs a warning.
	Signer *sign.Signer
	// LoadSigner, instead of Signer, returns the signer when it is needed:
	// decrypting a cosign key takes a few hundred milliseconds of scrypt.
	// With PublicKey, an image that is already signed and attested by
	// that key, for an equivalent build, is published (tags moved)
	// without loading the signer at all.
	LoadSigner func() (*sign.Signer, error)
	// PublicKey is the public key of the signer LoadSigner returns; a
	// signer with another public key is an error.
	PublicKey crypto.PublicKey
	// Formats selects cosign's tag scheme, OCI 1.1 referrers with Sigstore
	// bundles, or both; default sign.FormatDefault (the tags, which
	// cosign v2 and v3 both verify offline with their standard commands).
	Formats sign.Format
	// BuilderID is recorded as runDetails.builder.id; default
	// provenance.DefaultBuilderID.
	BuilderID string
	Logger    *slog.Logger
}

// Report says what was published.
type Report struct {
	Image       string      `json:"image"`
	Statement   []byte      `json:"-"`
	Signature   sign.Result `json:"signature"`
	Attestation sign.Result `json:"attestation"`
	// SBOM is the SPDX SBOM attestation, when the lock pins packages.
	SBOM *sign.Result `json:"sbom,omitempty"`
	Tags []string     `json:"tags,omitempty"`
}

// Error is an incomplete publish: Done lists what is published, NotDone
// what is not (no tag moves before the image is signed and attested).
type Error struct {
	Image   string
	Step    string
	Done    []string
	NotDone []string
	Err     error
}

func (e *Error) Error() string {
	return fmt.Sprintf("publishing %s: %s: %v\n  published: %s\n  not published: %s\n  run the same command again to finish (it does not duplicate signatures)",
		e.Image, e.Step, e.Err, strings.Join(e.Done, ", "), strings.Join(e.NotDone, ", "))
}

func (e *Error) Unwrap() []error { return []error{errs.ErrPublish, e.Err} }

// Statement builds the signed-to-be SLSA v1 provenance for a build of r at
// l that produced res, naming subject (the image repository, or a name
// for a layout).
func Statement(r *recipe.Recipe, l *lock.Lock, res *build.Result, subject, builderID string) ([]byte, error) {
	in := provenance.Input{
		Subject: provenance.Subject{Name: subject, Digest: res.Digest.String()},
		Recipe:  provenance.Recipe{Name: r.Name, Path: filepath.ToSlash(r.Path), SHA256: r.SHA256},
		Upstream: provenance.Upstream{
			URL: r.Upstream.Git, Ref: r.Upstream.Ref, Commit: l.Upstream.Commit, CommitTime: l.Upstream.CommitTime,
		},
		BuildKitVersion: res.BuildKit,
		LLBDigest:       res.LLBDigest.String(),
		BuilderID:       builderID,
		InvocationID:    invocationID(),
		StartedOn:       res.StartedOn,
		FinishedOn:      res.FinishedOn,
	}
	if in.BuildKitVersion == "" {
		in.BuildKitVersion = "unknown"
	}
	in.Patches = recordedPatches(r, res)
	in.NonHermetic = recordedNonHermetic(res)
	if df := r.Build.Dockerfile; df != nil {
		args := map[string]string{}
		for k, v := range df.Args {
			args[k] = v
		}
		in.Dockerfile = &provenance.Dockerfile{Path: df.Path, Target: df.Target, Args: args}
	} else {
		var names []string
		for _, lay := range r.OrderedLayers() {
			names = append(names, lay.Name)
		}
		in.Native = &provenance.Native{Layers: names}
	}
	if l.Base != nil && r.NeedsBase() {
		// The pin's digest: the index when the base is multi-platform,
		// what the recipe resolved.
		in.Base = provenance.Image{Ref: l.Base.Ref, Digest: l.Base.Digest}
	}
	if l.Frontend != nil {
		in.Frontend = &provenance.Image{Ref: l.Frontend.Ref, Digest: l.Frontend.Digest}
	}
	for _, im := range l.Images {
		in.Images = append(in.Images, provenance.Image{Ref: im.Ref, Digest: im.Digest})
	}
	if d := l.Debian; d != nil && r.BaseDebian != nil {
		mirror, err := redact.URL(d.Mirror)
		if err != nil {
			return nil, fmt.Errorf("building provenance: debian.mirror: %w", err)
		}
		in.Debian = &provenance.DebianBase{
			Mirror: mirror, Suite: d.Suite, Components: d.Components, Architecture: d.Architecture,
			InRelease: d.InRelease.URL, InReleaseSHA256: d.InRelease.SHA256, SignedBy: d.InRelease.SignedBy,
			KeyringSHA256: d.KeyringSHA256, AllowExpired: d.AllowExpired,
		}
	}
	for _, p := range l.DepsLock.Pins() {
		in.Packages = append(in.Packages, provenance.Package{Purl: p.Purl, URL: p.URL, SHA256: p.SHA256, GitCommit: p.GitCommit, Layer: p.Layer, Tool: p.Tool})
	}
	st, err := provenance.New(in)
	if err != nil {
		return nil, fmt.Errorf("building provenance: %w", err)
	}
	return provenance.Marshal(st)
}

// SBOMStatement builds the SPDX 2.3 SBOM statement of the packages the
// lock pins (the Debian base's .debs, the layers' dependencies), about the
// image res built, naming subject; nil when the lock pins no package. It
// is deterministic: the same lock and image give the same bytes.
func SBOMStatement(r *recipe.Recipe, l *lock.Lock, res *build.Result, subject string) ([]byte, error) {
	pins := l.DepsLock.Pins()
	if len(pins) == 0 {
		return nil, nil
	}
	repo, err := redact.URL(r.Upstream.Git)
	if err != nil {
		return nil, fmt.Errorf("building SBOM: upstream: %w", err)
	}
	in := sbom.Input{
		ImageName: subject, ImageDigest: res.Digest.String(),
		SourceRepo: repo, Commit: l.Upstream.Commit, CommitTime: l.Upstream.CommitTime, Recipe: r.Name,
	}
	for _, p := range pins {
		where := "base"
		if p.Layer != "" {
			where = "layer " + p.Layer
		}
		in.Packages = append(in.Packages, sbom.Package{Name: p.Name, Version: p.Version, Purl: p.Purl, URL: p.URL, SHA256: p.SHA256, GitCommit: p.GitCommit, Where: where})
	}
	doc, err := sbom.New(in)
	if err != nil {
		return nil, err
	}
	return sbom.Statement(doc, subject, res.Digest.String())
}

func invocationID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Publisher publishes a built image in a store: the seam through which
// track and the CLI publish, in the manner of ko's publish.Interface, so
// that what sits on top can be tested without a registry.
type Publisher interface {
	// Publish signs and attests res.Digest, already in st (pushed by
	// digest, or exported into the layout), then moves tags; it never
	// moves a tag when signing or attesting failed. An incomplete publish
	// is an *Error.
	Publish(ctx context.Context, st store.Store, tags []string, r *recipe.Recipe, l *lock.Lock, res *build.Result) (*Report, error)
}

// New returns the Publisher that signs with opts.Signer. Without a
// signer it only moves tags, and logs a warning: the image carries no
// signature and no provenance.
func New(opts Options) Publisher {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Formats == 0 {
		opts.Formats = sign.FormatDefault
	}
	return &publisher{opts: opts}
}

type publisher struct{ opts Options }

func (p *publisher) Publish(ctx context.Context, st store.Store, tags []string, r *recipe.Recipe, l *lock.Lock, res *build.Result) (*Report, error) {
	opts := p.opts
	log := opts.Logger
	ref := st.String() + "@" + res.Digest.String()
	rep := &Report{Image: ref}
	notTags := make([]string, len(tags))
	for i, t := range tags {
		notTags[i] = "tag " + t
	}
	if opts.Signer == nil && opts.LoadSigner == nil {
		log.Warn("publishing without signature or provenance", "image", ref)
		return rep, moveTags(ctx, st, tags, res, rep, nil, notTags, log)
	}
	subject := st.Repository()
	if subject == "" {
		subject = r.Name // a layout: the recipe names the image
	}
	// The SBOM, when the lock pins packages, is attested after the
	// provenance and before any tag moves.
	sbomStmt, sbomErr := SBOMStatement(r, l, res, subject)
	attestations := []string{"provenance attestation"}
	if sbomStmt != nil {
		attestations = append(attestations, "SBOM attestation")
	}
	notSigned := func(step string, err error) error {
		return &Error{Image: ref, Step: step, Done: []string{"image (by digest)"}, NotDone: append(append([]string{"signature"}, attestations...), notTags...), Err: err}
	}
	if sbomErr != nil {
		return rep, notSigned("building SBOM", sbomErr)
	}
	stmt, err := Statement(r, l, res, subject, opts.BuilderID)
	if err != nil {
		return rep, notSigned("building provenance", err)
	}
	rep.Statement = stmt
	allDone := append([]string{"image (by digest)", "signature"}, attestations...)
	a := sign.NewAttacher(sign.WithFormats(opts.Formats), sign.WithLogger(log))
	img := res.Descriptor
	if img.Digest != res.Digest {
		img = ocispec.Descriptor{Digest: res.Digest}
	}
	signer := opts.Signer
	load := func() error {
		if signer != nil {
			return nil
		}
		var err error
		if signer, err = opts.LoadSigner(); err != nil {
			return err
		}
		if opts.PublicKey != nil && !samePublicKey(opts.PublicKey, signer.Public()) {
			return fmt.Errorf("the public key given is not the signing key's: %w", errs.ErrKey)
		}
		return nil
	}
	pub := opts.PublicKey
	if pub == nil {
		if err := load(); err != nil {
			return rep, notSigned("loading the signing key", err)
		}
	}
	if signer != nil {
		pub = signer.Public()
	}
	// What is there already, read once (the tags and referrers of the
	// requested formats, concurrently): an image signed and attested by
	// this key for an equivalent build needs no private key and no writes.
	found, err := sign.Fetch(ctx, st, res.Digest, sign.Everything, opts.Formats)
	if err != nil {
		log.Debug("reading what is attached", "image", ref, "err", err)
		found = nil
	}
	if found != nil {
		t := img
		if t.MediaType == "" || t.Size <= 0 || st.Repository() == "" {
			// A layout's signatures name the image as index.json does.
			if d, err := st.Resolve(ctx, res.Digest.String()); err == nil {
				t = d
			}
		}
		if sres, ok := a.Signed(st, t, pub, found); ok {
			if ares, ok := equivalentAttestation(pub, opts.Formats, found.Attestations, res, stmt); ok {
				sbomRes, sbomOK := sameAttestation(pub, opts.Formats, found.Attestations, res, sbomStmt)
				if sbomOK {
					rep.Signature, rep.Attestation, rep.Statement = sres, ares, nil
					if sbomStmt != nil {
						rep.SBOM = &sbomRes
					}
					log.Info("already signed and attested by this key for an equivalent build", "image", ref)
					return rep, moveTags(ctx, st, tags, res, rep, allDone, notTags, log)
				}
			}
		}
	}
	if err := load(); err != nil {
		return rep, notSigned("loading the signing key", err)
	}
	sres, err := a.Sign(ctx, st, img, signer)
	if err != nil {
		return rep, notSigned("signing", err)
	}
	rep.Signature = sres
	log.Info("signed", "image", ref)
	if found == nil {
		if found, err = sign.Fetch(ctx, st, res.Digest, sign.Attestations, opts.Formats); err != nil {
			found = nil
		}
	}
	var ares sign.Result
	same, ok := sign.Result{}, false
	if found != nil {
		same, ok = equivalentAttestation(signer.Public(), opts.Formats, found.Attestations, res, stmt)
	}
	if ok {
		// The same build (same inputs, builder, BuildKit) already attested
		// this image: keep that provenance instead of replacing it with
		// one that differs only in its invocation id and times.
		ares = same
		rep.Statement = nil
		log.Info("provenance of an equivalent build already attested; kept", "image", ref)
	} else {
		ares, err = a.Attest(ctx, st, img, stmt, signer)
	}
	if err != nil {
		return rep, &Error{Image: ref, Step: "attesting provenance", Done: []string{"image (by digest)", "signature"}, NotDone: append(attestations, notTags...), Err: err}
	}
	rep.Attestation = ares
	log.Info("attested SLSA provenance", "image", ref)
	if sbomStmt != nil {
		var atts []sign.Attestation
		if found != nil {
			atts = found.Attestations
		}
		sres, ok := sameAttestation(signer.Public(), opts.Formats, atts, res, sbomStmt)
		if !ok {
			if sres, err = a.Attest(ctx, st, img, sbomStmt, signer); err != nil {
				return rep, &Error{Image: ref, Step: "attesting SBOM", Done: []string{"image (by digest)", "signature", "provenance attestation"}, NotDone: append([]string{"SBOM attestation"}, notTags...), Err: err}
			}
			log.Info("attested SPDX SBOM", "image", ref)
		}
		rep.SBOM = &sres
	}
	return rep, moveTags(ctx, st, tags, res, rep, allDone, notTags, log)
}

// sameAttestation reports whether atts hold, in every requested format,
// an attestation signed by pub whose statement is exactly stmt (a
// deterministic one, as the SBOM's). A nil stmt is trivially there.
func sameAttestation(pub crypto.PublicKey, formats sign.Format, atts []sign.Attestation, res *build.Result, stmt []byte) (sign.Result, bool) {
	if stmt == nil {
		return sign.Result{Subject: res.Digest}, true
	}
	return findAttestation(pub, formats, atts, res, func(_ string, payload []byte) bool { return bytes.Equal(payload, stmt) })
}

func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// moveTags points tags at the image, in order.
func moveTags(ctx context.Context, st store.Store, tags []string, res *build.Result, rep *Report, done, notTags []string, log *slog.Logger) error {
	if done == nil {
		done = []string{"image (by digest)"}
	}
	for i, t := range tags {
		if err := st.Tag(ctx, res.Digest, t); err != nil {
			for _, d := range tags[:i] {
				done = append(done, "tag "+d)
			}
			return &Error{Image: rep.Image, Step: "moving tag " + t, Done: done, NotDone: notTags[i:], Err: err}
		}
		rep.Tags = append(rep.Tags, st.String()+":"+t)
		log.Info("tagged", "tag", st.String()+":"+t, "digest", res.Digest)
	}
	return nil
}

// IsIncomplete reports whether err is an incomplete publish.
func IsIncomplete(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// equivalentAttestation reports whether atts hold, in every requested
// format, a provenance attestation signed by pub that records the same
// build as stmt (all but the invocation id and times).
func equivalentAttestation(pub crypto.PublicKey, formats sign.Format, atts []sign.Attestation, res *build.Result, stmt []byte) (sign.Result, bool) {
	want, err := provenance.Parse(stmt)
	if err != nil {
		return sign.Result{}, false
	}
	return findAttestation(pub, formats, atts, res, func(pt string, payload []byte) bool {
		rd, err := provenance.Read(pt, payload, res.Digest)
		return err == nil && sameBuild(rd.Info, want)
	})
}

// findAttestation reports whether atts hold, in every requested format,
// an attestation signed by pub whose payload matches, and lists them.
func findAttestation(pub crypto.PublicKey, formats sign.Format, atts []sign.Attestation, res *build.Result, match func(payloadType string, payload []byte) bool) (sign.Result, bool) {
	found := sign.Format(0)
	out := sign.Result{Subject: res.Digest}
	for _, a := range atts {
		if a.Format&formats == 0 {
			continue
		}
		pt, payload, err := sign.VerifyDSSE(pub, a.Envelope)
		if err != nil || !match(pt, payload) {
			continue
		}
		found |= a.Format
		out.Artifacts = append(out.Artifacts, sign.Artifact{Kind: "attestation", Format: a.Format, Action: sign.Unchanged, Location: a.Source})
	}
	return out, found&formats == formats
}

func sameBuild(a, b *provenance.Info) bool {
	x, y := *a, *b
	for _, i := range []*provenance.Info{&x, &y} {
		i.InvocationID = ""
		i.StartedOn, i.FinishedOn = time.Time{}, time.Time{}
	}
	xb, err1 := json.Marshal(x)
	yb, err2 := json.Marshal(y)
	return err1 == nil && err2 == nil && bytes.Equal(xb, yb)
}
