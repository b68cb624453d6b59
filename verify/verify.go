// Package verify decides whether an image built by vmbuild may be
// deployed: it must be signed by a trusted key over exactly its digest and
// carry a signed SLSA v1 provenance attestation, in vmbuild's buildType,
// that satisfies a policy (source repository, commits, recipe, exact patch
// set and how it applied, base images, frontend, hermeticity, builders).
// See docs/verify.md.
//
// It is a library for the `vmbuild verify` command and for registry
// webhooks and admission controllers:
//
//	v, err := verify.New(verify.WithPublicKeyPEM(pubPEM))
//	pol, err := verify.LoadPolicy("policy.yaml")
//	rep, err := v.Verify(ctx, verify.Target{Repository: "ghcr.io/acme/app", Digest: d}, pol)
//	switch {
//	case err == nil:                 // rep.Verified: deploy rep.Target.Digest
//	case errs.IsVerification(err):   // refused: do not deploy
//	default:                         // could not decide (network, limits, config)
//	}
//
// Everything read from a registry or layout is untrusted and read within
// limits (manifest 4 MiB, 100 signatures and 100 attestations per image,
// an attestation 16 MiB, a total byte budget and a total deadline); a
// limit that is hit is an *errs.LimitError, never a verified result.
package verify

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/opencontainers/go-digest"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/provenance"
	"github.com/vmbuild/vmbuild/registry"
	"github.com/vmbuild/vmbuild/sign"
	"github.com/vmbuild/vmbuild/store"
	"github.com/vmbuild/vmbuild/track/history"
)

// Defaults.
const (
	// DefaultTimeout is the total deadline of one Verify (and Resolve).
	DefaultTimeout = 2 * time.Minute
	// DefaultMaxTotalBytes bounds everything one Verify reads from a
	// registry (manifests, signatures, attestations, indexes).
	DefaultMaxTotalBytes = 128 << 20
	// MaxManifestBytes bounds the image manifest (as sign and registry do
	// for every manifest).
	MaxManifestBytes = 4 << 20
)

// Verifier verifies images. It is safe for concurrent use.
type Verifier struct {
	keys      []crypto.PublicKey
	keyPEMs   [][]byte
	client    *registry.Client
	regOpts   []registry.Option
	transport http.RoundTripper
	log       *slog.Logger
	timeout   time.Duration
	maxBytes  int64
	now       func() time.Time
}

// Option configures a Verifier.
type Option func(*Verifier)

// WithPublicKeys adds trusted keys (ECDSA, as sign.LoadPublicKey returns).
// A signature or attestation by any of them is trusted.
func WithPublicKeys(keys ...crypto.PublicKey) Option {
	return func(v *Verifier) { v.keys = append(v.keys, keys...) }
}

// WithPublicKeyPEM adds trusted keys in PEM ("PUBLIC KEY", as cosign.pub).
func WithPublicKeyPEM(pems ...[]byte) Option {
	return func(v *Verifier) { v.keyPEMs = append(v.keyPEMs, pems...) }
}

// WithRegistryOptions configures the registry client the Verifier makes
// (insecure hosts, credentials, retries, logger). A registry.WithHTTPClient
// among them is overridden: use WithTransport.
func WithRegistryOptions(opts ...registry.Option) Option {
	return func(v *Verifier) { v.regOpts = append(v.regOpts, opts...) }
}

// WithTransport sets the HTTP transport under the registry client
// (default: containerd's default transport). The Verifier wraps it to
// enforce the total byte budget.
func WithTransport(rt http.RoundTripper) Option {
	return func(v *Verifier) { v.transport = rt }
}

// WithRegistryClient makes the Verifier use c as is. The per-manifest,
// per-blob and count limits and the deadline still hold, but the total
// byte budget (WithMaxTotalBytes) is not enforced on a client the
// Verifier did not make.
func WithRegistryClient(c *registry.Client) Option {
	return func(v *Verifier) { v.client = c }
}

// WithLogger sets the logger (silent by default).
func WithLogger(l *slog.Logger) Option {
	return func(v *Verifier) {
		if l != nil {
			v.log = l
		}
	}
}

// WithTimeout sets the total deadline of one Verify or Resolve
// (default DefaultTimeout). Hitting it is an *errs.LimitError.
func WithTimeout(d time.Duration) Option {
	return func(v *Verifier) { v.timeout = d }
}

// WithMaxTotalBytes sets the total byte budget of one Verify (default
// DefaultMaxTotalBytes). It must hold at least one attestation (16 MiB).
func WithMaxTotalBytes(n int64) Option {
	return func(v *Verifier) { v.maxBytes = n }
}

