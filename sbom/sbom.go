// Package sbom writes the software bill of materials of a vmbuild image:
// an SPDX 2.3 JSON document listing every pinned download that went into
// it — the Debian base's .debs, the layers' npm packages and gems, the
// package managers themselves — each with its version, purl, download URL
// and sha256, built from the same lock as the provenance.
//
// SPDX rather than CycloneDX: SPDX 2.3 makes a per-package checksum and
// download location first-class fields (exactly what a pinned download
// is), carries purls as external references, is an ISO standard
// (ISO/IEC 5962:2021), and is what Debian-oriented image builders
// (apko, rules_distroless) emit; stock cosign verifies it with
// `verify-attestation --type spdxjson`.
//
// The document is deterministic: packages sorted, creation time the
// upstream commit's, namespace derived from the recipe and the image
// digest.
package sbom

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

// PredicateType is the in-toto predicate type of an SPDX document, as
// cosign's --type spdxjson spells it.
const PredicateType = "https://spdx.dev/Document"

// Package is one pinned download in the image.
type Package struct {
	Name    string
	Version string
	// Purl is the package URL (pkg:deb/debian/libc6@2.41-12?arch=amd64).
	Purl string
	// URL is where it was downloaded from; SHA256 its hex digest, or,
	// for a package fetched from git, GitCommit the commit (URL is then
	// the remote).
	URL       string
	SHA256    string
	GitCommit string
	// Where says where it went: "base", or the layer's name.
	Where string
}

// Input is what the document describes.
type Input struct {
	// Image is the image: its name (repository or recipe name) and
	// manifest digest ("sha256:…").
	ImageName   string
	ImageDigest string
	// Source is the upstream repository (sanitized) and commit; the
	// commit time is the document's creation time.
	SourceRepo string
	Commit     string
	CommitTime time.Time
	// Recipe names the recipe, for the namespace.
	Recipe string
	// Tool is "vmbuild-<version>".
	Tool     string
	Packages []Package
}

var idUnsafe = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

type checksum struct {
	Algorithm     string `json:"algorithm"`
	ChecksumValue string `json:"checksumValue"`
}

type externalRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

type spdxPackage struct {
	SPDXID                string        `json:"SPDXID"`
	Name                  string        `json:"name"`
	VersionInfo           string        `json:"versionInfo,omitempty"`
	DownloadLocation      string        `json:"downloadLocation"`
	FilesAnalyzed         bool          `json:"filesAnalyzed"`
	Checksums             []checksum    `json:"checksums,omitempty"`
	ExternalRefs          []externalRef `json:"externalRefs,omitempty"`
	PrimaryPackagePurpose string        `json:"primaryPackagePurpose,omitempty"`
	Supplier              string        `json:"supplier"`
	LicenseConcluded      string        `json:"licenseConcluded"`
	LicenseDeclared       string        `json:"licenseDeclared"`
	CopyrightText         string        `json:"copyrightText"`
	Comment               string        `json:"comment,omitempty"`
}

type relationship struct {
	SPDXElementID      string `json:"spdxElementId"`
	RelationshipType   string `json:"relationshipType"`
	RelatedSPDXElement string `json:"relatedSpdxElement"`
}

// Document is an SPDX 2.3 document, as this package writes it.
type Document struct {
	SPDXVersion       string `json:"spdxVersion"`
	DataLicense       string `json:"dataLicense"`
	SPDXID            string `json:"SPDXID"`
	Name              string `json:"name"`
	DocumentNamespace string `json:"documentNamespace"`
	CreationInfo      struct {
		Created  string   `json:"created"`
		Creators []string `json:"creators"`
	} `json:"creationInfo"`
	Packages      []spdxPackage  `json:"packages"`
	Relationships []relationship `json:"relationships"`
}

