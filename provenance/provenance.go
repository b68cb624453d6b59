// Package provenance writes and reads vmbuild's SLSA v1 provenance: an
// in-toto v1 Statement whose predicate is a SLSA v1 Provenance with the
// build type documented in docs/buildtype-v1.md.
//
// The statement is built with the in-toto attestation protos
// (github.com/in-toto/attestation/go/v1 and predicates/provenance/v1) and
// serialised with protojson, then made deterministic (object keys sorted,
// no insignificant whitespace) so that the same input always yields the
// same bytes.
//
// Credentials never reach a statement: user info, query strings and
// fragments are removed from every URL it records (the lesson of BuildKit's
// CVE-2023-26054), see [SanitizeURL].
package provenance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	slsa "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmbuild/vmbuild/internal/redact"
)

const (
	// PredicateType is the SLSA v1 provenance predicate type.
	PredicateType = "https://slsa.dev/provenance/v1"
	// BuildType identifies vmbuild's build definition; it is documented at
	// that address (docs/buildtype-v1.md in this repository).
	BuildType = "https://github.com/vmbuild/vmbuild/blob/main/docs/buildtype-v1.md"
	// DefaultBuilderID is runDetails.builder.id when Input.BuilderID is
	// empty: vmbuild running a build on the local machine against a
	// BuildKit daemon it controls. Builders with a stronger trust story
	// (a hosted CI runner) use their own id.
	DefaultBuilderID = "https://github.com/vmbuild/vmbuild/builders/local@v1"

	// ModeDockerfile and ModeNative are the values of
	// externalParameters.build.mode.
	ModeDockerfile = "dockerfile"
	ModeNative     = "native"

	// PatchKindDiff and PatchKindScript are the kinds of patch.
	PatchKindDiff   = "diff"
	PatchKindScript = "script"
)

// Resolved dependency names (resolvedDependencies[].name) for the
// non-patch dependencies. Patches use their own names.
const (
	DepSource   = "source"
	DepBase     = "base"
	DepFrontend = "frontend"
	// DepImage names an image a Dockerfile build pulled (FROM, COPY --from).
	DepImage = "image"
)

const ociLayoutPrefix = "oci-layout://"

// Subject is the built image.
type Subject struct {
	// Name is the image repository or name, e.g. "ghcr.io/acme/app".
	Name string
	// Digest is the image manifest digest, "sha256:<hex>".
	Digest string
}

// Recipe is the recipe file the build followed.
type Recipe struct {
	Name   string // recipe name
	Path   string // path of the recipe file, relative, as given
	SHA256 string // hex sha256 of the recipe file
}

// Upstream is the git source that was built.
type Upstream struct {
	URL        string    // remote URL; credentials are stripped when recorded
	Ref        string    // ref as written in the recipe (branch, tag, or commit)
	Commit     string    // resolved commit (40 hex: in-toto's gitCommit is a SHA-1 id)
	CommitTime time.Time // committer time of Commit; zero if unknown
}

// Patch is one patch applied to the source, in order.
type Patch struct {
	Name   string // patch name (file name in the recipe directory)
	Kind   string // PatchKindDiff or PatchKindScript
	SHA256 string // hex sha256 of the patch file
}

// Dockerfile is the dockerfile build mode.
type Dockerfile struct {
	Path   string            // Dockerfile path in the source tree
	Target string            // build target stage, "" for the last stage
	Args   map[string]string // build args (values with URL credentials are redacted)
}

// Native is the native (recipe-defined layers) build mode.
type Native struct {
	Layers []string // layer names in order
}

// Image is a container image dependency.
type Image struct {
	Ref    string // reference as written, e.g. "docker.io/library/alpine:3.20"
	Digest string // manifest digest, "sha256:<hex>"
}

// Input is everything a provenance statement records. Exactly one of
// Dockerfile and Native is set.
type Input struct {
	Subject    Subject
	Recipe     Recipe
	Upstream   Upstream
	Patches    []Patch
	Dockerfile *Dockerfile
	Native     *Native

	BuildKitVersion string // version of the BuildKit daemon that solved the build
	LLBDigest       string // digest of the marshalled LLB definition

	Base     Image   // base image; zero when the build used none (dockerfile mode without script patches)
	Frontend *Image  // dockerfile frontend image (`# syntax=`), if any
	Images   []Image // images the Dockerfile pulled, pinned (dockerfile mode)

	BuilderID    string // default DefaultBuilderID
	InvocationID string // unique id of this build run
	StartedOn    time.Time
	FinishedOn   time.Time
}