// WithClock sets the clock for Report.Time (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(v *Verifier) {
		if now != nil {
			v.now = now
		}
	}
}

// New returns a Verifier. At least one trusted key is required; bad keys
// and out-of-range settings are errors (errs.ErrKey, errs.ErrUsage).
func New(opts ...Option) (*Verifier, error) {
	v := &Verifier{
		log:      slog.New(slog.DiscardHandler),
		timeout:  DefaultTimeout,
		maxBytes: DefaultMaxTotalBytes,
		now:      time.Now,
	}
	for _, o := range opts {
		o(v)
	}
	for i, p := range v.keyPEMs {
		k, err := sign.LoadPublicKey(p)
		if err != nil {
			return nil, fmt.Errorf("loading trusted key %d: %w", i+1, err)
		}
		v.keys = append(v.keys, k)
	}
	v.keyPEMs = nil
	if len(v.keys) == 0 {
		return nil, fmt.Errorf("creating verifier: no trusted key: %w", errs.ErrKey)
	}
	for i, k := range v.keys {
		if sign.KeyHint(k) == "" {
			return nil, fmt.Errorf("creating verifier: trusted key %d (%T) is not usable: %w", i+1, k, errs.ErrKey)
		}
	}
	if v.timeout <= 0 {
		return nil, fmt.Errorf("creating verifier: timeout %s is not positive: %w", v.timeout, errs.ErrUsage)
	}
	if v.maxBytes < sign.DefaultLimits().MaxAttestationBytes {
		return nil, fmt.Errorf("creating verifier: total byte budget %d is smaller than one attestation (%s): %w", v.maxBytes, registry.FormatBytes(sign.DefaultLimits().MaxAttestationBytes), errs.ErrUsage)
	}
	if v.client == nil {
		rt := v.transport
		if rt == nil {
			rt = docker.DefaultHTTPTransport(nil)
		}
		lim := registry.DefaultLimits()
		lim.MaxManifestBytes = MaxManifestBytes
		// sign reads at most 2×100 bundle referrers; more is refused
		// before anything else is fetched.
		lim.MaxReferrers = 2 * sign.DefaultLimits().MaxEntries
		opts := append([]registry.Option{registry.WithLogger(v.log)}, v.regOpts...)
		opts = append(opts,
			registry.WithHTTPClient(&http.Client{Transport: &budgetTransport{next: rt}}),
			registry.WithLimits(lim))
		v.client = registry.New(opts...)
	}
	return v, nil
}

// Report is the outcome of a verification: every check with its reason.
type Report struct {
	// Image is the verified reference, pinned: REPO@sha256:… or
	// oci:DIR@sha256:…. Deploy exactly this.
	Image  string        `json:"image"`
	Target Target        `json:"target"`
	Digest digest.Digest `json:"digest"`
	// Verified is true when every check passed (or was waived by the
	// policy). Verify returns a nil error exactly then.
	Verified bool    `json:"verified"`
	Checks   []Check `json:"checks"`
	// Provenance summarizes the accepted provenance (or, when refused, the
	// attestation that got furthest, if it parsed).
	Provenance *Summary `json:"provenance,omitempty"`
	// Policy is where the policy came from ("" for one built in code,
	// "none" for NoPolicy).
	Policy string    `json:"policy"`
	Time   time.Time `json:"time"`
	// Error is set when nothing was decided (Verify returned an error that
	// is not a verification failure): what stopped it.
	Error string `json:"error,omitempty"`
	// ResolvedFrom is the tag reference the caller resolved to Image with
	// Resolve, if any (set by the caller, for the record).
	ResolvedFrom string `json:"resolvedFrom,omitempty"`
}

// Summary is what a verified provenance says about the build.
type Summary struct {
	Recipe       string        `json:"recipe"`
	RecipeSHA256 string        `json:"recipeSha256,omitempty"`
	Source       string        `json:"source"`
	Ref          string        `json:"ref,omitempty"`
	Commit       string        `json:"commit"`
	Patches      []PolicyPatch `json:"patches"`
	BaseImages   []string      `json:"baseImages,omitempty"`
	Frontend     string        `json:"frontend,omitempty"`
	// NonHermetic describes the recorded network access and unpinned
	// downloads (provenance.Access.String).
	NonHermetic []string `json:"nonHermetic,omitempty"`
	Builder     string   `json:"builder"`
	BuildKit    string   `json:"buildkitVersion,omitempty"`
	Invocation  string   `json:"invocationId,omitempty"`
}

