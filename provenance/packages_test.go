package provenance

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// hermeticInput is a native build on a Debian base whose layer installs
// pinned npm packages with a pinned Yarn, and one git-pinned gem.
func hermeticInput() Input {
	return Input{
		Subject:  Subject{Name: "127.0.0.1:5000/mastodon/streaming", Digest: "sha256:" + strings.Repeat("1", 64)},
		Recipe:   Recipe{Name: "streaming", Path: "recipes/mastodon/streaming-hermetic.yaml", SHA256: strings.Repeat("2", 64)},
		Upstream: Upstream{URL: "git://127.0.0.1/mastodon.git", Ref: "main", Commit: strings.Repeat("3", 40)},
		Patches:  []Patch{},
		Native:   &Native{Layers: []string{"node-modules", "gems", "app"}},
		Debian: &DebianBase{
			Mirror: "https://deb.debian.org/debian", Suite: "sid", Components: []string{"main"}, Architecture: "amd64",
			InRelease: "https://deb.debian.org/debian/dists/sid/InRelease", InReleaseSHA256: strings.Repeat("4", 64),
			SignedBy: "4CB50190207B4758A3F73A796ED0E7B82643E131", KeyringSHA256: strings.Repeat("5", 64), AllowExpired: true,
		},
		Packages: []Package{
			{Purl: "pkg:deb/debian/libc6@2.41-12?arch=amd64", URL: "https://deb.debian.org/debian/pool/main/g/glibc/libc6_2.41-12_amd64.deb", SHA256: strings.Repeat("6", 64)},
			{Purl: "pkg:deb/debian/nodejs@24.4.1%2Bdfsg-1?arch=amd64", URL: "https://deb.debian.org/debian/pool/main/n/nodejs/nodejs_24.4.1+dfsg-1_amd64.deb", SHA256: strings.Repeat("7", 64)},
			{Purl: "pkg:npm/%40yarnpkg/cli-dist@4.18.0", URL: "https://registry.npmjs.org/@yarnpkg/cli-dist/-/cli-dist-4.18.0.tgz", SHA256: strings.Repeat("8", 64), Layer: "node-modules", Tool: true},
			{Purl: "pkg:npm/ms@2.1.3", URL: "https://registry.npmjs.org/ms/-/ms-2.1.3.tgz", SHA256: strings.Repeat("9", 64), Layer: "node-modules"},
			{Purl: "pkg:gem/rails-html@1.0.0", URL: "git://127.0.0.1/rails-html.git", GitCommit: strings.Repeat("a", 40), Layer: "gems"},
		},
		NonHermetic:     []Access{},
		BuildKitVersion: "v0.34.2",
		LLBDigest:       "sha256:" + strings.Repeat("b", 64),
	}
}

// TestPackagesRoundTrip: a Debian base and pinned packages are recorded
// (the index with its signer, every package with its purl, URL and
// digest, and the layer that installs it) and read back as written.
func TestPackagesRoundTrip(t *testing.T) {
	in := hermeticInput()
	b := marshalInput(t, in)
	for _, want := range []string{
		`"base":{"debian":{"allowExpired":true,"architecture":"amd64","components":["main"],"keyringSha256":"5555`,
		`{"annotations":{"signedBy":"4CB50190207B4758A3F73A796ED0E7B82643E131"},"digest":{"sha256":"4444`,
		`{"digest":{"sha256":"6666666666666666666666666666666666666666666666666666666666666666"},"downloadLocation":"https://deb.debian.org/debian/pool/main/g/glibc/libc6_2.41-12_amd64.deb","name":"base-package","uri":"pkg:deb/debian/libc6@2.41-12?arch=amd64"}`,
		`"name":"tool","uri":"pkg:npm/%40yarnpkg/cli-dist@4.18.0"`,
		`{"annotations":{"layer":"node-modules"},"digest":{"sha256":"9999`,
		`"digest":{"gitCommit":"aaaa`,
	} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("statement lacks %s:\n%s", want, b)
		}
	}
	info, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := Info(in)
	want.BuilderID = DefaultBuilderID
	if !reflect.DeepEqual(*info, want) {
		t.Fatalf("Parse =\n%+v\nwant\n%+v", *info, want)
	}
	if again := marshalInput(t, Input(*info)); !bytes.Equal(again, b) {
		t.Fatal("round trip changed the statement")
	}
}

