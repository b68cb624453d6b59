package provenance

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmbuild/vmbuild/errs"
)

var update = flag.Bool("update", false, "rewrite golden files")

func marshalInput(t testing.TB, in Input) []byte {
	t.Helper()
	st, err := New(in)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	b, err := Marshal(st)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	return b
}

func TestGolden(t *testing.T) {
	got := marshalInput(t, sampleInput())
	const path = "testdata/golden-dockerfile.json"
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("statement differs from %s:\n got %s\nwant %s", path, got, want)
	}
	// Deterministic: the same input gives the same bytes every time (maps,
	// protojson's randomized spacing).
	for i := 0; i < 20; i++ {
		if again := marshalInput(t, sampleInput()); !bytes.Equal(again, got) {
			t.Fatal("Marshal is not deterministic")
		}
	}
	// Layout checks that do not depend on the golden file.
	var doc map[string]any
	if err := json.Unmarshal(got, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["predicateType"] != "https://slsa.dev/provenance/v1" || doc["_type"] != "https://in-toto.io/Statement/v1" {
		t.Fatalf("types: %v %v", doc["_type"], doc["predicateType"])
	}
	bd := doc["predicate"].(map[string]any)["buildDefinition"].(map[string]any)
	if bd["buildType"] != BuildType {
		t.Fatalf("buildType %v", bd["buildType"])
	}
	ext := bd["externalParameters"].(map[string]any)
	if len(ext) != 4 {
		t.Fatalf("externalParameters keys: %v", ext)
	}
	if !bytes.Contains(got, []byte(`"<html>":"a&b"`)) {
		t.Fatal("HTML characters are escaped; want them verbatim")
	}
}

func TestCredentialsNeverRecorded(t *testing.T) {
	if got := GitURI("git@github.com:x/y.git", "main"); got != "git+ssh://git@github.com/x/y.git@main" {
		t.Errorf("GitURI(scp) = %q", got)
	}
	if got := GitURI("git://h/x.git", "v1"); got != "git://h/x.git@v1" {
		t.Errorf("GitURI(git://) = %q", got)
	}

	// Whole statements: no secret survives, whatever the remote.
	secrets := []string{"ghp_secret", "tok", "hunter2", "sshpass", "zzz", "pw@"}
	for _, u := range []string{
		"https://user:ghp_secret@github.com/x/y.git",
		"https://oauth2:tok@gitlab.example.com/g/p.git?private_token=tok",
		"ssh://git:sshpass@github.com/x/y.git",
		"git://user:pw@127.0.0.1/x.git#zzz",
	} {
		in := sampleInput()
		in.Upstream.URL = u
		in.Dockerfile.Args = map[string]string{"PIP_INDEX": "--index-url https://me:hunter2@pypi.example/simple?token=zzz"}
		b := marshalInput(t, in)
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("statement for %q contains %q:\n%s", u, s, b)
			}
		}
		info, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		if strings.Contains(info.Upstream.URL, "@") && !strings.HasPrefix(info.Upstream.URL, "ssh://git@") {
			t.Errorf("parsed URL keeps user info: %q", info.Upstream.URL)
		}
	}
}

