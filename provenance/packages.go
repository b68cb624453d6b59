package provenance

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	intoto "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/vmbuild/vmbuild/internal/redact"
)

// Pinned packages: a base assembled from Debian packages and the layers'
// dependency sets. In a statement they are
//
//   - externalParameters.base.debian: the archive the recipe names (mirror,
//     suite, components, architecture), the keyring's sha256, and whether
//     an expired index was accepted;
//   - resolvedDependencies "debian-index": the signed InRelease (uri, sha256,
//     annotation signedBy: the fingerprint of the key that signed it);
//   - resolvedDependencies "base-package": each .deb of the base (uri: its
//     purl, downloadLocation, sha256);
//   - resolvedDependencies "package" and "tool": each package a layer
//     installs and the package manager it installs them with (uri: purl,
//     downloadLocation, sha256 or, fetched from git, gitCommit; annotation
//     layer).
//
// Statements written before vmbuild pinned packages have none of these.

// Resolved dependency names of pinned packages.
const (
	// DepDebianIndex is the signed archive index a Debian-package base was
	// resolved from.
	DepDebianIndex = "debian-index"
	// DepBasePackage is one .deb of a Debian-package base.
	DepBasePackage = "base-package"
	// DepPackage is one package a layer installs (its `deps:`).
	DepPackage = "package"
	// DepTool is the package manager a layer installs its packages with,
	// pinned like a package (Yarn from the npm registry).
	DepTool = "tool"
)

// DebianBase is a base assembled from Debian packages: the archive and the
// index the lock resolved its .debs from, as verified at lock time.
type DebianBase struct {
	Mirror       string   // archive URL, sanitized ("https://deb.debian.org/debian")
	Suite        string   // "sid", "trixie", …
	Components   []string // "main", …
	Architecture string   // Debian's name: "amd64", "arm64"
	// InRelease is the signed index's URL and InReleaseSHA256 its hex
	// sha256; SignedBy is the fingerprint (uppercase hex) of the primary
	// key whose signature on it verified.
	InRelease       string
	InReleaseSHA256 string
	SignedBy        string
	// KeyringSHA256 is the hex sha256 of the keyring InRelease was
	// verified against.
	KeyringSHA256 string
	// AllowExpired records that the index was accepted past its
	// Valid-Until (a snapshot or frozen mirror, on purpose).
	AllowExpired bool
}

// Package is one pinned download that went into the image.
type Package struct {
	Purl string // package URL: pkg:deb/debian/libc6@2.41-12?arch=amd64, pkg:npm/ms@2.1.3, pkg:gem/rack@3.1.8
	URL  string // where it was downloaded from, sanitized (a git remote for a git-pinned package)
	// SHA256 is the download's hex sha256; GitCommit, instead, the commit
	// a package fetched from git was pinned at.
	SHA256    string
	GitCommit string
	// Layer is the layer that installs it; "" for a .deb of the base.
	Layer string
	// Tool marks the package manager itself.
	Tool bool
}

var (
	fingerprintRe = regexp.MustCompile(`^[0-9A-F]{40}(?:[0-9A-F]{24})?$`)
	purlRe        = regexp.MustCompile(`^pkg:[a-z][a-z0-9.+-]*/[^\s]+@[^\s@]+$`)
)

// debianShape is externalParameters.base.
var debianShape = object(required("debian", object(
	required("mirror", nil), required("suite", nil), required("components", nil), required("architecture", nil),
	required("keyringSha256", nil), required("allowExpired", nil),
)))

// IsFingerprint reports whether s is an OpenPGP fingerprint as the
// provenance records signedBy: 40 (v4) or 64 (v6) uppercase hex digits.
func IsFingerprint(s string) bool { return fingerprintRe.MatchString(s) }

func sanitized(u string) bool {
	clean, err := redact.URL(u)
	return err == nil && clean == u
}