func TestPackagesValidation(t *testing.T) {
	for name, f := range map[string]func(*Input){
		"base image and debian":  func(in *Input) { in.Base = Image{Ref: "busybox:1", Digest: "sha256:" + strings.Repeat("c", 64)} },
		"mirror credentials":     func(in *Input) { in.Debian.Mirror = "https://u:p@deb.example/debian" },
		"signer not fingerprint": func(in *Input) { in.Debian.SignedBy = "6ED0E7B82643E131" },
		"no components":          func(in *Input) { in.Debian.Components = nil },
		"purl":                   func(in *Input) { in.Packages[0].Purl = "libc6" },
		"no digest":              func(in *Input) { in.Packages[3].SHA256 = "" },
		"two digests":            func(in *Input) { in.Packages[3].GitCommit = strings.Repeat("d", 40) },
		"unknown layer":          func(in *Input) { in.Packages[3].Layer = "nope" },
		"base package no debian": func(in *Input) {
			in.Debian = nil
			in.Base = Image{Ref: "busybox:1", Digest: "sha256:" + strings.Repeat("c", 64)}
		},
		"url query": func(in *Input) { in.Packages[3].URL = "https://registry.npmjs.org/ms/-/ms-2.1.3.tgz?token=x" },
	} {
		in := hermeticInput()
		f(&in)
		if _, err := New(in); err == nil {
			t.Errorf("%s: New accepted invalid input", name)
		}
	}
}

type refusal struct {
	data []byte
	want string
}

// packageRefusals are statements with a Debian base and packages, each
// broken in one way (also FuzzParse seeds).
func packageRefusals(t testing.TB) map[string]refusal {
	good := marshalInput(t, hermeticInput())
	edit := func(f func(doc map[string]any)) []byte {
		var doc map[string]any
		if err := json.Unmarshal(good, &doc); err != nil {
			t.Fatal(err)
		}
		f(doc)
		b, _ := json.Marshal(doc)
		return b
	}
	dep := func(doc map[string]any, i int) map[string]any { return depsOf(doc)[i].(map[string]any) }
	return map[string]refusal{
		"index without base": {edit(func(d map[string]any) { delete(extOf(d), "base") }), `a "debian-index" entry, but externalParameters has no base.debian`},
		"base without index": {edit(func(d map[string]any) {
			ds := depsOf(d)
			bdOf(d)["resolvedDependencies"] = append(ds[:1:1], ds[2:]...)
		}), `want the "debian-index" entry`},
		"unknown base key":    {edit(func(d map[string]any) { extOf(d)["base"].(map[string]any)["debian"].(map[string]any)["x"] = 1 }), `unknown key "x"`},
		"signer missing":      {edit(func(d map[string]any) { delete(dep(d, 1), "annotations") }), "annotations: want an object"},
		"package bad purl":    {edit(func(d map[string]any) { dep(d, 2)["uri"] = "libc6" }), "is not a package URL"},
		"package sha512":      {edit(func(d map[string]any) { dep(d, 5)["digest"] = map[string]any{"sha512": strings.Repeat("e", 128)} }), "digest"},
		"layer not built":     {edit(func(d map[string]any) { dep(d, 5)["annotations"] = map[string]any{"layer": "other"} }), `"other" is not one of externalParameters.build.layers`},
		"base pkg with layer": {edit(func(d map[string]any) { dep(d, 2)["annotations"] = map[string]any{"layer": "app"} }), "unexpected annotations"},
		"extra annotation":    {edit(func(d map[string]any) { dep(d, 5)["annotations"] = map[string]any{"layer": "node-modules", "x": "y"} }), `unknown key "x"`},
		"credentials in url":  {edit(func(d map[string]any) { dep(d, 5)["downloadLocation"] = "https://u:p@registry.npmjs.org/ms.tgz" }), "downloadLocation: not a sanitized URL"},
	}
}

func TestPackagesParseRefusals(t *testing.T) {
	for name, c := range packageRefusals(t) {
		_, err := Parse(c.data)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}
