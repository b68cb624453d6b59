package verify

import (
	"bytes"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
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
	CheckPayloadType = "payload-type"
	// CheckStatement: the payload is an in-toto v1 statement (a JSON
	// object with _type, subject, predicateType and predicate).
	CheckStatement = "statement"
	// CheckPredicateType: predicateType is https://slsa.dev/provenance/v1.
	CheckPredicateType = "predicate-type"
	// CheckSubject: the statement's subject names this digest.
	CheckSubject = "subject"
	// CheckBuildType: buildDefinition.buildType is vmbuild's.
	CheckBuildType = "build-type"
	// CheckExternalParameters: externalParameters holds only the
	// parameters vmbuild's buildType v1 defines.
	CheckExternalParameters = "external-parameters"
	// CheckProvenance: the statement parses strictly as vmbuild's buildType
	// v1 (provenance.Parse).
	CheckProvenance = "provenance"
	// CheckBuilder: runDetails.builder.id is trusted.
	CheckBuilder = "builder"
	// CheckSource: the upstream repository is the policy's.
	CheckSource = "source"
	// CheckCommit: the upstream commit is allowed.
	CheckCommit = "commit"
	// CheckPatches: the patch set is exactly the policy's.
	CheckPatches = "patches"
	// CheckBaseImage: the images the build started from are allowed.
	CheckBaseImage = "base-image"
)

// attestationStages are the checks each attestation goes through, in order.
var attestationStages = []string{
	CheckDSSESignature, CheckPayloadType, CheckStatement, CheckPredicateType,
	CheckSubject, CheckBuildType, CheckExternalParameters, CheckProvenance,
}

// policyStages are evaluated all together on a parsed provenance.
var policyStages = []string{CheckBuilder, CheckSource, CheckCommit, CheckPatches, CheckBaseImage}

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
		switch c.Name {
		case CheckSource, CheckCommit, CheckPatches, CheckBaseImage:
		default:
			if !c.OK {
				return false
			}
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
	return fail(CheckSignature, "%s verify with a trusted key over %s: %s", n, ev.digest, summarize(reasons))
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

// summarize joins distinct reasons, at most three.
func summarize(reasons []string) string {
	var uniq []string
	seen := map[string]int{}
	for _, r := range reasons {
		if _, ok := seen[r]; !ok {
			uniq = append(uniq, r)
		}
		seen[r]++
	}
	var parts []string
	for i, r := range uniq {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(uniq)-3))
			break
		}
		if seen[r] > 1 {
			r = fmt.Sprintf("%s (×%d)", r, seen[r])
		}
		parts = append(parts, r)
	}
	return strings.Join(parts, "; ")
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

// statement is an in-toto statement as decoded for the checks before the
// strict parse (exact key names: no case folding).
type statement struct {
	typ           string
	subjects      []map[string]string
	predicateType string
	predicate     map[string]json.RawMessage
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
	if payloadType != sign.InTotoPayloadType {
		r.stage(fail(CheckPayloadType, "payloadType is %q, want exactly %q", clip(payloadType), sign.InTotoPayloadType))
		return r
	}
	r.stage(pass(CheckPayloadType, "payloadType %s", payloadType))
	st, err := decodeStatement(payload)
	if err != nil {
		r.stage(fail(CheckStatement, "the payload is not an in-toto v1 statement: %v", err))
		return r
	}
	r.stage(pass(CheckStatement, "in-toto statement, %d subject(s)", len(st.subjects)))
	if st.predicateType != provenance.PredicateType {
		r.stage(fail(CheckPredicateType, "predicateType is %q, want %q (SLSA provenance v1)", clip(st.predicateType), provenance.PredicateType))
		return r
	}
	r.stage(pass(CheckPredicateType, "%s", st.predicateType))
	if !r.stage(checkSubject(st, ev.digest)) {
		return r
	}
	bd, err := buildDefinition(st.predicate)
	if err != nil {
		r.stage(fail(CheckBuildType, "%v", err))
		return r
	}
	var buildType string
	if raw, ok := bd["buildType"]; !ok {
		r.stage(fail(CheckBuildType, "predicate.buildDefinition.buildType is missing"))
		return r
	} else if err := json.Unmarshal(raw, &buildType); err != nil || buildType != provenance.BuildType {
		r.stage(fail(CheckBuildType, "buildType is %s, want %q (vmbuild's)", clip(string(raw)), provenance.BuildType))
		return r
	}
	r.stage(pass(CheckBuildType, "%s", buildType))
	if unknown := unknownExternal(bd["externalParameters"]); len(unknown) > 0 {
		r.stage(fail(CheckExternalParameters, "unknown external parameter(s) %s: vmbuild's buildType v1 does not define them, and a build input nobody checks is not accepted", strings.Join(unknown, ", ")))
		return r
	}
	r.stage(pass(CheckExternalParameters, "only the parameters buildType v1 defines (recipe, upstream, patches, build)"))
	parsable, err := cosignCompat(st, payload)
	if err != nil {
		r.stage(fail(CheckProvenance, "%v", err))
		return r
	}
	info, err := provenance.Parse(parsable)
	if err != nil {
		r.stage(fail(CheckProvenance, "%s", reasonOf(err)))
		return r
	}
	if info.Subject.Digest != ev.digest.String() {
		// The strict parser and the subject check disagree: refuse.
		r.stage(fail(CheckProvenance, "the statement's subject parses as %s, not %s", info.Subject.Digest, ev.digest))
		return r
	}
	r.info = info
	r.stage(pass(CheckProvenance, "vmbuild provenance: recipe %s, %s at %s, %d patch(es)", info.Recipe.Name, info.Upstream.URL, info.Upstream.Commit, len(info.Patches)))
	r.checks = append(r.checks,
		checkBuilder(ev.policy, info),
		checkSource(ev.policy, info),
		checkCommit(ev.policy, ev.published, info),
		checkPatches(ev.policy, info),
		checkBaseImages(ev.policy, info),
	)
	return r
}