func TestParseRoundTrip(t *testing.T) {
	golden, err := os.ReadFile("testdata/golden-dockerfile.json")
	if err != nil {
		t.Fatal(err)
	}
	info, err := Parse(golden)
	if err != nil {
		t.Fatalf("Parse(golden): %v", err)
	}
	in := sampleInput()
	want := Info(in)
	want.Upstream.URL = "https://github.com/acme/app.git"
	want.Upstream.CommitTime = in.Upstream.CommitTime.UTC()
	want.Dockerfile = &Dockerfile{Path: "Dockerfile", Target: "runtime", Args: map[string]string{"RUBY_VERSION": "3.3", "MIRROR": "https://mirror.example/x?arch=amd64", "<html>": "a&b"}}
	want.Base.Ref = "docker.io/library/ruby:3.3-slim"
	want.Frontend = &Image{Ref: "docker.io/docker/dockerfile:1.7", Digest: in.Frontend.Digest}
	want.BuilderID = DefaultBuilderID
	if !reflect.DeepEqual(*info, want) {
		t.Fatalf("Parse(golden) =\n%+v\nwant\n%+v", *info, want)
	}
	// New(Parse(x)) == x: a parsed statement re-marshals to the same bytes.
	if again := marshalInput(t, Input(*info)); !bytes.Equal(again, golden) {
		t.Fatalf("round trip changed the statement:\n%s\n%s", again, golden)
	}

	// Native mode, no frontend, no patches, no times, another registry.
	n := Input{
		Subject:         Subject{Name: "ghcr.io/acme/app", Digest: "sha256:" + strings.Repeat("1", 64)},
		Recipe:          Recipe{Name: "n", Path: "n.yaml", SHA256: strings.Repeat("2", 64)},
		Upstream:        Upstream{URL: "git://127.0.0.1/n.git", Commit: strings.Repeat("3", 40)},
		Native:          &Native{Layers: []string{"deps", "app"}},
		BuildKitVersion: "v0.34.2",
		LLBDigest:       "sha256:" + strings.Repeat("4", 64),
		Base:            Image{Ref: "127.0.0.1:5000/base/busybox@sha256:" + strings.Repeat("5", 64), Digest: "sha256:" + strings.Repeat("5", 64)},
		BuilderID:       "https://ci.example/runner@v2",
	}
	b := marshalInput(t, n)
	if !bytes.Contains(b, []byte(`"uri":"pkg:docker/base/busybox@sha256%3A5555`)) || !bytes.Contains(b, []byte(`?repository_url=127.0.0.1:5000"`)) {
		t.Fatalf("base purl: %s", b)
	}
	if !bytes.Contains(b, []byte(`"build":{"layers":["deps","app"],"mode":"native"}`)) {
		t.Fatalf("native build: %s", b)
	}
	ni, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(native): %v", err)
	}
	wantN := Info(n)
	wantN.Patches = []Patch{}
	if !reflect.DeepEqual(*ni, wantN) {
		t.Fatalf("Parse(native) =\n%+v\nwant\n%+v", *ni, wantN)
	}
}

