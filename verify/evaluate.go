package verify

import (
	"crypto"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/provenance"
	"github.com/vmbuild/vmbuild/sign"
)

// Check names, in the order a Report lists them.
const (
	// CheckSignature: a signature by a trusted key over exactly this digest
	// (cosign's simple-signing payload in the .sig tag, or a Sigstore
	// bundle referrer holding cosign's sign statement).
	CheckSignature = "signature"
	// CheckAttestation: at least one attestation is attached (an image
	// without provenance is refused: CVE-2022-35929).
	CheckAttestation = "attestation"
	// CheckDSSESignature: the attestation's DSSE envelope verifies under a
	// trusted key (over PAE(payloadType, payload)).
	CheckDSSESignature = "dsse-signature"
	// CheckPayloadType: the envelope's payloadType is exactly
	// application/vnd.in-toto+json.
	CheckPayloadType = provenance.StagePayloadType
	// CheckStatement: the payload is an in-toto v1 statement (a JSON
	// object with _type, subject, predicateType and predicate).
	CheckStatement = provenance.StageStatement
	// CheckPredicateType: predicateType is https://slsa.dev/provenance/v1.
	CheckPredicateType = provenance.StagePredicateType
	// CheckSubject: the statement's subject names this digest.
	CheckSubject = provenance.StageSubject
	// CheckBuildType: buildDefinition.buildType is vmbuild's.
	CheckBuildType = provenance.StageBuildType
	// CheckExternalParameters: externalParameters holds only the
	// parameters vmbuild's buildType v1 defines.
	CheckExternalParameters = provenance.StageExternalParameters
	// CheckProvenance: the statement parses strictly as vmbuild's buildType
	// v1 (provenance.Parse).
	CheckProvenance = provenance.StageProvenance
	// CheckBuilder: runDetails.builder.id is trusted.
	CheckBuilder = "builder"
	// CheckSource: the upstream repository is the policy's.
	CheckSource = "source"
	// CheckCommit: the upstream commit is allowed.
	CheckCommit = "commit"
	// CheckRecipe: the recipe file's sha256 is allowed.
	CheckRecipe = "recipe"
	// CheckPatches: the patch set is exactly the policy's (compared as a
	// multiset), and, when the policy asks, each patch applied strictly.
	CheckPatches = "patches"
	// CheckBaseImage: the images the build started from are allowed.
	CheckBaseImage = "base-image"
	// CheckFrontend: the Dockerfile frontend image (`# syntax=`) is
	// allowed.
	CheckFrontend = "frontend"
	// CheckHermetic: when the policy requires it, the provenance records
	// no step with network access and no unpinned download.
	CheckHermetic = "hermetic"
	// CheckDebianBase: when the policy constrains it, the base was
	// assembled from Debian packages of an allowed suite, from an index
	// signed by an allowed key and verified against an allowed keyring.
	CheckDebianBase = "debian-base"
)

// attestationStages are the checks each attestation goes through, in
// order: the DSSE signature, then provenance.Read's stages.
var attestationStages = append([]string{CheckDSSESignature}, provenance.Stages()...)

// policyStages are evaluated all together on a parsed provenance.
var policyStages = func() []string {
	var out []string
	for _, pc := range policyChecks {
		out = append(out, pc.name)
	}
	return out
}()

// CheckNames lists every check in report order.
func CheckNames() []string {
	return slices.Concat([]string{CheckSignature, CheckAttestation}, attestationStages, policyStages)
}

// Check is the outcome of one check. Exactly one of OK and Skipped is
// true, or neither (the check failed). A check is skipped when an earlier
// one failed, or when the policy does not constrain what it checks.
type Check struct {
	Name    string `json:"name"`
	OK      bool   `json:"ok"`
	Skipped bool   `json:"skipped,omitempty"`
	Reason  string `json:"reason"`
}

// Status is "PASS", "FAIL" or "SKIP".
func (c Check) Status() string {
	switch {
	case c.OK:
		return "PASS"
	case c.Skipped:
		return "SKIP"
	}
	return "FAIL"
}

func pass(name, format string, args ...any) Check {
	return Check{Name: name, OK: true, Reason: fmt.Sprintf(format, args...)}
}

func fail(name, format string, args ...any) Check {
	return Check{Name: name, Reason: fmt.Sprintf(format, args...)}
}

func skip(name, format string, args ...any) Check {
	return Check{Name: name, Skipped: true, Reason: fmt.Sprintf(format, args...)}
}