func summarizeInfo(info *provenance.Info) *Summary {
	if info == nil {
		return nil
	}
	s := &Summary{
		Recipe: info.Recipe.Name, Source: info.Upstream.URL, Ref: info.Upstream.Ref, Commit: info.Upstream.Commit,
		Patches: []PolicyPatch{}, Builder: info.BuilderID, BuildKit: info.BuildKitVersion, Invocation: info.InvocationID,
	}
	for _, p := range info.Patches {
		s.Patches = append(s.Patches, PolicyPatch{Name: p.Name, SHA256: p.SHA256})
	}
	if info.Base.Ref != "" {
		s.BaseImages = append(s.BaseImages, info.Base.Ref+"@"+info.Base.Digest)
	}
	for _, im := range info.Images {
		s.BaseImages = append(s.BaseImages, im.Ref+"@"+im.Digest)
	}
	s.RecipeSHA256 = info.Recipe.SHA256
	if info.Frontend != nil {
		s.Frontend = info.Frontend.Ref + "@" + info.Frontend.Digest
	}
	for _, a := range info.NonHermetic {
		s.NonHermetic = append(s.NonHermetic, a.String())
	}
	return s
}

// Resolve pins a reference: a digest reference is returned as is, a tag
// is resolved once (registry: HEAD/GET of the manifest; layout: the
// index.json entry annotated org.opencontainers.image.ref.name=TAG). The
// caller must then verify and deploy that digest, never the tag again.
func (v *Verifier) Resolve(ctx context.Context, r Reference) (Target, error) {
	if !r.IsTag() {
		return r.Target, r.Target.validate()
	}
	ctx, cancel := v.deadline(ctx)
	defer cancel()
	if r.Layout != "" {
		d, err := resolveLayoutTag(ctx, r.Layout, r.Tag, v.log)
		if err != nil {
			return Target{}, err
		}
		return Target{Layout: r.Layout, Digest: d}, nil
	}
	ctx = withBudget(ctx, v.maxBytes)
	desc, err := v.client.Resolve(ctx, r.Repository+":"+r.Tag)
	if err != nil {
		return Target{}, v.classify(ctx, fmt.Errorf("resolving %s: %w", r, err))
	}
	if desc.Digest.Algorithm() != digest.SHA256 {
		return Target{}, fmt.Errorf("resolving %s: registry answered with a %s digest: %w", r, desc.Digest.Algorithm(), errs.ErrRegistry)
	}
	t := Target{Repository: r.Repository, Digest: desc.Digest}
	return t, t.validate()
}

func (v *Verifier) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, v.timeout, &errs.LimitError{Limit: fmt.Sprintf("total deadline (%s)", v.timeout)})
}

// classify turns an error seen after our deadline expired into the
// deadline's LimitError.
func (v *Verifier) classify(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		var le *errs.LimitError
		if cause := context.Cause(ctx); errors.As(cause, &le) && !errors.As(err, new(*errs.LimitError)) {
			return fmt.Errorf("%w (%v)", le, err)
		}
	}
	return err
}

// Verify checks the image t against p and returns the report. The error
// is nil exactly when the image is verified; a refusal is an
// *errs.VerificationError naming the first failed check (the report has
// them all); any other error (network, registry, limits, deadline,
// policy or history file) means nothing was decided, and the report, if
// not nil, shows how far it got. A nil policy is an error: pass NoPolicy()
// to verify without one.
func (v *Verifier) Verify(ctx context.Context, t Target, p *Policy) (*Report, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := t.validate(); err != nil {
		return nil, err
	}
	rep := &Report{Image: t.String(), Target: t, Digest: t.Digest, Policy: p.File, Time: v.now().UTC()}
	if p.IsNoPolicy() {
		rep.Policy = "none"
	}
	ev := evidence{digest: t.Digest, keys: v.keys, policy: p}
	if p.HistoryFile != "" {
		pub, err := readPublished(p.HistoryFile)
		if err != nil {
			return nil, err
		}
		ev.published = pub
	}
	ctx, cancel := v.deadline(ctx)
	defer cancel()
	ctx = withBudget(ctx, v.maxBytes)

	stage := CheckSignature
	st, err := v.openImage(ctx, t)
	if err == nil {
		err = readAttached(ctx, st, t, &ev, &stage)
	}
	if err == nil && ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	if err != nil {
		err = v.classify(ctx, err)
		if b := budgetOf(ctx); b != nil && b.remaining.Load() < 0 && !isBudgetError(err) {
			// Another layer may have renamed the limit (sign names every
			// blob read limit after the blob): say which one it was.
			err = fmt.Errorf("%w (%v)", b.exceeded(), err)
		}
		rep.Checks = undecided(stage, err)
		rep.Error = err.Error()
		return rep, err
	}
	v.log.Debug("read signatures and attestations", "image", t.String(), "signatures", len(ev.sigs), "attestations", len(ev.atts))
	o := evaluate(ev)
	rep.Checks = o.checks
	rep.Provenance = summarizeInfo(o.info)
	rep.Verified = o.verified()
	if rep.Verified {
		return rep, nil
	}
	c, ok := o.firstFailure()
	if !ok { // cannot happen: not verified means a check failed
		c = fail(CheckProvenance, "not verified")
	}
	return rep, &errs.VerificationError{Check: c.Name, Reason: c.Reason}
}