// clip shortens attacker-controlled text for messages.
func clip(s string) string {
	const n = 120
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func decodeStatement(payload []byte) (*statement, error) {
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&top); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	if top == nil {
		return nil, errors.New("not a JSON object: null")
	}
	st := &statement{}
	str := func(key string) (string, error) {
		raw, ok := top[key]
		if !ok {
			return "", fmt.Errorf("%s is missing", key)
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("%s is not a string", key)
		}
		return s, nil
	}
	var err error
	if st.typ, err = str("_type"); err != nil {
		return nil, err
	}
	if st.typ != statementV1 && st.typ != statementV01 {
		return nil, fmt.Errorf("_type is %q, want %q", clip(st.typ), statementV1)
	}
	if st.predicateType, err = str("predicateType"); err != nil {
		return nil, err
	}
	raw, ok := top["subject"]
	if !ok {
		return nil, errors.New("subject is missing")
	}
	var subs []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &subs); err != nil {
		return nil, errors.New("subject is not a list of objects")
	}
	if len(subs) == 0 {
		return nil, errors.New("subject is empty")
	}
	for i, s := range subs {
		var d map[string]string
		if err := json.Unmarshal(s["digest"], &d); err != nil || len(d) == 0 {
			return nil, fmt.Errorf("subject[%d].digest is not a non-empty map of strings", i)
		}
		st.subjects = append(st.subjects, d)
	}
	raw, ok = top["predicate"]
	if !ok {
		return nil, errors.New("predicate is missing")
	}
	if err := json.Unmarshal(raw, &st.predicate); err != nil || st.predicate == nil {
		return nil, errors.New("predicate is not an object")
	}
	return st, nil
}

const (
	statementV1 = "https://in-toto.io/Statement/v1"
	// statementV01 is what stock cosign v2 `attest` writes (in-toto-golang's
	// v0.1 statement); its fields are those of v1 that vmbuild uses.
	statementV01 = "https://in-toto.io/Statement/v0.1"
)

