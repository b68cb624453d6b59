// Package publish makes a built image trustworthy and visible, in a fixed
// order: the image is pushed by digest (by the build), then signed, then
// its SLSA provenance is attested, and only then do tags move. If signing
// or attesting fails no tag moves, and the error says what was and was not
// published; running the same publish again completes it without
// duplicating signatures (the sign package is idempotent).
package publish

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/provenance"
	"github.com/vmbuild/vmbuild/recipe"
	"github.com/vmbuild/vmbuild/registry"
	"github.com/vmbuild/vmbuild/sign"
)

// Options configure publishing.
type Options struct {
	Registry *registry.Client
	// Signer signs the image and the provenance. Required.
	Signer *sign.Signer
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
	Tags        []string    `json:"tags,omitempty"`
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
	for _, p := range r.Patches {
		in.Patches = append(in.Patches, provenance.Patch{Name: p.Name, Kind: string(p.Kind), SHA256: p.SHA256})
	}
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
	st, err := provenance.New(in)
	if err != nil {
		return nil, fmt.Errorf("building provenance: %w", err)
	}
	return provenance.Marshal(st)
}

func invocationID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Push signs and attests repo@res.Digest (already pushed by the build),
// then moves tags. It never moves a tag when signing or attesting failed.
func Push(ctx context.Context, repo string, tags []string, r *recipe.Recipe, l *lock.Lock, res *build.Result, opts Options) (*Report, error) {
	if opts.Signer == nil {
		return nil, fmt.Errorf("publishing: %w: no signing key", errs.ErrUsage)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ref := repo + "@" + res.Digest.String()
	rep := &Report{Image: ref}
	notTags := make([]string, len(tags))
	for i, t := range tags {
		notTags[i] = "tag " + t
	}
	stmt, err := Statement(r, l, res, repo, opts.BuilderID)
	if err != nil {
		return rep, &Error{Image: ref, Step: "building provenance", Done: []string{"image (by digest)"}, NotDone: append([]string{"signature", "provenance attestation"}, notTags...), Err: err}
	}
	rep.Statement = stmt
	var popts []sign.PublisherOption
	if opts.Formats != 0 {
		popts = append(popts, sign.WithFormats(opts.Formats))
	}
	popts = append(popts, sign.WithLogger(log))
	pub := sign.NewPublisher(opts.Registry, popts...)
	sres, err := pub.SignImage(ctx, ref, opts.Signer)
	if err != nil {
		return rep, &Error{Image: ref, Step: "signing", Done: []string{"image (by digest)"}, NotDone: append([]string{"signature", "provenance attestation"}, notTags...), Err: err}
	}
	rep.Signature = sres
	log.Info("signed", "image", ref)
	var ares sign.Result
	if same, ok := equivalentAttestation(ctx, opts, repo, res, stmt); ok {
		// The same build (same inputs, builder, BuildKit) already attested
		// this image: keep that provenance instead of replacing it with
		// one that differs only in its invocation id and times.
		ares = same
		rep.Statement = nil
		log.Info("provenance of an equivalent build already attested; kept", "image", ref)
	} else {
		ares, err = pub.Attest(ctx, ref, stmt, opts.Signer)
	}
	if err != nil {
		return rep, &Error{Image: ref, Step: "attesting provenance", Done: []string{"image (by digest)", "signature"}, NotDone: append([]string{"provenance attestation"}, notTags...), Err: err}
	}
	rep.Attestation = ares
	log.Info("attested SLSA provenance", "image", ref)
	for i, t := range tags {
		if err := opts.Registry.Tag(ctx, repo, res.Digest, t); err != nil {
			done := []string{"image (by digest)", "signature", "provenance attestation"}
			for _, d := range tags[:i] {
				done = append(done, "tag "+d)
			}
			return rep, &Error{Image: ref, Step: "moving tag " + t, Done: done, NotDone: notTags[i:], Err: err}
		}
		rep.Tags = append(rep.Tags, repo+":"+t)
		log.Info("tagged", "tag", repo+":"+t, "digest", res.Digest)
	}
	return rep, nil
}

// Layout signs and attests the image in an OCI layout, where
// `cosign verify --local-image DIR` reads them.
func Layout(ctx context.Context, dir string, r *recipe.Recipe, l *lock.Lock, res *build.Result, opts Options) (*Report, error) {
	if opts.Signer == nil {
		return nil, fmt.Errorf("publishing: %w: no signing key", errs.ErrUsage)
	}
	subject := r.Name
	rep := &Report{Image: dir + "@" + res.Digest.String()}
	stmt, err := Statement(r, l, res, subject, opts.BuilderID)
	if err != nil {
		return rep, err
	}
	rep.Statement = stmt
	var popts []sign.PublisherOption
	if opts.Formats != 0 {
		popts = append(popts, sign.WithFormats(opts.Formats))
	}
	if opts.Logger != nil {
		popts = append(popts, sign.WithLogger(opts.Logger))
	}
	sres, err := sign.SignLayout(ctx, dir, res.Digest, opts.Signer, stmt, popts...)
	if err != nil {
		return rep, fmt.Errorf("signing the image in %s: %w", dir, err)
	}
	rep.Signature = sres
	return rep, nil
}

// IsIncomplete reports whether err is an incomplete publish.
func IsIncomplete(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// equivalentAttestation reports whether the image already carries, in
// every requested format, a provenance attestation signed by our key that
// records the same build as stmt (all but the invocation id and times).
func equivalentAttestation(ctx context.Context, opts Options, repo string, res *build.Result, stmt []byte) (sign.Result, bool) {
	want, err := provenance.Parse(stmt)
	if err != nil {
		return sign.Result{}, false
	}
	atts, err := sign.FetchAttestations(ctx, opts.Registry, repo, res.Digest)
	if err != nil {
		return sign.Result{}, false
	}
	formats := opts.Formats
	if formats == 0 {
		formats = sign.FormatDefault
	}
	found := sign.Format(0)
	out := sign.Result{Subject: res.Digest}
	for _, a := range atts {
		pt, payload, err := sign.VerifyDSSE(opts.Signer.Public(), a.Envelope)
		if err != nil || pt != "application/vnd.in-toto+json" {
			continue
		}
		got, err := provenance.Parse(payload)
		if err != nil || !sameBuild(got, want) {
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