func validateDebian(d *DebianBase) error {
	switch {
	case !sanitized(d.Mirror):
		return fmt.Errorf("provenance input: debian.mirror %q is not a sanitized URL", d.Mirror)
	case d.Suite == "" || strings.ContainsAny(d.Suite, " \t\n/"):
		return fmt.Errorf("provenance input: debian.suite %q is not a suite name", d.Suite)
	case len(d.Components) == 0:
		return fmt.Errorf("provenance input: debian.components is empty")
	case d.Architecture == "":
		return fmt.Errorf("provenance input: debian.architecture is empty")
	case !sanitized(d.InRelease):
		return fmt.Errorf("provenance input: debian.inRelease %q is not a sanitized URL", d.InRelease)
	case !hex64.MatchString(d.InReleaseSHA256):
		return fmt.Errorf("provenance input: debian.inReleaseSha256 %q is not 64 lowercase hex", d.InReleaseSHA256)
	case !fingerprintRe.MatchString(d.SignedBy):
		return fmt.Errorf("provenance input: debian.signedBy %q is not an OpenPGP fingerprint (uppercase hex)", d.SignedBy)
	case !hex64.MatchString(d.KeyringSHA256):
		return fmt.Errorf("provenance input: debian.keyringSha256 %q is not 64 lowercase hex", d.KeyringSHA256)
	}
	for i, c := range d.Components {
		if c == "" || strings.ContainsAny(c, " \t\n") {
			return fmt.Errorf("provenance input: debian.components[%d] %q is not a component", i, c)
		}
	}
	return nil
}

func validatePackage(in *Input, i int, p Package) error {
	at := fmt.Sprintf("provenance input: packages[%d] (%s)", i, p.Purl)
	switch {
	case !purlRe.MatchString(p.Purl):
		return fmt.Errorf("provenance input: packages[%d].purl %q is not a package URL", i, p.Purl)
	case !sanitized(p.URL):
		return fmt.Errorf("%s: url %q is not a sanitized URL", at, p.URL)
	case (p.SHA256 == "") == (p.GitCommit == ""):
		return fmt.Errorf("%s: exactly one of sha256 and gitCommit is needed", at)
	case p.SHA256 != "" && !hex64.MatchString(p.SHA256):
		return fmt.Errorf("%s: sha256 %q is not 64 lowercase hex", at, p.SHA256)
	case p.GitCommit != "" && !gitSHA.MatchString(p.GitCommit):
		return fmt.Errorf("%s: gitCommit %q is not a 40 hex commit id", at, p.GitCommit)
	case p.Layer == "" && (p.Tool || p.GitCommit != ""):
		return fmt.Errorf("%s: a base package is a .deb (no tool, no git commit)", at)
	case p.Layer == "" && in.Debian == nil:
		return fmt.Errorf("%s: a base package, but the base is not assembled from Debian packages", at)
	case p.Layer != "" && (in.Native == nil || !slices.Contains(in.Native.Layers, p.Layer)):
		return fmt.Errorf("%s: layer %q is not one of the build's layers", at, p.Layer)
	}
	return nil
}

func debianExternal(d *DebianBase) map[string]any {
	comps := make([]any, 0, len(d.Components))
	for _, c := range d.Components {
		comps = append(comps, c)
	}
	return map[string]any{"debian": map[string]any{
		"mirror": d.Mirror, "suite": d.Suite, "components": comps, "architecture": d.Architecture,
		"keyringSha256": d.KeyringSHA256, "allowExpired": d.AllowExpired,
	}}
}

// debianDeps are the index and the base's .debs; layerDeps the layers'
// packages and tools, in the order given.
func debianDeps(in Input) ([]*intoto.ResourceDescriptor, error) {
	ann, err := structpb.NewStruct(map[string]any{"signedBy": in.Debian.SignedBy})
	if err != nil {
		return nil, err
	}
	out := []*intoto.ResourceDescriptor{{
		Name: DepDebianIndex, Uri: in.Debian.InRelease,
		Digest: map[string]string{"sha256": in.Debian.InReleaseSHA256}, Annotations: ann,
	}}
	for _, p := range in.Packages {
		if p.Layer == "" {
			out = append(out, &intoto.ResourceDescriptor{Name: DepBasePackage, Uri: p.Purl, DownloadLocation: p.URL, Digest: map[string]string{"sha256": p.SHA256}})
		}
	}
	return out, nil
}

func layerDeps(in Input) ([]*intoto.ResourceDescriptor, error) {
	var out []*intoto.ResourceDescriptor
	for _, p := range in.Packages {
		if p.Layer == "" {
			continue
		}
		ann, err := structpb.NewStruct(map[string]any{"layer": p.Layer})
		if err != nil {
			return nil, err
		}
		name := DepPackage
		if p.Tool {
			name = DepTool
		}
		d := map[string]string{"sha256": p.SHA256}
		if p.GitCommit != "" {
			d = map[string]string{"gitCommit": p.GitCommit}
		}
		out = append(out, &intoto.ResourceDescriptor{Name: name, Uri: p.Purl, DownloadLocation: p.URL, Digest: d, Annotations: ann})
	}
	return out, nil
}