// Info is a parsed statement: the fields of Input as recorded (URLs
// sanitized, image references normalized, times in UTC).
type Info Input

var (
	hex64    = regexp.MustCompile(`^[0-9a-f]{64}$`)
	gitSHA   = regexp.MustCompile(`^[0-9a-f]{40}$`)
	sha256Re = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	digestRe = regexp.MustCompile(`^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$`)
)

// New builds the provenance statement for in. It validates in and names
// the offending field on error.
func New(in Input) (*intoto.Statement, error) {
	if err := validate(&in); err != nil {
		return nil, err
	}
	ext, err := externalParameters(in)
	if err != nil {
		return nil, err
	}
	internal, err := structpb.NewStruct(map[string]any{
		"buildkitVersion": in.BuildKitVersion,
		"llbDigest":       in.LLBDigest,
	})
	if err != nil {
		return nil, fmt.Errorf("building internalParameters: %w", err)
	}
	deps, err := resolvedDependencies(in)
	if err != nil {
		return nil, err
	}
	builderID := in.BuilderID
	if builderID == "" {
		builderID = DefaultBuilderID
	}
	md := &slsa.BuildMetadata{InvocationId: in.InvocationID}
	if !in.StartedOn.IsZero() {
		md.StartedOn = timestamppb.New(in.StartedOn.UTC())
	}
	if !in.FinishedOn.IsZero() {
		md.FinishedOn = timestamppb.New(in.FinishedOn.UTC())
	}
	prov := &slsa.Provenance{
		BuildDefinition: &slsa.BuildDefinition{
			BuildType:            BuildType,
			ExternalParameters:   ext,
			InternalParameters:   internal,
			ResolvedDependencies: deps,
		},
		RunDetails: &slsa.RunDetails{
			Builder:  &slsa.Builder{Id: builderID},
			Metadata: md,
		},
	}
	if md.InvocationId == "" && md.StartedOn == nil && md.FinishedOn == nil {
		prov.RunDetails.Metadata = nil
	}
	if err := prov.Validate(); err != nil {
		return nil, fmt.Errorf("building provenance: %w", err)
	}
	predicate, err := toStruct(prov)
	if err != nil {
		return nil, fmt.Errorf("building provenance predicate: %w", err)
	}
	st := &intoto.Statement{
		Type: intoto.StatementTypeUri,
		Subject: []*intoto.ResourceDescriptor{{
			Name:   in.Subject.Name,
			Digest: map[string]string{"sha256": strings.TrimPrefix(in.Subject.Digest, "sha256:")},
		}},
		PredicateType: PredicateType,
		Predicate:     predicate,
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("building statement: %w", err)
	}
	return st, nil
}

// Marshal serialises a statement with protojson and makes the result
// deterministic: object keys sorted, no insignificant whitespace.
func Marshal(st *intoto.Statement) ([]byte, error) {
	b, err := protojson.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("marshalling statement: %w", err)
	}
	return canonicalize(b)
}