// evidence is everything a decision rests on, already read.
type evidence struct {
	digest    digest.Digest
	sigs      []sign.Signature
	atts      []sign.Attestation
	keys      []crypto.PublicKey
	policy    *Policy
	published map[string]bool // commits the policy's history records as published
}

// outcome is the result of evaluate.
type outcome struct {
	checks []Check
	info   *provenance.Info // the accepted (or closest) provenance, if parsed
}

// verified reports whether no check failed and the mandatory ones passed.
func (o outcome) verified() bool {
	if len(o.checks) != len(CheckNames()) {
		return false
	}
	for _, c := range o.checks {
		if !c.OK && !c.Skipped {
			return false
		}
		if c.Skipped && c.OK {
			return false
		}
	}
	// Everything up to the parsed provenance and the builder must have
	// passed: only policy constraints the policy waives may be skipped.
	for _, c := range o.checks {
		if !c.OK && !waivable(c.Name) {
			return false
		}
	}
	return o.info != nil
}

// firstFailure returns the first failed check.
func (o outcome) firstFailure() (Check, bool) {
	for _, c := range o.checks {
		if !c.OK && !c.Skipped {
			return c, true
		}
	}
	return Check{}, false
}

// evaluate decides. It does no I/O.
func evaluate(ev evidence) outcome {
	out := outcome{checks: []Check{checkSignature(ev)}}
	if len(ev.atts) == 0 {
		out.checks = append(out.checks, fail(CheckAttestation, "no attestation is attached to %s: an image without signed provenance is not trusted", ev.digest))
		for _, n := range slices.Concat(attestationStages, policyStages) {
			out.checks = append(out.checks, skip(n, "not checked: no attestation"))
		}
		return out
	}
	results := make([]attResult, len(ev.atts))
	best := -1
	for i, a := range ev.atts {
		results[i] = evalAttestation(ev, a)
		if best < 0 || results[i].score() > results[best].score() {
			best = i
		}
		if results[i].ok() {
			best = i
			break
		}
	}
	r := results[best]
	out.info = r.info
	noun := "attestation is"
	if len(ev.atts) > 1 {
		noun = "attestations are"
	}
	out.checks = append(out.checks, pass(CheckAttestation, "%d %s attached to %s", len(ev.atts), noun, ev.digest))
	for _, c := range r.checks {
		if !c.OK && !c.Skipped && len(ev.atts) > 1 {
			c.Reason += fmt.Sprintf(" [closest of %d attestations: %s]", len(ev.atts), r.source)
		}
		out.checks = append(out.checks, c)
	}
	return out
}

// checkSignature looks for one signature by a trusted key over ev.digest.
func checkSignature(ev evidence) Check {
	if len(ev.sigs) == 0 {
		return fail(CheckSignature, "no signature is attached to %s (no .sig tag, no signature bundle referrer)", ev.digest)
	}
	var reasons []string
	for _, s := range ev.sigs {
		var errsSeen []error
		for _, k := range ev.keys {
			err := sign.VerifyImageSignature(k, s, ev.digest)
			if err == nil {
				return pass(CheckSignature, "signed over %s by trusted key %s (%s signature, %s)", ev.digest, keyID(k), s.Format, s.Source)
			}
			errsSeen = append(errsSeen, err)
		}
		reasons = append(reasons, bestReason(errsSeen))
	}
	n := "the signature does not"
	if len(ev.sigs) > 1 {
		n = fmt.Sprintf("none of the %d signatures does", len(ev.sigs))
	}
	return fail(CheckSignature, "%s verify with a trusted key over %s: %s", n, ev.digest, errs.Summarize(reasons))
}

// keyID is a short name of a key: the first 12 characters of cosign's
// key hint (base64 sha256 of the PKIX DER).
func keyID(k crypto.PublicKey) string {
	h := sign.KeyHint(k)
	if len(h) > 12 {
		h = h[:12]
	}
	return "sha256:" + h
}

// cryptoMismatch reports whether a refusal only says "not this key".
func cryptoMismatch(reason string) bool {
	return strings.Contains(reason, "does not verify with the key") || strings.Contains(reason, "no DSSE signature verifies")
}

func reasonOf(err error) string {
	var ve *errs.VerificationError
	if errors.As(err, &ve) {
		if ve.Err != nil {
			return ve.Reason + ": " + ve.Err.Error()
		}
		return ve.Reason
	}
	return err.Error()
}

