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

	// OutcomeApplied and OutcomeNoop are the values of
	// externalParameters.patches[].outcome: the patch changed the tree, or
	// (an optional patch) it changed nothing.
	OutcomeApplied = "applied"
	OutcomeNoop    = "noop"

	// MaxFuzz is the largest fuzz a diff may be applied with.
	MaxFuzz = 3
)

// Kinds of internalParameters.nonHermetic entries: what the build reached
// beyond its pinned inputs.
const (
	// AccessNetwork is a step that ran with network access.
	AccessNetwork = "network"
	// AccessHTTP is an http(s) download that no checksum pins (a
	// Dockerfile's ADD <url> without --checksum).
	AccessHTTP = "http"
	// AccessGit is a git fetch that no commit pins (ADD <git url>).
	AccessGit = "git"
)

// Network modes of an AccessNetwork step.
const (
	// NetworkSandbox is BuildKit's default network: a Dockerfile RUN step
	// without --network=none has it.
	NetworkSandbox = "sandbox"
	// NetworkHost is the host's network (a native layer with
	// `network: host`, RUN --network=host).
	NetworkHost = "host"
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
	// Options are the recipe's options for the patch; nil when not
	// recorded (statements written before vmbuild recorded them).
	Options *PatchOptions
	// Outcome is what the build observed: OutcomeApplied or OutcomeNoop;
	// "" when not recorded.
	Outcome string
}

// PatchOptions are the recipe's options for applying one patch.
type PatchOptions struct {
	Offset   bool // a hunk may apply at another line than its header says (diffs)
	Fuzz     int  // context lines that may be ignored, 0..MaxFuzz (diffs)
	Optional bool // a patch that changes nothing is not an error
}

// Strict reports whether p is recorded as applied strictly, as written: its
// options are recorded and allow no offset, no fuzz and no no-op, and it
// changed the tree. When not, it says why.
func (p Patch) Strict() (bool, string) {
	var why []string
	switch {
	case p.Options == nil:
		why = append(why, "its options are not recorded")
	default:
		if p.Options.Offset {
			why = append(why, "offset allowed")
		}
		if p.Options.Fuzz > 0 {
			why = append(why, fmt.Sprintf("fuzz %d", p.Options.Fuzz))
		}
		if p.Options.Optional {
			why = append(why, "optional")
		}
	}
	switch p.Outcome {
	case OutcomeApplied:
	case "":
		why = append(why, "its outcome is not recorded")
	default:
		why = append(why, "outcome "+p.Outcome)
	}
	return len(why) == 0, strings.Join(why, ", ")
}

// Access is one way the build reached beyond its pinned inputs: a step
// with network access, or a download that nothing pins.
type Access struct {
	Kind    string // AccessNetwork, AccessHTTP or AccessGit
	Step    string // the step, as BuildKit names it (URLs redacted); required for AccessNetwork
	Network string // AccessNetwork: NetworkSandbox or NetworkHost
	URI     string // AccessHTTP, AccessGit: the URL fetched, sanitized
}

