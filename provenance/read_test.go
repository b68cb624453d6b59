package provenance

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/vmbuild/vmbuild/errs"
)

// sampleSubject is the image of sampleInput and the golden statements.
var sampleSubject = digest.Digest(sampleInput().Subject.Digest)

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// v01 rewrites a statement as stock cosign v2 re-encodes it: the v0.1
// _type and invocationID.
func v01(b []byte) []byte {
	b = bytes.Replace(b, []byte(`"`+StatementV1+`"`), []byte(`"`+StatementV01+`"`), 1)
	return bytes.Replace(b, []byte(`"invocationId"`), []byte(`"invocationID"`), 1)
}

// cosignStatements are statements stock cosign made (`cosign attest
// --type slsaprovenance1 --predicate P`, P a vmbuild predicate with patch
// options, outcomes and nonHermetic), captured from verify's cosign
// interop test: v2 (.att tag) and v3 (bundle referrer).
var cosignStatements = []string{"testdata/cosign2-statement.json", "testdata/cosign3-statement.json"}

// realStatements are statements vmbuild or cosign wrote, as read by Read,
// with the subject each is about.
func realStatements(t testing.TB) map[string]struct {
	payload []byte
	subject digest.Digest
} {
	out := map[string]struct {
		payload []byte
		subject digest.Digest
	}{}
	add := func(name string, b []byte, d digest.Digest) {
		out[name] = struct {
			payload []byte
			subject digest.Digest
		}{b, d}
	}
	golden := readFile(t, "testdata/golden-dockerfile.json")
	add("golden", golden, sampleSubject)
	add("golden v0.1", v01(golden), sampleSubject)
	add("old format", readFile(t, "testdata/old-dockerfile.json"), sampleSubject)
	native := sampleInput()
	native.Dockerfile, native.Frontend = nil, nil
	native.Native = &Native{Layers: []string{"deps", "app"}}
	native.NonHermetic = []Access{{Kind: AccessNetwork, Step: "[vmbuild] layer deps: bundle install", Network: NetworkHost}}
	add("native", marshalInput(t, native), sampleSubject)
	for _, name := range cosignStatements {
		b := readFile(t, name)
		st, err := ReadStatement(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		add(name, b, digest.NewDigestFromEncoded(digest.SHA256, st.Subjects[0]["sha256"]))
	}
	return out
}

// readRefusal is a payload Read must refuse at stage, with a reason
// containing fragment.
type readRefusal struct {
	payloadType string
	payload     []byte
	subject     digest.Digest
	stage       string
	fragment    string
}

func readRefusals(t testing.TB) map[string]readRefusal {
	golden := readFile(t, "testdata/golden-dockerfile.json")
	cosign := readFile(t, cosignStatements[0])
	cosignSubject := digest.Digest("sha256:d330c6649486907d504e37727c9e6656d0d31559db4a513bd68c12b421c3f3ce")
	ref := func(payload []byte, stage, fragment string) readRefusal {
		return readRefusal{PayloadType, payload, sampleSubject, stage, fragment}
	}
	cases := map[string]readRefusal{
		"payload type":       {"application/json", golden, sampleSubject, StagePayloadType, `"application/json"`},
		"truncated":          ref(golden[:len(golden)/2], StageStatement, "not a JSON object"),
		"trailing":           ref(append(append([]byte{}, golden...), ` {"x":1}`...), StageStatement, "trailing data"),
		"array":              ref([]byte(`[1]`), StageStatement, "not a JSON object"),
		"null":               ref([]byte(`null`), StageStatement, "null"),
		"empty":              ref(nil, StageStatement, "not a JSON object"),
		"wrong _type":        ref(bytes.Replace(golden, []byte(StatementV1), []byte("https://in-toto.io/Statement/v2"), 1), StageStatement, "_type is"),
		"case-folded _type":  ref(bytes.Replace(golden, []byte(`"_type":`), []byte(`"_TYPE":`), 1), StageStatement, "_type is missing"),
		"no subject":         ref(bytes.Replace(golden, []byte(`"subject":`), []byte(`"subjects":`), 1), StageStatement, "subject is missing"),
		"empty subject":      ref(mutate(t, func(d map[string]any) { d["subject"] = []any{} }), StageStatement, "subject is empty"),
		"subject no digest":  ref(mutate(t, func(d map[string]any) { d["subject"] = []any{map[string]any{"name": "x"}} }), StageStatement, "subject[0].digest"),
		"predicate null":     ref(bytes.Replace(golden, []byte(`"predicate":{`), []byte(`"predicate":null,"x":{`), 1), StageStatement, "predicate is not an object"),
		"duplicate key":      ref(bytes.Replace(golden, []byte(`"_type":`), []byte(`"_type":"x","_type":`), 1), StageStatement, `key "_type" appears twice`),
		"duplicate key v0.1": {PayloadType, bytes.Replace(cosign, []byte(`"predicateType":`), []byte(`"predicateType":"x","predicateType":`), 1), cosignSubject, StageStatement, "appears twice"},
		"duplicate nested":   {PayloadType, bytes.Replace(cosign, []byte(`"commitTime":`), []byte(`"commitTime":"2000-01-01T00:00:00Z","commitTime":`), 1), cosignSubject, StageStatement, `key "commitTime" appears twice`},
		"predicate type":     ref(mutate(t, func(d map[string]any) { d["predicateType"] = "https://spdx.dev/Document" }), StagePredicateType, "https://spdx.dev/Document"),
		"subject":            ref(golden, StageSubject, "belongs to another image"),
		"no buildDefinition": ref(mutate(t, func(d map[string]any) { delete(d["predicate"].(map[string]any), "buildDefinition") }), StageBuildType, "buildDefinition is missing"),
		"no buildType":       ref(mutate(t, func(d map[string]any) { delete(bdOf(d), "buildType") }), StageBuildType, "buildType is missing"),
		"build type":         ref(mutate(t, func(d map[string]any) { bdOf(d)["buildType"] = "https://example.com/other@v1" }), StageBuildType, "https://example.com/other@v1"),
		"unknown external":   ref(mutate(t, func(d map[string]any) { extOf(d)["cacheFrom"] = "x" }), StageExternalParameters, `"externalParameters.cacheFrom"`),
		"unknown in options": ref(mutate(t, func(d map[string]any) {
			extOf(d)["patches"].([]any)[0].(map[string]any)["options"].(map[string]any)["reverse"] = true
		}), StageExternalParameters, `"externalParameters.patches[0].options.reverse"`),
		"strict parse":        ref(mutate(t, func(d map[string]any) { delete(extOf(d), "patches") }), StageProvenance, `missing key "patches"`),
		"invocationID in v1":  ref(bytes.Replace(golden, []byte(`"invocationId"`), []byte(`"invocationID"`), 1), StageProvenance, "invocationID"),
		"both invocation ids": ref(bytes.Replace(v01(golden), []byte(`"invocationID":`), []byte(`"invocationId":"x","invocationID":`), 1), StageProvenance, "both invocationID and invocationId"),
		"unknown internal":    ref(mutate(t, func(d map[string]any) { bdOf(d)["internalParameters"].(map[string]any)["network"] = "host" }), StageProvenance, `unknown key "network"`),
	}
	// "subject": the golden statement, read for another image.
	c := cases["subject"]
	c.subject = digest.FromString("another image")
	cases["subject"] = c
	return cases
}

func TestRead(t *testing.T) {
	want, err := Parse(readFile(t, "testdata/golden-dockerfile.json"))
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range realStatements(t) {
		rd, err := Read(PayloadType, s.payload, s.subject)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if rd.Statement == nil || rd.Info == nil || rd.Info.Subject.Digest != s.subject.String() {
			t.Errorf("%s: reading %+v", name, rd)
		}
	}
	// cosign's re-encoding is read as the statement it re-encodes.
	rd, err := Read(PayloadType, v01(readFile(t, "testdata/golden-dockerfile.json")), sampleSubject)
	if err != nil || !reflect.DeepEqual(rd.Info, want) || rd.Statement.Type != StatementV01 {
		t.Fatalf("Read(v0.1) = %+v, %v", rd, err)
	}
	// What stock cosign v2 and v3 made of a predicate with patch options,
	// outcomes and nonHermetic keeps them.
	for _, name := range cosignStatements {
		b := readFile(t, name)
		st, _ := ReadStatement(b)
		rd, err := Read(PayloadType, b, digest.NewDigestFromEncoded(digest.SHA256, st.Subjects[0]["sha256"]))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		in := rd.Info
		if in.InvocationID != "test-invocation" || len(in.NonHermetic) != 2 || in.NonHermetic[0].Kind != AccessGit ||
			in.Patches[0].Options == nil || in.Patches[0].Options.Fuzz != 2 || in.Patches[1].Outcome != OutcomeNoop {
			t.Errorf("%s: read %+v", name, in)
		}
	}
}

func TestReadRefusals(t *testing.T) {
	for name, c := range readRefusals(t) {
		rd, err := Read(c.payloadType, c.payload, c.subject)
		var ve *errs.VerificationError
		if !errors.As(err, &ve) {
			t.Errorf("%s: want *errs.VerificationError, got %T %v", name, err, err)
			continue
		}
		if ve.Check != c.stage || !strings.Contains(ve.Reason, c.fragment) {
			t.Errorf("%s: refused at %s (%s), want %s with %q", name, ve.Check, ve.Reason, c.stage, c.fragment)
		}
		if rd == nil || rd.Info != nil {
			t.Errorf("%s: refused, but the reading has info", name)
		}
		if i := slices.Index(Stages(), c.stage); i > slices.Index(Stages(), StageStatement) && rd.Statement == nil {
			t.Errorf("%s: refused after the statement was read, but the reading has none", name)
		}
	}
}

// TestReadStatementForPublishing: what sign needs from a statement it
// publishes or lists: its predicate type and whether it names an image.
func TestReadStatementForPublishing(t *testing.T) {
	sign := []byte(`{"_type":"https://in-toto.io/Statement/v1","predicate":{},"predicateType":"https://sigstore.dev/cosign/sign/v1","subject":[{"annotations":{},"digest":{"sha256":"` + sampleSubject.Encoded() + `"}}]}`)
	st, err := ReadStatement(sign)
	if err != nil || st.PredicateType != "https://sigstore.dev/cosign/sign/v1" || !st.About(sampleSubject) || st.About(digest.FromString("x")) {
		t.Fatalf("ReadStatement(cosign sign statement) = %+v, %v", st, err)
	}
	if _, err := ReadStatement(bytes.Replace(sign, []byte(`"predicate":{}`), []byte(`"predicate":[]`), 1)); err == nil {
		t.Fatal("a predicate that is not an object is accepted")
	}
}

// TestUnknownParametersTable: the parameters the strict parser reads are
// exactly those UnknownParameters allows (one table).
func TestUnknownParametersTable(t *testing.T) {
	golden := readFile(t, "testdata/golden-dockerfile.json")
	st, err := ReadStatement(golden)
	if err != nil {
		t.Fatal(err)
	}
	bd, err := st.buildDefinition()
	if err != nil {
		t.Fatal(err)
	}
	if u := UnknownParameters(bd["externalParameters"], 0); len(u) != 0 {
		t.Fatalf("the golden statement has unknown parameters %v", u)
	}
	var many []byte
	many = append(many, '{')
	for i := range 30 {
		if i > 0 {
			many = append(many, ',')
		}
		many = append(many, []byte(`"k`+strings.Repeat("x", i)+`":1`)...)
	}
	many = append(many, '}')
	if u := UnknownParameters(many, 0); len(u) != 10 {
		t.Fatalf("UnknownParameters caps at 10: %d", len(u))
	}
}

func TestPatchApplication(t *testing.T) {
	in := sampleInput()
	b := marshalInput(t, in)
	info, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(info.Patches, in.Patches) {
		t.Fatalf("patches %+v, want %+v", info.Patches, in.Patches)
	}
	for _, c := range []struct {
		p    Patch
		ok   bool
		want string
	}{
		{Patch{Options: &PatchOptions{}, Outcome: OutcomeApplied}, true, ""},
		{Patch{Options: &PatchOptions{Offset: true, Fuzz: 2}, Outcome: OutcomeApplied}, false, "offset allowed, fuzz 2"},
		{Patch{Options: &PatchOptions{Optional: true}, Outcome: OutcomeNoop}, false, "optional, outcome noop"},
		{Patch{}, false, "its options are not recorded, its outcome is not recorded"},
	} {
		if ok, why := c.p.Strict(); ok != c.ok || why != c.want {
			t.Errorf("Strict(%+v) = %v %q, want %v %q", c.p, ok, why, c.ok, c.want)
		}
	}
	for name, f := range map[string]func(*Input){
		"noop not optional": func(in *Input) { in.Patches[0].Outcome = OutcomeNoop },
		"fuzz 4":            func(in *Input) { in.Patches[0].Options.Fuzz = 4 },
		"script offset":     func(in *Input) { in.Patches[1].Options.Offset = true },
		"outcome":           func(in *Input) { in.Patches[0].Outcome = "failed" },
	} {
		in := sampleInput()
		f(&in)
		if _, err := New(in); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	for name, b := range map[string][]byte{
		"noop not optional": mutate(t, func(d map[string]any) {
			extOf(d)["patches"].([]any)[0].(map[string]any)["outcome"] = "noop"
		}),
		"fuzz 1.5": mutate(t, func(d map[string]any) {
			extOf(d)["patches"].([]any)[0].(map[string]any)["options"].(map[string]any)["fuzz"] = 1.5
		}),
		"fuzz string": mutate(t, func(d map[string]any) {
			extOf(d)["patches"].([]any)[0].(map[string]any)["options"].(map[string]any)["fuzz"] = "1"
		}),
		"offset string": mutate(t, func(d map[string]any) {
			extOf(d)["patches"].([]any)[0].(map[string]any)["options"].(map[string]any)["offset"] = "yes"
		}),
		"options missing a key": mutate(t, func(d map[string]any) {
			delete(extOf(d)["patches"].([]any)[0].(map[string]any)["options"].(map[string]any), "optional")
		}),
		"outcome empty": mutate(t, func(d map[string]any) { extOf(d)["patches"].([]any)[0].(map[string]any)["outcome"] = "" }),
	} {
		if _, err := Parse(b); err == nil {
			t.Errorf("%s: Parse accepted it", name)
		}
	}
}

func TestNonHermetic(t *testing.T) {
	in := sampleInput()
	info, err := Parse(marshalInput(t, in))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(info.NonHermetic, in.NonHermetic) {
		t.Fatalf("nonHermetic %+v, want %+v", info.NonHermetic, in.NonHermetic)
	}
	// Recorded and empty is not the same as not recorded.
	in.NonHermetic = []Access{}
	b := marshalInput(t, in)
	if !bytes.Contains(b, []byte(`"nonHermetic":[]`)) {
		t.Fatalf("an empty record is left out: %s", b)
	}
	if info, err := Parse(b); err != nil || info.NonHermetic == nil || len(info.NonHermetic) != 0 {
		t.Fatalf("Parse(empty nonHermetic) = %+v, %v", info, err)
	}
	for name, f := range map[string]func(*Access){
		"network without step":  func(a *Access) { a.Kind, a.Step, a.URI, a.Network = AccessNetwork, "", "", NetworkHost },
		"network mode":          func(a *Access) { a.Kind, a.Step, a.URI, a.Network = AccessNetwork, "RUN x", "", "bridge" },
		"network with uri":      func(a *Access) { a.Kind, a.Step, a.Network = AccessNetwork, "RUN x", NetworkHost },
		"http without uri":      func(a *Access) { a.URI = "" },
		"http with credentials": func(a *Access) { a.URI = "https://u:p@example.com/x.tgz" },
		"http with a query":     func(a *Access) { a.URI = "https://example.com/x.tgz?token=t" },
		"http with network":     func(a *Access) { a.Network = NetworkHost },
		"kind":                  func(a *Access) { a.Kind = "ftp" },
		"two lines":             func(a *Access) { a.Step = "a\nb" },
	} {
		in := sampleInput()
		f(&in.NonHermetic[0])
		if _, err := New(in); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	for name, b := range map[string][]byte{
		"not a list": mutate(t, func(d map[string]any) {
			bdOf(d)["internalParameters"].(map[string]any)["nonHermetic"] = map[string]any{}
		}),
		"unknown key": mutate(t, func(d map[string]any) {
			bdOf(d)["internalParameters"].(map[string]any)["nonHermetic"].([]any)[0].(map[string]any)["digest"] = "x"
		}),
		"uri with credentials": mutate(t, func(d map[string]any) {
			bdOf(d)["internalParameters"].(map[string]any)["nonHermetic"].([]any)[0].(map[string]any)["uri"] = "https://tok@example.com/x"
		}),
		"empty step": mutate(t, func(d map[string]any) {
			bdOf(d)["internalParameters"].(map[string]any)["nonHermetic"].([]any)[1].(map[string]any)["step"] = ""
		}),
	} {
		if _, err := Parse(b); err == nil {
			t.Errorf("%s: Parse accepted it", name)
		}
	}
}

// TestOldStatementsReadable: a statement written before vmbuild recorded
// patch options, outcomes and network access still reads, with those
// left unrecorded (not "none"), and re-marshals to the same bytes.
func TestOldStatementsReadable(t *testing.T) {
	old := readFile(t, "testdata/old-dockerfile.json")
	info, err := Parse(old)
	if err != nil {
		t.Fatal(err)
	}
	if info.NonHermetic != nil || info.Patches[0].Options != nil || info.Patches[0].Outcome != "" {
		t.Fatalf("old statement read as %+v", info)
	}
	if ok, _ := info.Patches[0].Strict(); ok {
		t.Fatal("an unrecorded application reads as strict")
	}
	if again := marshalInput(t, Input(*info)); !bytes.Equal(again, old) {
		t.Fatalf("round trip changed the old statement:\n%s\n%s", again, old)
	}
}

// fuzzSeeds are FuzzParse's and FuzzRead's seeds: every real statement
// (vmbuild's, old and new, and cosign's, also as Parse reads them) and
// every negative fixture of the tests.
func fuzzSeeds(t testing.TB) [][]byte {
	var out [][]byte
	reals := realStatements(t)
	for _, name := range slices.Sorted(maps.Keys(reals)) {
		b := reals[name].payload
		out = append(out, b)
		if st, err := ReadStatement(b); err == nil {
			if v1, err := st.v1(); err == nil && !bytes.Equal(v1, b) {
				out = append(out, v1)
			}
		}
	}
	pr := parseRefusals(t)
	for _, name := range slices.Sorted(maps.Keys(pr)) {
		out = append(out, pr[name])
	}
	rr := readRefusals(t)
	for _, name := range slices.Sorted(maps.Keys(rr)) {
		out = append(out, rr[name].payload)
	}
	out = append(out, marshalInput(t, hermeticInput()))
	pk := packageRefusals(t)
	for _, name := range slices.Sorted(maps.Keys(pk)) {
		out = append(out, pk[name].data)
	}
	return out
}

// FuzzRead: Read never panics; a refusal is a VerificationError naming
// one of its stages; what it accepts is what Parse reads of the v1 form,
// about the subject asked for, and survives New/Marshal/Parse.
func FuzzRead(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		subject := sampleSubject
		if st, err := ReadStatement(payload); err == nil && len(st.Subjects) > 0 {
			if h, ok := st.Subjects[0]["sha256"]; ok {
				subject = digest.NewDigestFromEncoded(digest.SHA256, h)
			}
		}
		rd, err := Read(PayloadType, payload, subject)
		if err != nil {
			var ve *errs.VerificationError
			if !errors.As(err, &ve) || !slices.Contains(Stages(), ve.Check) {
				t.Fatalf("refusal is not a VerificationError of a stage: %T %v", err, err)
			}
			return
		}
		if rd.Info.Subject.Digest != subject.String() || !rd.Statement.About(subject) {
			t.Fatalf("accepted a statement about %s for %s", rd.Info.Subject.Digest, subject)
		}
		v1, err := rd.Statement.v1()
		if err != nil {
			t.Fatal(err)
		}
		info, err := Parse(v1)
		if err != nil || !reflect.DeepEqual(info, rd.Info) {
			t.Fatalf("Read and Parse disagree: %v", err)
		}
		again, err := Parse(marshalInput(t, Input(*info)))
		if err != nil || !reflect.DeepEqual(again, info) {
			t.Fatalf("round trip changed the info: %v", err)
		}
	})
}
