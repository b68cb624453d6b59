package provenance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/vmbuild/vmbuild/errs"
)

// This file is vmbuild's one reader of attestations: every in-toto
// statement vmbuild reads — to verify an image (package verify), to list
// or publish attestations (package sign), to keep an equivalent one
// (package publish), to print one (the CLI) — is read here.

const (
	// PayloadType is the DSSE payloadType of an in-toto statement.
	PayloadType = "application/vnd.in-toto+json"
	// StatementV1 is the in-toto Statement v1 type vmbuild writes.
	StatementV1 = "https://in-toto.io/Statement/v1"
	// StatementV01 is the in-toto v0.1 statement type stock cosign v2
	// (`cosign attest`) and cosign v3's bundles write. Its fields are
	// those of v1 that vmbuild uses.
	StatementV01 = "https://in-toto.io/Statement/v0.1"
)

// The stages of reading an attestation, in order. A refusal by [Read] or
// [ReadStatement] is an *errs.VerificationError whose Check is the stage
// that refused; they are also the names of verify's checks.
const (
	StagePayloadType        = "payload-type"        // the DSSE payloadType is PayloadType
	StageStatement          = "statement"           // the payload is an in-toto statement
	StagePredicateType      = "predicate-type"      // predicateType is PredicateType
	StageSubject            = "subject"             // a subject is the image
	StageBuildType          = "build-type"          // buildDefinition.buildType is BuildType
	StageExternalParameters = "external-parameters" // externalParameters has only keys build type v1 defines
	StageProvenance         = "provenance"          // the strict parse (Parse)
)

// Stages lists the stages of [Read] in order.
func Stages() []string {
	return []string{StagePayloadType, StageStatement, StagePredicateType, StageSubject, StageBuildType, StageExternalParameters, StageProvenance}
}

// Statement is an in-toto statement as read from a DSSE payload, keys
// matched exactly (no case folding). Nothing in it is trusted beyond
// what the caller verified (the envelope's signature).
type Statement struct {
	// Type is the statement's _type: StatementV1 or StatementV01.
	Type string
	// Subjects are the digest sets of the subjects, in order (each has at
	// least one entry).
	Subjects []map[string]string
	// PredicateType is the statement's predicateType.
	PredicateType string
	// Predicate is the predicate: a JSON object.
	Predicate json.RawMessage

	payload []byte
}

// Reading is how far [Read] got: Statement is set once the payload is an
// in-toto statement, Info once every stage passed.
type Reading struct {
	Statement *Statement
	Info      *Info
}

func refuse(stage, format string, args ...any) error {
	return &errs.VerificationError{Check: stage, Reason: fmt.Sprintf(format, args...)}
}

// ReadStatement reads an in-toto statement (v1, or the v0.1 that cosign
// writes) from a DSSE payload: one JSON object and nothing after it, no
// key twice in any object, with a string _type, a string predicateType, a
// non-empty subject list whose entries have non-empty digest sets, and an
// object predicate. A refusal is an *errs.VerificationError with check
// StageStatement.
func ReadStatement(payload []byte) (*Statement, error) {
	st, err := readStatement(payload)
	if err != nil {
		return nil, refuse(StageStatement, "the payload is not an in-toto v1 statement: %v", err)
	}
	return st, nil
}

func readStatement(payload []byte) (*Statement, error) {
	if len(payload) > MaxStatementBytes {
		return nil, fmt.Errorf("%d bytes, more than %d", len(payload), MaxStatementBytes)
	}
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
	if err := noDuplicateKeys(payload); err != nil {
		return nil, err
	}
	st := &Statement{payload: payload}
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
	if st.Type, err = str("_type"); err != nil {
		return nil, err
	}
	if st.Type != StatementV1 && st.Type != StatementV01 {
		return nil, fmt.Errorf("_type is %q, want %q", clip(st.Type), StatementV1)
	}
	if st.PredicateType, err = str("predicateType"); err != nil {
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
		st.Subjects = append(st.Subjects, d)
	}
	raw, ok = top["predicate"]
	if !ok {
		return nil, errors.New("predicate is missing")
	}
	var pred map[string]json.RawMessage
	if err := json.Unmarshal(raw, &pred); err != nil || pred == nil {
		return nil, errors.New("predicate is not an object")
	}
	st.Predicate = raw
	return st, nil
}

// noDuplicateKeys refuses a JSON document in which an object has a key
// twice: readers disagree on which one counts. data is valid JSON.
func noDuplicateKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var value func() error
	value = func() error {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		d, ok := t.(json.Delim)
		if !ok {
			return nil
		}
		if d == '{' {
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				k, _ := kt.(string)
				if seen[k] {
					return fmt.Errorf("key %q appears twice in an object", clip(k))
				}
				seen[k] = true
				if err := value(); err != nil {
					return err
				}
			}
		} else {
			for dec.More() {
				if err := value(); err != nil {
					return err
				}
			}
		}
		_, err = dec.Token() // the closing delimiter
		return err
	}
	return value()
}