// parseDebianExternal reads externalParameters.base.
func parseDebianExternal(p string, v *structpb.Value, info *Info) error {
	top, err := readObject(p, v, debianShape)
	if err != nil {
		return err
	}
	dp := p + ".debian"
	m, err := readObject(dp, top["debian"], debianShape.sub("debian"))
	if err != nil {
		return err
	}
	d := &DebianBase{}
	for _, f := range []struct {
		key string
		out *string
	}{{"mirror", &d.Mirror}, {"suite", &d.Suite}, {"architecture", &d.Architecture}, {"keyringSha256", &d.KeyringSHA256}} {
		if *f.out, err = nonEmpty(dp+"."+f.key, m[f.key]); err != nil {
			return err
		}
	}
	cs, err := list(dp+".components", m["components"])
	if err != nil {
		return err
	}
	for i, cv := range cs {
		c, err := nonEmpty(fmt.Sprintf("%s.components[%d]", dp, i), cv)
		if err != nil {
			return err
		}
		d.Components = append(d.Components, c)
	}
	if d.AllowExpired, err = boolean(dp+".allowExpired", m["allowExpired"]); err != nil {
		return err
	}
	info.Debian = d
	return nil
}

// parsePackageDep reads one base-package, package or tool entry of
// resolvedDependencies at path.
func parsePackageDep(path string, d *intoto.ResourceDescriptor) (Package, error) {
	pk := Package{Purl: d.GetUri(), URL: d.GetDownloadLocation(), Tool: d.GetName() == DepTool}
	if len(d.GetContent()) > 0 || d.GetMediaType() != "" {
		return pk, fmt.Errorf("%s: unexpected content or mediaType", path)
	}
	if !purlRe.MatchString(pk.Purl) {
		return pk, fmt.Errorf("%s.uri: %q is not a package URL", path, pk.Purl)
	}
	if !sanitized(pk.URL) {
		return pk, fmt.Errorf("%s.downloadLocation: not a sanitized URL", path)
	}
	switch dg := d.GetDigest(); {
	case d.GetName() != DepBasePackage && dg["gitCommit"] != "":
		if err := onlyDigest(path, dg, "gitCommit", gitSHA.MatchString); err != nil {
			return pk, err
		}
		pk.GitCommit = dg["gitCommit"]
	default:
		if err := onlyDigest(path, dg, "sha256", hex64.MatchString); err != nil {
			return pk, err
		}
		pk.SHA256 = dg["sha256"]
	}
	ann := d.GetAnnotations()
	if d.GetName() == DepBasePackage {
		if ann != nil {
			return pk, fmt.Errorf("%s: unexpected annotations", path)
		}
		return pk, nil
	}
	m, err := readObject(path+".annotations", structpb.NewStructValue(ann), layerAnnotationShape)
	if err != nil {
		return pk, err
	}
	if pk.Layer, err = nonEmpty(path+".annotations.layer", m["layer"]); err != nil {
		return pk, err
	}
	return pk, nil
}

var (
	layerAnnotationShape    = object(required("layer", nil))
	signedByAnnotationShape = object(required("signedBy", nil))
)

// parseDebianIndex reads the debian-index entry at path into info.Debian.
func parseDebianIndex(path string, d *intoto.ResourceDescriptor, info *Info) error {
	if len(d.GetContent()) > 0 || d.GetMediaType() != "" || d.GetDownloadLocation() != "" {
		return fmt.Errorf("%s: unexpected content, downloadLocation or mediaType", path)
	}
	if err := onlyDigest(path, d.GetDigest(), "sha256", hex64.MatchString); err != nil {
		return err
	}
	if !sanitized(d.GetUri()) {
		return fmt.Errorf("%s.uri: not a sanitized URL", path)
	}
	m, err := readObject(path+".annotations", structpb.NewStructValue(d.GetAnnotations()), signedByAnnotationShape)
	if err != nil {
		return err
	}
	fpr, err := str(path+".annotations.signedBy", m["signedBy"])
	if err != nil {
		return err
	}
	if !fingerprintRe.MatchString(fpr) {
		return fmt.Errorf("%s.annotations.signedBy: %q is not an OpenPGP fingerprint", path, fpr)
	}
	info.Debian.InRelease, info.Debian.InReleaseSHA256, info.Debian.SignedBy = d.GetUri(), d.GetDigest()["sha256"], fpr
	return nil
}