// bestReason picks, among the refusals by each trusted key, one that says
// more than "not signed by this key" (the key verified the signature but
// the content was wrong), else the first.
func bestReason(es []error) string {
	if len(es) == 0 {
		return "no trusted key"
	}
	for _, e := range es {
		if r := reasonOf(e); !cryptoMismatch(r) {
			return r
		}
	}
	return reasonOf(es[0])
}

// attResult is one attestation's way through the stages.
type attResult struct {
	source string
	checks []Check // attestationStages then policyStages
	info   *provenance.Info
}

func (r attResult) ok() bool {
	for _, c := range r.checks {
		if !c.OK && !c.Skipped {
			return false
		}
	}
	return r.info != nil
}

// score counts the checks passed (skips by policy count too): the
// attestation that got furthest is the one a failure report names.
func (r attResult) score() int {
	n := 0
	for _, c := range r.checks {
		if c.OK || (c.Skipped && r.info != nil) {
			n++
		}
	}
	return n
}

// stage records the result of the next stage and reports whether to go on.
func (r *attResult) stage(c Check) bool {
	r.checks = append(r.checks, c)
	if c.OK {
		return true
	}
	failed := c.Name
	for _, n := range slices.Concat(attestationStages, policyStages)[len(r.checks):] {
		r.checks = append(r.checks, skip(n, "not checked: %s failed", failed))
	}
	return false
}

func evalAttestation(ev evidence, a sign.Attestation) attResult {
	r := attResult{source: a.Source}
	// DSSE signature under a trusted key.
	var payloadType string
	var payload []byte
	var errsSeen []error
	var signer crypto.PublicKey
	for _, k := range ev.keys {
		pt, p, err := sign.VerifyDSSE(k, a.Envelope)
		if err == nil {
			payloadType, payload, signer = pt, p, k
			break
		}
		errsSeen = append(errsSeen, err)
	}
	if signer == nil {
		r.stage(fail(CheckDSSESignature, "the attestation's DSSE envelope does not verify with a trusted key: %s", bestReason(errsSeen)))
		return r
	}
	r.stage(pass(CheckDSSESignature, "DSSE envelope signed by trusted key %s (%s attestation, %s)", keyID(signer), a.Format, a.Source))
	// The format checks are provenance.Read's stages: each passed stage is
	// reported, then the one that refused.
	rd, err := provenance.Read(payloadType, payload, ev.digest)
	if rd == nil {
		rd = &provenance.Reading{}
	}
	failed, reason := "", ""
	if err != nil {
		failed, reason = provenance.StageProvenance, reasonOf(err)
		var ve *errs.VerificationError
		if errors.As(err, &ve) && slices.Contains(provenance.Stages(), ve.Check) {
			failed = ve.Check
		}
	}
	for _, stage := range provenance.Stages() {
		if stage == failed {
			r.stage(fail(stage, "%s", reason))
			return r
		}
		if stage == provenance.StagePayloadType {
			r.stage(pass(stage, "payloadType %s", payloadType))
			continue
		}
		r.stage(pass(stage, "%s", stagePassed(stage, rd, ev.digest)))
	}
	info := rd.Info
	r.info = info
	for _, pc := range policyChecks {
		r.checks = append(r.checks, pc.check(ev, info))
	}
	return r
}

// stagePassed says what a passed stage of provenance.Read established.
func stagePassed(stage string, rd *provenance.Reading, d digest.Digest) string {
	if rd == nil || rd.Statement == nil {
		// Not reached: a stage after payload-type passes only once the
		// statement was read.
		return stage
	}
	switch stage {
	case provenance.StageStatement:
		return fmt.Sprintf("in-toto statement, %d subject(s)", len(rd.Statement.Subjects))
	case provenance.StagePredicateType:
		return rd.Statement.PredicateType
	case provenance.StageSubject:
		return fmt.Sprintf("the statement is about %s", d)
	case provenance.StageBuildType:
		return provenance.BuildType
	case provenance.StageExternalParameters:
		return "only the parameters buildType v1 defines (recipe, upstream, patches, build)"
	case provenance.StageProvenance:
		info := rd.Info
		return fmt.Sprintf("vmbuild provenance: recipe %s, %s at %s, %d patch(es)", info.Recipe.Name, info.Upstream.URL, info.Upstream.Commit, len(info.Patches))
	}
	return stage
}

// clip shortens attacker-controlled text for messages.
func clip(s string) string {
	const n = 120
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