// cosignCompat rewrites a statement made by stock cosign v2 (`cosign
// attest --type slsaprovenance1 --predicate P`) into the form
// provenance.Parse reads, or returns payload unchanged. cosign re-encodes
// the predicate through in-toto-golang's Go types, which differ from the
// in-toto protos in two ways: the statement _type is v0.1, and
// runDetails.metadata.invocationId is spelled invocationID. Nothing else
// is touched; anything else cosign changed is refused by the strict parse.
func cosignCompat(st *statement, payload []byte) ([]byte, error) {
	if st.typ != statementV01 {
		return payload, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(payload, &top); err != nil {
		return nil, fmt.Errorf("re-reading the v0.1 statement: %v", err)
	}
	top["_type"], _ = json.Marshal(statementV1)
	var pred map[string]json.RawMessage
	if err := json.Unmarshal(top["predicate"], &pred); err != nil {
		return nil, fmt.Errorf("predicate: %v", err)
	}
	var rd map[string]json.RawMessage
	if raw, ok := pred["runDetails"]; ok && json.Unmarshal(raw, &rd) == nil && rd != nil {
		var md map[string]json.RawMessage
		if raw, ok := rd["metadata"]; ok && json.Unmarshal(raw, &md) == nil && md != nil {
			if v, ok := md["invocationID"]; ok {
				if _, both := md["invocationId"]; both {
					return nil, errors.New("runDetails.metadata has both invocationID and invocationId")
				}
				delete(md, "invocationID")
				md["invocationId"] = v
				rd["metadata"], _ = json.Marshal(md)
				pred["runDetails"], _ = json.Marshal(rd)
				top["predicate"], _ = json.Marshal(pred)
			}
		}
	}
	return json.Marshal(top)
}

func checkSubject(st *statement, d digest.Digest) Check {
	var names []string
	for _, s := range st.subjects {
		if s[string(d.Algorithm())] == d.Encoded() {
			return pass(CheckSubject, "the statement is about %s", d)
		}
		var ds []string
		for _, alg := range sortedKeys(s) {
			ds = append(ds, alg+":"+clip(s[alg]))
		}
		names = append(names, strings.Join(ds, ","))
	}
	return fail(CheckSubject, "the statement is about %s, not %s: this attestation belongs to another image", summarize(names), d)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func buildDefinition(pred map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	raw, ok := pred["buildDefinition"]
	if !ok {
		return nil, errors.New("predicate.buildDefinition is missing")
	}
	var bd map[string]json.RawMessage
	if err := json.Unmarshal(raw, &bd); err != nil || bd == nil {
		return nil, errors.New("predicate.buildDefinition is not an object")
	}
	return bd, nil
}

// schema is the key structure of externalParameters in buildType v1.
type schema struct {
	keys map[string]*schema // allowed keys of an object (nil value: a leaf)
	elem *schema            // list elements
	free bool               // an object with free-form keys (build args)
}

var externalSchema = &schema{keys: map[string]*schema{
	"recipe":   {keys: map[string]*schema{"name": nil, "path": nil, "sha256": nil}},
	"upstream": {keys: map[string]*schema{"repository": nil, "ref": nil}},
	"patches":  {elem: &schema{keys: map[string]*schema{"name": nil, "kind": nil, "sha256": nil}}},
	"build": {keys: map[string]*schema{
		"mode":       nil,
		"dockerfile": {keys: map[string]*schema{"path": nil, "target": nil, "args": {free: true}}},
		"layers":     nil,
	}},
}}

// unknownExternal lists the keys of externalParameters (at any depth) that
// buildType v1 does not define. Type and presence errors are left to the
// strict parse.
func unknownExternal(raw json.RawMessage) []string {
	var out []string
	var walk func(path string, raw json.RawMessage, s *schema)
	walk = func(path string, raw json.RawMessage, s *schema) {
		if s == nil || s.free || len(out) >= 10 {
			return
		}
		if s.elem != nil {
			var l []json.RawMessage
			if json.Unmarshal(raw, &l) != nil {
				return
			}
			for i, e := range l {
				walk(fmt.Sprintf("%s[%d]", path, i), e, s.elem)
			}
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return
		}
		for _, k := range sortedKeys(m) {
			sub, ok := s.keys[k]
			if !ok {
				out = append(out, fmt.Sprintf("%q", clip(path+"."+k)))
				continue
			}
			walk(path+"."+k, m[k], sub)
		}
	}
	if raw != nil {
		walk("externalParameters", raw, externalSchema)
	}
	return out
}

func checkBuilder(p *Policy, info *provenance.Info) Check {
	trusted := p.trustedBuilders()
	if slices.Contains(trusted, info.BuilderID) {
		return pass(CheckBuilder, "builder %s is trusted", info.BuilderID)
	}
	why := "the policy's builders"
	if p.IsNoPolicy() {
		why = "without a policy, only the default builder"
	} else if len(p.Builders) == 0 {
		why = "the policy names no builders: only the default builder"
	}
	return fail(CheckBuilder, "builder %q is not trusted (%s: %s)", clip(info.BuilderID), why, strings.Join(trusted, ", "))
}

func checkSource(p *Policy, info *provenance.Info) Check {
	switch {
	case p.IsNoPolicy():
		return skip(CheckSource, "not constrained: no policy (source is %s)", info.Upstream.URL)
	case p.AnySource:
		return skip(CheckSource, "not constrained: the policy allows any source (source is %s)", info.Upstream.URL)
	case info.Upstream.URL == p.Source:
		return pass(CheckSource, "built from %s", info.Upstream.URL)
	}
	return fail(CheckSource, "built from %q, the policy allows only %q", clip(info.Upstream.URL), p.Source)
}

func checkCommit(p *Policy, published map[string]bool, info *provenance.Info) Check {
	c := info.Upstream.Commit
	switch {
	case p.IsNoPolicy():
		return skip(CheckCommit, "not constrained: no policy (commit is %s)", c)
	case p.AnyCommit:
		return skip(CheckCommit, "not constrained: the policy allows any commit (commit is %s)", c)
	case slices.Contains(p.Commits, c):
		return pass(CheckCommit, "commit %s is listed in the policy", c)
	case published[c]:
		return pass(CheckCommit, "commit %s is recorded as published in %s", c, p.HistoryFile)
	}
	var where []string
	if len(p.Commits) > 0 {
		where = append(where, fmt.Sprintf("not among the policy's %d commit(s)", len(p.Commits)))
	}
	if p.HistoryFile != "" {
		where = append(where, fmt.Sprintf("not recorded as published in %s", p.HistoryFile))
	}
	return fail(CheckCommit, "commit %s is not allowed: %s", c, strings.Join(where, ", "))
}

func checkPatches(p *Policy, info *provenance.Info) Check {
	if p.IsNoPolicy() {
		return skip(CheckPatches, "not constrained: no policy (%d patch(es))", len(info.Patches))
	}
	if p.AnyPatches {
		return skip(CheckPatches, "not constrained: the policy allows any patch set (%d patch(es))", len(info.Patches))
	}
	want := map[string]PolicyPatch{}
	for _, pt := range p.Patches {
		want[pt.SHA256] = pt
	}
	got := map[string]bool{}
	var problems []string
	for _, pt := range info.Patches {
		got[pt.SHA256] = true
		w, ok := want[pt.SHA256]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("extra patch %q (sha256 %s) is not in the policy", clip(pt.Name), pt.SHA256))
		case w.Name != "" && w.Name != pt.Name:
			problems = append(problems, fmt.Sprintf("patch sha256 %s is recorded as %q, the policy names it %q", pt.SHA256, clip(pt.Name), w.Name))
		}
	}
	for _, pt := range p.Patches {
		if !got[pt.SHA256] {
			name := ""
			if pt.Name != "" {
				name = fmt.Sprintf(" %q", pt.Name)
			}
			problems = append(problems, fmt.Sprintf("missing patch%s (sha256 %s) was not applied", name, pt.SHA256))
		}
	}
	if len(problems) > 0 {
		return fail(CheckPatches, "the patch set differs from the policy's: %s", strings.Join(problems, "; "))
	}
	if len(info.Patches) == 0 {
		return pass(CheckPatches, "no patches, as the policy requires")
	}
	names := make([]string, 0, len(info.Patches))
	for _, pt := range info.Patches {
		names = append(names, pt.Name)
	}
	return pass(CheckPatches, "exactly the policy's %d patch(es): %s", len(info.Patches), strings.Join(names, ", "))
}

func checkBaseImages(p *Policy, info *provenance.Info) Check {
	var imgs []provenance.Image
	if info.Base.Ref != "" {
		imgs = append(imgs, info.Base)
	}
	imgs = append(imgs, info.Images...)
	var names []string
	for _, im := range imgs {
		names = append(names, im.Ref+"@"+im.Digest)
	}
	switch {
	case p.IsNoPolicy():
		return skip(CheckBaseImage, "not constrained: no policy (%s)", strings.Join(names, ", "))
	case p.AnyBaseImage:
		return skip(CheckBaseImage, "not constrained: the policy allows any base image (%s)", strings.Join(names, ", "))
	case len(imgs) == 0:
		return pass(CheckBaseImage, "the build started from no image")
	}
	var bad []string
	for _, im := range imgs {
		if !slices.Contains(p.BaseImages, digest.Digest(im.Digest)) {
			bad = append(bad, fmt.Sprintf("%s@%s", clip(im.Ref), im.Digest))
		}
	}
	if len(bad) > 0 {
		return fail(CheckBaseImage, "image(s) not allowed by the policy's baseImages: %s", strings.Join(bad, ", "))
	}
	return pass(CheckBaseImage, "allowed: %s", strings.Join(names, ", "))
}