// New builds the document for in.
func New(in Input) (*Document, error) {
	if !strings.HasPrefix(in.ImageDigest, "sha256:") || len(in.ImageDigest) != 71 {
		return nil, fmt.Errorf("building SBOM: image digest %q is not sha256:<64 hex>", in.ImageDigest)
	}
	d := &Document{
		SPDXVersion: "SPDX-2.3",
		DataLicense: "CC0-1.0",
		SPDXID:      "SPDXRef-DOCUMENT",
		Name:        in.ImageName + "@" + in.ImageDigest,
		DocumentNamespace: fmt.Sprintf("https://github.com/vmbuild/vmbuild/spdx/%s/%s",
			idUnsafe.ReplaceAllString(in.Recipe, "-"), strings.TrimPrefix(in.ImageDigest, "sha256:")),
	}
	d.CreationInfo.Created = in.CommitTime.UTC().Format(time.RFC3339)
	tool := in.Tool
	if tool == "" {
		tool = "vmbuild"
	}
	d.CreationInfo.Creators = []string{"Tool: " + tool}
	img := spdxPackage{
		SPDXID:                "SPDXRef-Image",
		Name:                  in.ImageName,
		VersionInfo:           in.ImageDigest,
		DownloadLocation:      "NOASSERTION",
		PrimaryPackagePurpose: "CONTAINER",
		Checksums:             []checksum{{"SHA256", strings.TrimPrefix(in.ImageDigest, "sha256:")}},
		Supplier:              "NOASSERTION", LicenseConcluded: "NOASSERTION", LicenseDeclared: "NOASSERTION", CopyrightText: "NOASSERTION",
	}
	src := spdxPackage{
		SPDXID:                "SPDXRef-Source",
		Name:                  in.SourceRepo,
		VersionInfo:           in.Commit,
		DownloadLocation:      "git+" + strings.TrimPrefix(in.SourceRepo, "git+") + "@" + in.Commit,
		PrimaryPackagePurpose: "SOURCE",
		Supplier:              "NOASSERTION", LicenseConcluded: "NOASSERTION", LicenseDeclared: "NOASSERTION", CopyrightText: "NOASSERTION",
	}
	d.Packages = []spdxPackage{img, src}
	d.Relationships = []relationship{
		{"SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image"},
		{"SPDXRef-Image", "CONTAINS", "SPDXRef-Source"},
	}
	pkgs := append([]Package(nil), in.Packages...)
	sort.Slice(pkgs, func(i, j int) bool {
		if pkgs[i].Purl != pkgs[j].Purl {
			return pkgs[i].Purl < pkgs[j].Purl
		}
		return pkgs[i].Where < pkgs[j].Where
	})
	seen := map[string]int{}
	for _, p := range pkgs {
		if p.Name == "" || p.Purl == "" || (len(p.SHA256) != 64 && (p.GitCommit == "" || p.URL == "")) {
			return nil, fmt.Errorf("building SBOM: package %q (%s) lacks a name, purl or sha256", p.Name, p.Purl)
		}
		id := "SPDXRef-Package-" + idUnsafe.ReplaceAllString(strings.TrimPrefix(p.Purl, "pkg:"), "-")
		if n := seen[id]; n > 0 {
			id = fmt.Sprintf("%s-%d", id, n+1)
		}
		seen[id]++
		loc := p.URL
		var sums []checksum
		switch {
		case len(p.SHA256) == 64:
			sums = []checksum{{"SHA256", p.SHA256}}
		default:
			// SPDX's VCS locator: git+<remote>@<revision>.
			loc = "git+" + strings.TrimPrefix(p.URL, "git+") + "@" + p.GitCommit
		}
		if loc == "" {
			loc = "NOASSERTION"
		}
		d.Packages = append(d.Packages, spdxPackage{
			SPDXID:           id,
			Name:             p.Name,
			VersionInfo:      p.Version,
			DownloadLocation: loc,
			Checksums:        sums,
			ExternalRefs:     []externalRef{{"PACKAGE-MANAGER", "purl", p.Purl}},
			Supplier:         "NOASSERTION", LicenseConcluded: "NOASSERTION", LicenseDeclared: "NOASSERTION", CopyrightText: "NOASSERTION",
			Comment: "installed in " + p.Where,
		})
		d.Relationships = append(d.Relationships, relationship{"SPDXRef-Image", "CONTAINS", id})
	}
	return d, nil
}

// Marshal is the document's canonical JSON: keys in a fixed order, no
// insignificant white space, no HTML escaping.
func (d *Document) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		return nil, fmt.Errorf("encoding SBOM: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Statement wraps the document in an in-toto v1 statement about the
// image, as cosign attests an SPDX predicate.
func Statement(d *Document, subjectName, subjectDigest string) ([]byte, error) {
	doc, err := d.Marshal()
	if err != nil {
		return nil, err
	}
	st := map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": subjectName, "digest": map[string]string{"sha256": strings.TrimPrefix(subjectDigest, "sha256:")}}},
		"predicateType": PredicateType,
		"predicate":     json.RawMessage(doc),
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(st); err != nil {
		return nil, fmt.Errorf("encoding SBOM statement: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