// String describes a for messages.
func (a Access) String() string {
	switch a.Kind {
	case AccessNetwork:
		return fmt.Sprintf("%s network in step %q", a.Network, a.Step)
	case AccessHTTP:
		return "unpinned download " + a.URI
	case AccessGit:
		return "unpinned git fetch " + a.URI
	}
	return a.Kind
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

	Base     Image   // base image; zero when the build used none (dockerfile mode without script patches) or Debian
	Frontend *Image  // dockerfile frontend image (`# syntax=`), if any
	Images   []Image // images the Dockerfile pulled, pinned (dockerfile mode)

	// Debian is the base assembled from Debian packages, instead of a
	// base image; nil for none.
	Debian *DebianBase
	// Packages are the pinned downloads that went into the image: the
	// Debian base's .debs (Layer "") and the layers' dependencies, in lock
	// order.
	Packages []Package

	// NonHermetic lists what the build reached beyond its pinned inputs:
	// steps with network access, downloads no digest pins. Empty (not nil)
	// means none; nil means not recorded (statements written before
	// vmbuild recorded it), which is not the same as none.
	NonHermetic []Access

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
	internal, err := internalParameters(in)
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
		if err := checkPatchApplication(p); err != nil {
			return fmt.Errorf("provenance input: patch %q: %w", p.Name, err)
		}
	}
	for i, a := range in.NonHermetic {
		if err := checkAccess(a); err != nil {
			return fmt.Errorf("provenance input: nonHermetic[%d]: %w", i, err)
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
	if in.Debian != nil {
		if in.Base.Ref != "" {
			return fmt.Errorf("provenance input: both a base image and a Debian base are set")
		}
		if err := validateDebian(in.Debian); err != nil {
			return err
		}
	} else if in.Base.Ref != "" || in.Native != nil {
		if err := validateImage("base", in.Base); err != nil {
			return err
		}
	}
	for i, p := range in.Packages {
		if err := validatePackage(in, i, p); err != nil {
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
		pm := map[string]any{"name": p.Name, "kind": p.Kind, "sha256": p.SHA256}
		if o := p.Options; o != nil {
			pm["options"] = map[string]any{"offset": o.Offset, "fuzz": o.Fuzz, "optional": o.Optional}
		}
		if p.Outcome != "" {
			pm["outcome"] = p.Outcome
		}
		patches = append(patches, pm)
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
	m := map[string]any{
		"recipe":   map[string]any{"name": in.Recipe.Name, "path": in.Recipe.Path, "sha256": in.Recipe.SHA256},
		"upstream": map[string]any{"repository": repoURL, "ref": in.Upstream.Ref},
		"patches":  patches,
		"build":    build,
	}
	if in.Debian != nil {
		m["base"] = debianExternal(in.Debian)
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		return nil, fmt.Errorf("building externalParameters: %w", err)
	}
	return s, nil
}

func internalParameters(in Input) (*structpb.Struct, error) {
	m := map[string]any{
		"buildkitVersion": in.BuildKitVersion,
		"llbDigest":       in.LLBDigest,
	}
	if in.NonHermetic != nil {
		l := make([]any, 0, len(in.NonHermetic))
		for _, a := range in.NonHermetic {
			am := map[string]any{"kind": a.Kind}
			if a.Step != "" {
				am["step"] = a.Step
			}
			if a.Network != "" {
				am["network"] = a.Network
			}
			if a.URI != "" {
				am["uri"] = a.URI
			}
			l = append(l, am)
		}
		m["nonHermetic"] = l
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		return nil, fmt.Errorf("building internalParameters: %w", err)
	}
	return s, nil
}

// checkPatchApplication checks a patch's options and outcome (both may be
// unrecorded) and that they agree: only an optional patch may be a no-op,
// offset and fuzz are for diffs.
func checkPatchApplication(p Patch) error {
	switch p.Outcome {
	case "", OutcomeApplied, OutcomeNoop:
	default:
		return fmt.Errorf("outcome %q is not %q or %q", p.Outcome, OutcomeApplied, OutcomeNoop)
	}
	o := p.Options
	if o == nil {
		return nil
	}
	if o.Fuzz < 0 || o.Fuzz > MaxFuzz {
		return fmt.Errorf("fuzz %d is not 0..%d", o.Fuzz, MaxFuzz)
	}
	if p.Kind == PatchKindScript && (o.Offset || o.Fuzz != 0) {
		return fmt.Errorf("offset and fuzz are options of diffs, not scripts")
	}
	if p.Outcome == OutcomeNoop && !o.Optional {
		return fmt.Errorf("outcome %q, but the patch is not optional (a required patch that changes nothing fails the build)", OutcomeNoop)
	}
	return nil
}

// checkAccess checks one nonHermetic entry: the keys its kind has, a
// sanitized URL, a step name on one line.
func checkAccess(a Access) error {
	if strings.ContainsAny(a.Step, "\n\r") {
		return fmt.Errorf("step is not on one line")
	}
	switch a.Kind {
	case AccessNetwork:
		if a.Step == "" {
			return fmt.Errorf("a %s entry names no step", a.Kind)
		}
		if a.Network != NetworkSandbox && a.Network != NetworkHost {
			return fmt.Errorf("network %q is not %q or %q", a.Network, NetworkSandbox, NetworkHost)
		}
		if a.URI != "" {
			return fmt.Errorf("a %s entry has no uri", a.Kind)
		}
	case AccessHTTP, AccessGit:
		if a.Network != "" {
			return fmt.Errorf("a %s entry has no network", a.Kind)
		}
		if a.URI == "" {
			return fmt.Errorf("a %s entry names no uri", a.Kind)
		}
		if clean, err := redact.URL(a.URI); err != nil || clean != a.URI {
			return fmt.Errorf("uri is not a sanitized URL (no credentials, query or fragment)")
		}
	default:
		return fmt.Errorf("kind %q is not %q, %q or %q", a.Kind, AccessNetwork, AccessHTTP, AccessGit)
	}
	return nil
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
	if in.Debian != nil {
		deb, err := debianDeps(in)
		if err != nil {
			return nil, err
		}
		deps = append(deps, deb...)
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
	pkgs, err := layerDeps(in)
	if err != nil {
		return nil, err
	}
	deps = append(deps, pkgs...)
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