// mutate applies f to the golden statement as generic JSON.
func mutate(t testing.TB, f func(doc map[string]any)) []byte {
	t.Helper()
	golden, err := os.ReadFile("testdata/golden-dockerfile.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(golden, &doc); err != nil {
		t.Fatal(err)
	}
	f(doc)
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func bdOf(doc map[string]any) map[string]any {
	return doc["predicate"].(map[string]any)["buildDefinition"].(map[string]any)
}
func extOf(doc map[string]any) map[string]any {
	return bdOf(doc)["externalParameters"].(map[string]any)
}
func depsOf(doc map[string]any) []any { return bdOf(doc)["resolvedDependencies"].([]any) }

// parseRefusals are statements Parse must refuse (also FuzzParse's
// seeds).
func parseRefusals(t testing.TB) map[string][]byte {
	golden, _ := os.ReadFile("testdata/golden-dockerfile.json")
	return map[string][]byte{
		"truncated":              golden[:len(golden)/2],
		"empty":                  nil,
		"not json":               []byte("hello"),
		"json array":             []byte("[]"),
		"unknown ext key":        mutate(t, func(d map[string]any) { extOf(d)["cacheFrom"] = "x" }),
		"unknown ext nested key": mutate(t, func(d map[string]any) { extOf(d)["recipe"].(map[string]any)["extra"] = "x" }),
		"ext key case":           mutate(t, func(d map[string]any) { e := extOf(d); e["Recipe"] = e["recipe"]; delete(e, "recipe") }),
		"missing patches":        mutate(t, func(d map[string]any) { delete(extOf(d), "patches") }),
		"unknown internal key":   mutate(t, func(d map[string]any) { bdOf(d)["internalParameters"].(map[string]any)["x"] = "y" }),
		"wrong predicateType":    mutate(t, func(d map[string]any) { d["predicateType"] = "https://slsa.dev/provenance/v0.2" }),
		"wrong buildType":        mutate(t, func(d map[string]any) { bdOf(d)["buildType"] = "https://mobyproject.org/buildkit@v1" }),
		"wrong _type":            mutate(t, func(d map[string]any) { d["_type"] = "https://in-toto.io/Statement/v0.1" }),
		"unknown top-level":      mutate(t, func(d map[string]any) { d["extra"] = 1 }),
		"unknown in predicate":   mutate(t, func(d map[string]any) { d["predicate"].(map[string]any)["extra"] = 1 }),
		"two subjects": mutate(t, func(d map[string]any) {
			s := d["subject"].([]any)
			d["subject"] = append(s, s[0])
		}),
		"subject sha512": mutate(t, func(d map[string]any) {
			d["subject"].([]any)[0].(map[string]any)["digest"] = map[string]any{"sha512": strings.Repeat("a", 128)}
		}),
		"bad mode": mutate(t, func(d map[string]any) { extOf(d)["build"].(map[string]any)["mode"] = "magic" }),
		"dockerfile with layers": mutate(t, func(d map[string]any) {
			extOf(d)["build"].(map[string]any)["layers"] = []any{"x"}
		}),
		"arg not a string": mutate(t, func(d map[string]any) {
			extOf(d)["build"].(map[string]any)["dockerfile"].(map[string]any)["args"].(map[string]any)["N"] = 3
		}),
		"bad patch kind": mutate(t, func(d map[string]any) {
			extOf(d)["patches"].([]any)[0].(map[string]any)["kind"] = "sed"
		}),
		"patch digest mismatch": mutate(t, func(d map[string]any) {
			depsOf(d)[3].(map[string]any)["digest"] = map[string]any{"sha256": strings.Repeat("9", 64)}
		}),
		"patch dependency missing": mutate(t, func(d map[string]any) {
			bdOf(d)["resolvedDependencies"] = depsOf(d)[:4]
		}),
		"source uri mismatch": mutate(t, func(d map[string]any) {
			depsOf(d)[0].(map[string]any)["uri"] = "git+https://evil.example/app.git@refs/tags/v1.2.3"
		}),
		"credentials in repository": mutate(t, func(d map[string]any) {
			extOf(d)["upstream"].(map[string]any)["repository"] = "https://u:p@github.com/acme/app.git"
		}),
		"base not purl": mutate(t, func(d map[string]any) {
			depsOf(d)[1].(map[string]any)["uri"] = "docker.io/library/ruby:3.3-slim"
		}),
		"no builder": mutate(t, func(d map[string]any) {
			d["predicate"].(map[string]any)["runDetails"].(map[string]any)["builder"] = map[string]any{}
		}),
		"finished before started": mutate(t, func(d map[string]any) {
			d["predicate"].(map[string]any)["runDetails"].(map[string]any)["metadata"].(map[string]any)["finishedOn"] = "2000-01-01T00:00:00Z"
		}),
	}
}

func TestParseRefusals(t *testing.T) {
	cases := parseRefusals(t)
	for name, data := range cases {
		info, err := Parse(data)
		if err == nil {
			t.Errorf("%s: accepted: %+v", name, info)
			continue
		}
		var ve *errs.VerificationError
		if !errors.As(err, &ve) || ve.Check != "provenance" {
			t.Errorf("%s: want *errs.VerificationError, got %T %v", name, err, err)
		}
	}
	// The unknown key is named in the error.
	_, err := Parse(cases["unknown ext key"])
	if err == nil || !strings.Contains(err.Error(), `unknown key "cacheFrom"`) {
		t.Errorf("unknown key error does not name the key: %v", err)
	}
}

func TestNewValidation(t *testing.T) {
	for name, f := range map[string]func(*Input){
		"no subject digest":  func(in *Input) { in.Subject.Digest = "" },
		"subject digest hex": func(in *Input) { in.Subject.Digest = "sha256:XYZ" },
		"recipe sha":         func(in *Input) { in.Recipe.SHA256 = "abc" },
		"no upstream":        func(in *Input) { in.Upstream.URL = "" },
		"commit":             func(in *Input) { in.Upstream.Commit = "main" },
		"patch kind":         func(in *Input) { in.Patches[0].Kind = "sed" },
		"dup patch":          func(in *Input) { in.Patches[1].Name = in.Patches[0].Name },
		"two modes":          func(in *Input) { in.Native = &Native{Layers: []string{"a"}} },
		"no mode":            func(in *Input) { in.Dockerfile = nil },
		"llb digest":         func(in *Input) { in.LLBDigest = "nope" },
		"base ref":           func(in *Input) { in.Base.Ref = "Not A Ref" },
		"frontend digest":    func(in *Input) { in.Frontend.Digest = "sha256:1" },
		"times":              func(in *Input) { in.FinishedOn = in.StartedOn.Add(-time.Second) },
		"buildkit version":   func(in *Input) { in.BuildKitVersion = "" },
	} {
		in := sampleInput()
		f(&in)
		if _, err := New(in); err == nil {
			t.Errorf("%s: New accepted invalid input", name)
		}
	}
}

func TestPURL(t *testing.T) {
	for ref, want := range map[string]string{
		"alpine":        "pkg:docker/library/alpine@latest",
		"alpine:3.20":   "pkg:docker/library/alpine@3.20",
		"ghcr.io/o/r:1": "pkg:docker/o/r@1?repository_url=ghcr.io",
		"localhost:5000/x@sha256:" + strings.Repeat("a", 64): "pkg:docker/x@sha256%3A" + strings.Repeat("a", 64) + "?repository_url=localhost:5000",
	} {
		got, err := imagePURL(ref)
		if err != nil || got != want {
			t.Errorf("imagePURL(%q) = %q, %v; want %q", ref, got, err, want)
			continue
		}
		back, err := refFromPURL(got)
		if err != nil {
			t.Errorf("refFromPURL(%q): %v", got, err)
		}
		if again, _ := imagePURL(back); again != got {
			t.Errorf("purl round trip %q -> %q -> %q", got, back, again)
		}
	}
}

// FuzzParse: Parse never panics, refuses with a VerificationError, and
// anything it accepts survives New/Marshal/Parse unchanged.
func FuzzParse(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := Parse(data)
		if err != nil {
			var ve *errs.VerificationError
			if !errors.As(err, &ve) {
				t.Fatalf("refusal is not a VerificationError: %T %v", err, err)
			}
			return
		}
		st, err := New(Input(*info))
		if err != nil {
			t.Fatalf("accepted statement does not rebuild: %v", err)
		}
		b, err := Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(b)
		if err != nil {
			t.Fatalf("re-marshalled statement does not parse: %v", err)
		}
		if !reflect.DeepEqual(again, info) {
			t.Fatalf("round trip changed the info:\n%+v\n%+v", info, again)
		}
	})
}