// canonicalize re-encodes JSON with sorted keys, compact, without HTML
// escaping; numbers are kept as written.
func canonicalize(b []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("canonicalizing JSON: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("canonicalizing JSON: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// toStruct converts a message to a structpb.Struct through protojson.
func toStruct(m proto.Message) (*structpb.Struct, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	s := &structpb.Struct{}
	if err := protojson.Unmarshal(b, s); err != nil {
		return nil, err
	}
	return s, nil
}

func validate(in *Input) error {
	if in.Subject.Name == "" {
		return fmt.Errorf("provenance input: subject.name is empty")
	}
	if !sha256Re.MatchString(in.Subject.Digest) {
		return fmt.Errorf("provenance input: subject.digest %q is not sha256:<64 hex>", in.Subject.Digest)
	}
	if in.Recipe.Name == "" {
		return fmt.Errorf("provenance input: recipe.name is empty")
	}
	if in.Recipe.Path == "" {
		return fmt.Errorf("provenance input: recipe.path is empty")
	}
	if !hex64.MatchString(in.Recipe.SHA256) {
		return fmt.Errorf("provenance input: recipe.sha256 %q is not 64 lowercase hex", in.Recipe.SHA256)
	}
	if in.Upstream.URL == "" {
		return fmt.Errorf("provenance input: upstream.url is empty")
	}
	if _, err := redact.URL(in.Upstream.URL); err != nil {
		return fmt.Errorf("provenance input: upstream.url: %w", err)
	}
	if !gitSHA.MatchString(in.Upstream.Commit) {
		return fmt.Errorf("provenance input: upstream.commit %q is not a 40 hex commit id", in.Upstream.Commit)
	}
	seen := map[string]bool{}
	for i, p := range in.Patches {
		if p.Name == "" {
			return fmt.Errorf("provenance input: patches[%d].name is empty", i)
		}
		if seen[p.Name] {
			return fmt.Errorf("provenance input: patches[%d]: patch %q appears twice", i, p.Name)
		}
		seen[p.Name] = true
		if p.Kind != PatchKindDiff && p.Kind != PatchKindScript {
			return fmt.Errorf("provenance input: patch %q: kind %q is not %q or %q", p.Name, p.Kind, PatchKindDiff, PatchKindScript)
		}
		if !hex64.MatchString(p.SHA256) {
			return fmt.Errorf("provenance input: patch %q: sha256 %q is not 64 lowercase hex", p.Name, p.SHA256)
		}
	}
	switch {
	case in.Dockerfile != nil && in.Native != nil:
		return fmt.Errorf("provenance input: both dockerfile and native build modes are set")
	case in.Dockerfile == nil && in.Native == nil:
		return fmt.Errorf("provenance input: no build mode (dockerfile or native) is set")
	case in.Dockerfile != nil:
		if in.Dockerfile.Path == "" {
			return fmt.Errorf("provenance input: dockerfile.path is empty")
		}
		for k := range in.Dockerfile.Args {
			if k == "" {
				return fmt.Errorf("provenance input: dockerfile.args has an empty name")
			}
		}
	default:
		if len(in.Native.Layers) == 0 {
			return fmt.Errorf("provenance input: native.layers is empty")
		}
		for i, l := range in.Native.Layers {
			if l == "" {
				return fmt.Errorf("provenance input: native.layers[%d] is empty", i)
			}
		}
	}
	if in.BuildKitVersion == "" {
		return fmt.Errorf("provenance input: buildkitVersion is empty")
	}
	if !digestRe.MatchString(in.LLBDigest) {
		return fmt.Errorf("provenance input: llbDigest %q is not a digest", in.LLBDigest)
	}
	if in.Base.Ref != "" || in.Native != nil {
		if err := validateImage("base", in.Base); err != nil {
			return err
		}
	}
	for i, im := range in.Images {
		if err := validateImage(fmt.Sprintf("images[%d]", i), im); err != nil {
			return err
		}
	}
	if in.Frontend != nil {
		if err := validateImage("frontend", *in.Frontend); err != nil {
			return err
		}
	}
	if !in.StartedOn.IsZero() && !in.FinishedOn.IsZero() && in.FinishedOn.Before(in.StartedOn) {
		return fmt.Errorf("provenance input: finishedOn %s is before startedOn %s", in.FinishedOn, in.StartedOn)
	}
	return nil
}

func validateImage(field string, im Image) error {
	if im.Ref == "" {
		return fmt.Errorf("provenance input: %s.ref is empty", field)
	}
	if _, err := imagePURL(im.Ref); err != nil {
		return fmt.Errorf("provenance input: %s.ref: %w", field, err)
	}
	if !sha256Re.MatchString(im.Digest) {
		return fmt.Errorf("provenance input: %s.digest %q is not sha256:<64 hex>", field, im.Digest)
	}
	return nil
}

func externalParameters(in Input) (*structpb.Struct, error) {
	repoURL, err := redact.URL(in.Upstream.URL)
	if err != nil {
		return nil, err
	}
	patches := make([]any, 0, len(in.Patches))
	for _, p := range in.Patches {
		patches = append(patches, map[string]any{"name": p.Name, "kind": p.Kind, "sha256": p.SHA256})
	}
	var build map[string]any
	if in.Dockerfile != nil {
		args := map[string]any{}
		for k, v := range in.Dockerfile.Args {
			args[k] = redact.Value(v)
		}
		build = map[string]any{
			"mode": ModeDockerfile,
			"dockerfile": map[string]any{
				"path":   in.Dockerfile.Path,
				"target": in.Dockerfile.Target,
				"args":   args,
			},
		}
	} else {
		layers := make([]any, 0, len(in.Native.Layers))
		for _, l := range in.Native.Layers {
			layers = append(layers, l)
		}
		build = map[string]any{"mode": ModeNative, "layers": layers}
	}
	s, err := structpb.NewStruct(map[string]any{
		"recipe":   map[string]any{"name": in.Recipe.Name, "path": in.Recipe.Path, "sha256": in.Recipe.SHA256},
		"upstream": map[string]any{"repository": repoURL, "ref": in.Upstream.Ref},
		"patches":  patches,
		"build":    build,
	})
	if err != nil {
		return nil, fmt.Errorf("building externalParameters: %w", err)
	}
	return s, nil
}

func resolvedDependencies(in Input) ([]*intoto.ResourceDescriptor, error) {
	repoURL, err := redact.URL(in.Upstream.URL)
	if err != nil {
		return nil, err
	}
	src := &intoto.ResourceDescriptor{
		Name:   DepSource,
		Uri:    GitURI(repoURL, in.Upstream.Ref),
		Digest: map[string]string{"gitCommit": in.Upstream.Commit},
	}
	if !in.Upstream.CommitTime.IsZero() {
		ann, err := structpb.NewStruct(map[string]any{"commitTime": in.Upstream.CommitTime.UTC().Format(time.RFC3339)})
		if err != nil {
			return nil, err
		}
		src.Annotations = ann
	}
	deps := []*intoto.ResourceDescriptor{src}
	if in.Base.Ref != "" {
		base, err := imageDep(DepBase, in.Base)
		if err != nil {
			return nil, err
		}
		deps = append(deps, base)
	}
	if in.Frontend != nil {
		fe, err := imageDep(DepFrontend, *in.Frontend)
		if err != nil {
			return nil, err
		}
		deps = append(deps, fe)
	}
	for _, im := range in.Images {
		d, err := imageDep(DepImage, im)
		if err != nil {
			return nil, err
		}
		deps = append(deps, d)
	}
	for _, p := range in.Patches {
		deps = append(deps, &intoto.ResourceDescriptor{Name: p.Name, Digest: map[string]string{"sha256": p.SHA256}})
	}
	return deps, nil
}

func imageDep(name string, im Image) (*intoto.ResourceDescriptor, error) {
	purl, err := imagePURL(im.Ref)
	if err != nil {
		return nil, fmt.Errorf("%s image: %w", name, err)
	}
	return &intoto.ResourceDescriptor{
		Name:   name,
		Uri:    purl,
		Digest: map[string]string{"sha256": strings.TrimPrefix(im.Digest, "sha256:")},
	}, nil
}

// imagePURL renders an image reference as a package URL:
// pkg:docker/<path>@<tag or digest>[?repository_url=<registry>], the
// registry omitted for Docker Hub.
func imagePURL(ref string) (string, error) {
	if strings.HasPrefix(ref, ociLayoutPrefix) {
		// A base image read from a local OCI layout: no registry to name;
		// the reference (and the digest beside it) identify it.
		if strings.ContainsAny(ref, " \t\n") || len(ref) == len(ociLayoutPrefix) {
			return "", fmt.Errorf("malformed OCI layout reference %q", ref)
		}
		return ref, nil
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("parsing image reference %q: %w", ref, err)
	}
	version := ""
	if t, ok := named.(reference.Tagged); ok {
		version = t.Tag()
	} else if d, ok := named.(reference.Digested); ok {
		version = strings.Replace(d.Digest().String(), ":", "%3A", 1)
	} else {
		version = "latest"
	}
	p := "pkg:docker/" + reference.Path(named) + "@" + version
	if dom := reference.Domain(named); dom != "docker.io" {
		p += "?repository_url=" + dom
	}
	return p, nil
}

// refFromPURL is the inverse of imagePURL: a normalized reference.
func refFromPURL(purl string) (string, error) {
	if strings.HasPrefix(purl, ociLayoutPrefix) {
		return imagePURL(purl)
	}
	rest, ok := strings.CutPrefix(purl, "pkg:docker/")
	if !ok {
		return "", fmt.Errorf("uri %q is not a pkg:docker package URL", purl)
	}
	domain := "docker.io"
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		q := rest[i+1:]
		rest = rest[:i]
		v, ok := strings.CutPrefix(q, "repository_url=")
		if !ok || v == "" || strings.ContainsAny(v, "&/?#") {
			return "", fmt.Errorf("uri %q has an unexpected qualifier", purl)
		}
		if v == "docker.io" {
			return "", fmt.Errorf("uri %q names docker.io explicitly", purl)
		}
		domain = v
	}
	at := strings.LastIndexByte(rest, '@')
	if at <= 0 || at == len(rest)-1 {
		return "", fmt.Errorf("uri %q has no version", purl)
	}
	path, version := rest[:at], rest[at+1:]
	var ref string
	if strings.Contains(version, "%3A") {
		ref = domain + "/" + path + "@" + strings.Replace(version, "%3A", ":", 1)
	} else {
		ref = domain + "/" + path + ":" + version
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("uri %q: %w", purl, err)
	}
	if again, _ := imagePURL(named.String()); again != purl {
		return "", fmt.Errorf("uri %q is not in canonical form", purl)
	}
	return named.String(), nil
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