// undecided is the check list when reading failed during stage: that
// check shows the error, the others were not reached.
func undecided(stage string, err error) []Check {
	var out []Check
	for _, n := range CheckNames() {
		if n == stage {
			out = append(out, fail(n, "could not decide: %v", err))
			continue
		}
		out = append(out, skip(n, "not checked: %s could not be read", stage))
	}
	return out
}

func readPublished(path string) (map[string]bool, error) {
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("reading history %s named by the policy: %w: not a readable file", path, errs.ErrInvalidPolicy)
	}
	entries, err := history.Read(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errs.ErrInvalidPolicy, err)
	}
	out := map[string]bool{}
	for c := range history.PublishedCommits(entries) {
		out[c] = true
	}
	return out, nil
}

// openImage opens the store that holds t and checks that the image is
// there: its manifest exists and hashes to the digest (a registry that
// serves other bytes for it is caught here), and a layout's index.json
// lists it.
func (v *Verifier) openImage(ctx context.Context, t Target) (store.Store, error) {
	if t.Layout == "" {
		st, err := store.NewRegistry(v.client, t.Repository)
		if err != nil {
			return nil, err
		}
		if _, _, err := st.Manifest(ctx, t.Digest.String()); err != nil {
			return nil, fmt.Errorf("reading image %s: %w", t, err)
		}
		return st, nil
	}
	l, err := store.OpenLayout(ctx, t.Layout, store.WithLayoutLimits(store.Limits{MaxManifestBytes: MaxManifestBytes}), store.WithLayoutLogger(v.log))
	if err != nil {
		return nil, fmt.Errorf("reading image %s: %w", t, err)
	}
	if _, err := l.Resolve(ctx, t.Digest.String()); err != nil {
		return nil, fmt.Errorf("reading image %s: %w", t, err)
	}
	if _, _, err := l.Manifest(ctx, t.Digest.String()); err != nil {
		return nil, fmt.Errorf("reading image %s: %w", t, err)
	}
	return l, nil
}

// readAttached reads the signatures, then the attestations, of the image.
func readAttached(ctx context.Context, st store.Store, t Target, ev *evidence, stage *string) error {
	sigs, err := sign.FetchSignatures(ctx, st, t.Digest)
	if err != nil {
		return err // sign says "reading signatures of REPO@DIGEST"
	}
	ev.sigs = sigs
	*stage = CheckAttestation
	atts, err := sign.FetchAttestations(ctx, st, t.Digest)
	if err != nil {
		return err
	}
	ev.atts = atts
	return nil
}

// The total byte budget: every response body read by the Verifier's
// registry client during one Verify counts against it.

type budgetKey struct{}

type budget struct {
	limit     int64
	remaining atomic.Int64
}

func withBudget(ctx context.Context, limit int64) context.Context {
	b := &budget{limit: limit}
	b.remaining.Store(limit)
	return context.WithValue(ctx, budgetKey{}, b)
}

func budgetOf(ctx context.Context) *budget {
	b, _ := ctx.Value(budgetKey{}).(*budget)
	return b
}

func isBudgetError(err error) bool {
	var le *errs.LimitError
	return errors.As(err, &le) && strings.HasPrefix(le.Limit, "total bytes read")
}

type budgetTransport struct{ next http.RoundTripper }

func (t *budgetTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp == nil || resp.Body == nil {
		return resp, err
	}
	if b := budgetOf(req.Context()); b != nil {
		if resp.ContentLength > b.remaining.Load() {
			b.remaining.Add(-resp.ContentLength)
			resp.Body.Close()
			return nil, b.exceeded()
		}
		resp.Body = &budgetBody{rc: resp.Body, b: b}
	}
	return resp, nil
}

func (b *budget) exceeded() error {
	return &errs.LimitError{Limit: fmt.Sprintf("total bytes read (%s)", registry.FormatBytes(b.limit))}
}

type budgetBody struct {
	rc io.ReadCloser
	b  *budget
}

func (r *budgetBody) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if r.b.remaining.Add(-int64(n)) < 0 {
		return n, r.b.exceeded()
	}
	return n, err
}

func (r *budgetBody) Close() error { return r.rc.Close() }