// TestDockerfileImagesAndLayoutBase: a dockerfile build without a base but
// with the images its Dockerfile pulled, and a native build on an
// oci-layout base, both round trip.
func TestDockerfileImagesAndLayoutBase(t *testing.T) {
	d := Input{
		Subject:         Subject{Name: "127.0.0.1:5000/m", Digest: "sha256:" + strings.Repeat("1", 64)},
		Recipe:          Recipe{Name: "m", Path: "m.yaml", SHA256: strings.Repeat("2", 64)},
		Upstream:        Upstream{URL: "https://github.com/mastodon/mastodon.git", Ref: "main", Commit: strings.Repeat("3", 40)},
		Patches:         []Patch{{Name: "p.patch", Kind: PatchKindDiff, SHA256: strings.Repeat("6", 64)}},
		Dockerfile:      &Dockerfile{Path: "Dockerfile", Target: "mastodon", Args: map[string]string{}},
		BuildKitVersion: "v0.34.2",
		LLBDigest:       "sha256:" + strings.Repeat("4", 64),
		Frontend:        &Image{Ref: "docker.io/docker/dockerfile:1.18", Digest: "sha256:" + strings.Repeat("7", 64)},
		Images: []Image{
			{Ref: "docker.io/library/node:22-bookworm-slim", Digest: "sha256:" + strings.Repeat("8", 64)},
			{Ref: "docker.io/library/ruby:3.4-slim-bookworm", Digest: "sha256:" + strings.Repeat("9", 64)},
		},
	}
	b := marshalInput(t, d)
	got, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, b)
	}
	if got.Base.Ref != "" || len(got.Images) != 2 || got.Images[1].Ref != d.Images[1].Ref || got.Frontend == nil || len(got.Patches) != 1 {
		t.Fatalf("parsed %+v", got)
	}
	if again := marshalInput(t, Input(*got)); !bytes.Equal(again, b) {
		t.Fatalf("round trip changed the statement")
	}

	n := d
	n.Dockerfile, n.Frontend, n.Images = nil, nil, nil
	n.Native = &Native{Layers: []string{"bundle"}}
	n.Base = Image{Ref: "oci-layout://./base:latest", Digest: "sha256:" + strings.Repeat("5", 64)}
	b = marshalInput(t, n)
	if !bytes.Contains(b, []byte(`"uri":"oci-layout://./base:latest"`)) {
		t.Fatalf("layout base: %s", b)
	}
	got, err = Parse(b)
	if err != nil || got.Base != n.Base {
		t.Fatalf("Parse(layout base) = %+v, %v", got, err)
	}
	// A native build must name its base.
	n.Base = Image{}
	if _, err := New(n); err == nil {
		t.Fatal("native build without a base accepted")
	}
}