// About reports whether one of the statement's subjects has digest d.
func (s *Statement) About(d digest.Digest) bool {
	for _, sub := range s.Subjects {
		if v, ok := sub[string(d.Algorithm())]; ok && v == d.Encoded() {
			return true
		}
	}
	return false
}

// subjectNames lists the subjects' digests for messages.
func (s *Statement) subjectNames() string {
	var names []string
	for _, sub := range s.Subjects {
		var ds []string
		for _, alg := range sortedKeys(sub) {
			ds = append(ds, alg+":"+clip(sub[alg]))
		}
		names = append(names, strings.Join(ds, ","))
	}
	return errs.Summarize(names)
}

// Read reads a DSSE payload (already verified by the caller) as vmbuild
// provenance about the image subject, stage by stage (see [Stages]):
// payloadType, in-toto statement ([ReadStatement]), predicate type,
// subject, build type, the keys of externalParameters
// ([UnknownParameters]), and the strict parse ([Parse]), whose subject
// must be subject too. cosign v2's re-encoding of a vmbuild statement (a
// v0.1 _type, runDetails.metadata.invocationID) is read as the statement
// it re-encodes; nothing else is forgiven. A refusal is an
// *errs.VerificationError naming the stage; the Reading says how far it
// got.
func Read(payloadType string, payload []byte, subject digest.Digest) (*Reading, error) {
	rd := &Reading{}
	if payloadType != PayloadType {
		return rd, refuse(StagePayloadType, "payloadType is %q, want exactly %q", clip(payloadType), PayloadType)
	}
	st, err := ReadStatement(payload)
	if err != nil {
		return rd, err
	}
	rd.Statement = st
	if st.PredicateType != PredicateType {
		return rd, refuse(StagePredicateType, "predicateType is %q, want %q (SLSA provenance v1)", clip(st.PredicateType), PredicateType)
	}
	if !st.About(subject) {
		return rd, refuse(StageSubject, "the statement is about %s, not %s: this attestation belongs to another image", st.subjectNames(), subject)
	}
	bd, err := st.buildDefinition()
	if err != nil {
		return rd, refuse(StageBuildType, "%v", err)
	}
	var buildType string
	if raw, ok := bd["buildType"]; !ok {
		return rd, refuse(StageBuildType, "predicate.buildDefinition.buildType is missing")
	} else if err := json.Unmarshal(raw, &buildType); err != nil || buildType != BuildType {
		return rd, refuse(StageBuildType, "buildType is %s, want %q (vmbuild's)", clip(string(raw)), BuildType)
	}
	if unknown := UnknownParameters(bd["externalParameters"], 10); len(unknown) > 0 {
		return rd, refuse(StageExternalParameters, "unknown external parameter(s) %s: vmbuild's buildType v1 does not define them, and a build input nobody checks is not accepted", strings.Join(unknown, ", "))
	}
	v1, err := st.v1()
	if err != nil {
		return rd, refuse(StageProvenance, "%v", err)
	}
	info, err := Parse(v1)
	if err != nil {
		return rd, err
	}
	if info.Subject.Digest != subject.String() {
		// The statement reading and the strict parse disagree: refuse.
		return rd, refuse(StageProvenance, "the statement's subject parses as %s, not %s", info.Subject.Digest, subject)
	}
	rd.Info = info
	return rd, nil
}

func (s *Statement) buildDefinition() (map[string]json.RawMessage, error) {
	var pred map[string]json.RawMessage
	if err := json.Unmarshal(s.Predicate, &pred); err != nil {
		return nil, errors.New("predicate is not an object")
	}
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

// v1 returns the statement in the form Parse reads: the payload itself
// for a v1 statement. A v0.1 statement is what stock cosign v2 `attest
// --type slsaprovenance1 --predicate P` makes of a vmbuild predicate P: it
// re-encodes it through in-toto-golang's Go types, which differ from the
// in-toto protos in two ways, the _type, and
// runDetails.metadata.invocationId spelled invocationID. Exactly those two
// are undone; anything else cosign changed fails the strict parse.
func (s *Statement) v1() ([]byte, error) {
	if s.Type != StatementV01 {
		return s.payload, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(s.payload, &top); err != nil {
		return nil, fmt.Errorf("re-reading the v0.1 statement: %v", err)
	}
	top["_type"], _ = json.Marshal(StatementV1)
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

// clip shortens untrusted text for messages.
func clip(s string) string {
	const n = 120
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
