package sbom

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func input(pkgs ...Package) Input {
	return Input{
		ImageName: "registry.example/streaming", ImageDigest: "sha256:" + strings.Repeat("a", 64),
		SourceRepo: "https://github.com/mastodon/mastodon.git", Commit: strings.Repeat("b", 40),
		CommitTime: time.Date(2026, 8, 21, 13, 50, 27, 0, time.UTC), Recipe: "mastodon-streaming", Tool: "vmbuild-test",
		Packages: pkgs,
	}
}

var (
	libc = Package{Name: "libc6", Version: "2.41-12", Purl: "pkg:deb/debian/libc6@2.41-12?arch=amd64", URL: "https://deb.debian.org/debian/pool/main/g/glibc/libc6_2.41-12_amd64.deb", SHA256: strings.Repeat("1", 64), Where: "base"}
	ms   = Package{Name: "ms", Version: "2.1.3", Purl: "pkg:npm/ms@2.1.3", URL: "https://registry.npmjs.org/ms/-/ms-2.1.3.tgz", SHA256: strings.Repeat("2", 64), Where: "layer node-modules"}
)

func TestDeterministicAndComplete(t *testing.T) {
	a, err := New(input(libc, ms))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := New(input(ms, libc))
	ab, _ := a.Marshal()
	bb, _ := b.Marshal()
	if string(ab) != string(bb) {
		t.Fatal("package order changes the document")
	}
	var doc map[string]any
	if err := json.Unmarshal(ab, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"spdxVersion", "dataLicense", "SPDXID", "name", "documentNamespace", "creationInfo", "packages", "relationships"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("SPDX 2.3 requires %s", k)
		}
	}
	if doc["spdxVersion"] != "SPDX-2.3" || doc["creationInfo"].(map[string]any)["created"] != "2026-08-21T13:50:27Z" {
		t.Errorf("header %v", doc)
	}
	for _, want := range []string{`"referenceLocator":"pkg:deb/debian/libc6@2.41-12?arch=amd64"`, `"checksumValue":"` + strings.Repeat("2", 64) + `"`,
		`"downloadLocation":"https://registry.npmjs.org/ms/-/ms-2.1.3.tgz"`, `"relationshipType":"DESCRIBES"`} {
		if !strings.Contains(string(ab), want) {
			t.Errorf("document lacks %s", want)
		}
	}
	st, err := Statement(a, "registry.example/streaming", "sha256:"+strings.Repeat("a", 64))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(st), `"predicateType":"https://spdx.dev/Document"`) || !strings.Contains(string(st), `"_type":"https://in-toto.io/Statement/v1"`) {
		t.Errorf("statement %s", st)
	}
	if _, err := New(input(Package{Name: "x", Purl: "pkg:npm/x@1"})); err == nil {
		t.Error("a package without sha256 was accepted")
	}
}

// TestGitPackage: a package pinned by git commit has no file checksum; its
// download location is SPDX's VCS locator at that commit.
func TestGitPackage(t *testing.T) {
	d, err := New(input(Package{Name: "rails-html", Version: "1.0.0", Purl: "pkg:gem/rails-html@1.0.0", URL: "https://git.example/rails-html.git", GitCommit: strings.Repeat("c", 40), Where: "layer gems"}))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := d.Marshal()
	if !strings.Contains(string(b), `"downloadLocation":"git+https://git.example/rails-html.git@`+strings.Repeat("c", 40)+`"`) {
		t.Errorf("git package: %s", b)
	}
	if _, err := New(input(Package{Name: "x", Purl: "pkg:gem/x@1", GitCommit: strings.Repeat("c", 40)})); err == nil {
		t.Error("a git package without a remote was accepted")
	}
}
