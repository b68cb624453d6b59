// Package recipe parses and validates vmbuild recipes (apiVersion
// vmbuild/v1).
//
// A recipe names an upstream git repository and the ref it tracks, a base
// image, an ordered patch set and a build description: either upstream's own
// Dockerfile built on the patched tree, or native layers with precise inputs.
// Parsing is strict: unknown or duplicate keys, wrong types and missing
// fields are errors that name the file, line and field. See docs/recipe.md
// and schema.json (embedded as Schema).
package recipe

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/distribution/reference"
)

// APIVersion is the only recipe apiVersion this version understands.
const APIVersion = "vmbuild/v1"

// Recipe is a parsed, validated recipe. Treat it as immutable.
type Recipe struct {
	APIVersion string
	Name       string
	Upstream   Upstream
	// Base is the base image reference as written (tag or digest, or
	// oci-layout://DIR[:tag][@digest]). Required in native mode and when a
	// script patch is present.
	Base string
	// BaseDebian, when set instead of Base, assembles the base from pinned
	// Debian packages.
	BaseDebian *DebianBase
	Platform   string // e.g. linux/amd64; empty means the host's default
	Patches    []Patch
	Build      Build
	Image      Image

	// Path is the file the recipe was read from (as given to Load).
	Path string
	// Dir is the directory relative paths in the recipe resolve against.
	Dir string
	// Raw is the file's content; SHA256 its hex digest.
	Raw    []byte
	SHA256 string
}

// Upstream is the git source a recipe tracks.
type Upstream struct {
	// Git is a URL buildkitd can fetch (https, http, ssh, git, scp-like
	// user@host:path) or a local repository path (absolute, or relative to
	// the recipe's directory).
	Git string
	Ref string
}

// PatchKind tells a unified diff from a script.
type PatchKind string

const (
	PatchDiff   PatchKind = "diff"
	PatchScript PatchKind = "script"
)

// Patch is one entry of the recipe's ordered patch list.
type Patch struct {
	Name     string    // display name; defaults to the file's base name
	Kind     PatchKind // diff (file:) or script (script:)
	File     string    // path as written, relative to the recipe dir
	Optional bool      // a patch that changes nothing is not an error
	Offset   bool      // allow hunks to apply at another line (diffs only)
	Fuzz     int       // context lines that may be ignored, 0..3 (diffs only)
	Content  []byte    // the file's content
	SHA256   string    // hex sha256 of Content
	Line     int       // line of the entry in the recipe, for errors
}

// Build is exactly one of Dockerfile or Layers.
type Build struct {
	Dockerfile *Dockerfile
	Layers     []Layer
}

// Native reports whether the recipe builds native layers.
func (b Build) Native() bool { return b.Dockerfile == nil }

// Mode is "dockerfile" or "native".
func (b Build) Mode() string {
	if b.Native() {
		return "native"
	}
	return "dockerfile"
}

// Dockerfile builds upstream's own Dockerfile on the patched tree.
type Dockerfile struct {
	Path   string            // relative to the source root; default "Dockerfile"
	Target string            // build stage; default: the last one
	Args   map[string]string // build args; SOURCE_COMMIT is always set from the lock
	// SourceDateEpochArg passes the locked commit time as the build arg
	// SOURCE_DATE_EPOCH. Off by default: the frontend writes build args into
	// step definitions, so a changing epoch invalidates every later step.
	// The epoch always reaches the exporter either way.
	SourceDateEpochArg bool
	// BaseFor are images the Dockerfile uses (FROM, COPY --from,
	// RUN --mount=from) that the recipe's Debian base replaces, as
	// written: the build passes the base to the frontend as a named
	// context of each (as `docker buildx build --build-context
	// NAME=…` does), and lock neither resolves nor pins them. Requires
	// base.debian.
	BaseFor []string
	// BaseForLine is the line of the baseFor field, for errors.
	BaseForLine int
}

// NamedContext is the name BuildKit's dockerfile frontend looks a
// reference up by among its named contexts (the frontend option
// "context:NAME"): the familiar form, without ":latest"
// (docker.io/library/node:24 → node:24). ref must be a valid reference.
func NamedContext(ref string) string {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ref
	}
	return strings.TrimSuffix(reference.FamiliarString(named), ":latest")
}

// Network is a layer's network mode.
type Network string

const (
	NetworkNone Network = "none"
	NetworkHost Network = "host"
)

// Layer is one native layer.
type Layer struct {
	Name    string
	Inputs  []string // paths or globs relative to the source root
	Run     string   // shell script, run with sh -ec
	Outputs []string // absolute paths whose content forms the layer
	Needs   []string // layers whose outputs are present when this one runs
	Network Network
	Env     map[string]string
	Cache   []string // absolute dirs kept as persistent cache mounts
	// SourceDateEpoch sets SOURCE_DATE_EPOCH in the step's environment
	// (opt-in: the value changes with every commit and so busts this step's
	// cache on every commit).
	SourceDateEpoch bool
	// Deps, if set, is the pinned dependency set the layer installs (with
	// no network).
	Deps       *Deps
	Line       int
	needsLines []int
}

// Image is the final image's configuration in native mode.
type Image struct {
	Workdir string // where the source tree goes; default /app
	// Include are the paths or globs of the source tree the image gets
	// (upstream's streaming Dockerfile copies package.json, yarn.lock,
	// .yarnrc.yml and streaming/). Default: the whole tree.
	Include    []string
	User       string
	Env        map[string]string
	Entrypoint []string
	Cmd        []string
	Expose     []string
	Labels     map[string]string
}

// DefaultWorkdir is where the source tree is placed in native mode.
const DefaultWorkdir = "/app"

// LayerByName returns the named layer.
func (r *Recipe) LayerByName(name string) (*Layer, bool) {
	for i := range r.Build.Layers {
		if r.Build.Layers[i].Name == name {
			return &r.Build.Layers[i], true
		}
	}
	return nil, false
}

// NeedsBase reports whether the recipe uses its base image: native
// layers, script patches, and a Dockerfile whose images it replaces run on
// it.
func (r *Recipe) NeedsBase() bool {
	if r.Build.Native() || len(r.Build.Dockerfile.BaseFor) > 0 {
		return true
	}
	for _, p := range r.Patches {
		if p.Kind == PatchScript {
			return true
		}
	}
	return false
}

// LockPath is where the recipe's lock file lives: NAME.lock.json beside it.
func (r *Recipe) LockPath() string {
	return filepath.Join(r.Dir, r.Name+".lock.json")
}

// HistoryPath is where `vmbuild track` keeps its JSON-lines history.
func (r *Recipe) HistoryPath() string {
	return filepath.Join(r.Dir, r.Name+".history.jsonl")
}

// NeedsHelper reports whether a build step runs vmbuild-helper: to apply
// a patch, assemble a Debian base, or install pinned dependencies.
func (r *Recipe) NeedsHelper() bool {
	if len(r.Patches) > 0 || r.BaseDebian != nil {
		return true
	}
	for _, l := range r.Build.Layers {
		if l.Deps != nil {
			return true
		}
	}
	return false
}

// NetworkedLayers names the layers that run with network: host.
func (r *Recipe) NetworkedLayers() []string {
	var out []string
	for _, l := range r.Build.Layers {
		if l.Network == NetworkHost {
			out = append(out, l.Name)
		}
	}
	return out
}

// LocalUpstream reports whether Upstream.Git names a local repository path,
// and if so returns its absolute path.
func (r *Recipe) LocalUpstream() (string, bool) {
	return localGitPath(r.Upstream.Git, r.Dir)
}

func localGitPath(u, dir string) (string, bool) {
	switch {
	case strings.HasPrefix(u, "file://"):
		return filepath.Clean(strings.TrimPrefix(u, "file://")), true
	case strings.Contains(u, "://"):
		return "", false
	case filepath.IsAbs(u):
		return filepath.Clean(u), true
	case strings.HasPrefix(u, "./") || strings.HasPrefix(u, "../") || u == "." || u == "..":
		return filepath.Join(dir, u), true
	}
	return "", false
}

// OrderedLayers returns the layers so that each comes after those it needs
// (stable: recipe order among independent layers).
func (r *Recipe) OrderedLayers() []Layer {
	done := map[string]bool{}
	var out []Layer
	var visit func(l Layer)
	visit = func(l Layer) {
		if done[l.Name] {
			return
		}
		done[l.Name] = true
		for _, n := range l.Needs {
			if dep, ok := r.LayerByName(n); ok {
				visit(*dep)
			}
		}
		out = append(out, l)
	}
	for _, l := range r.Build.Layers {
		visit(l)
	}
	return out
}

// SortedKeys returns m's keys in order, for deterministic iteration.
func SortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// PatchSummary is a one-line description of the patch set.
func (r *Recipe) PatchSummary() string {
	if len(r.Patches) == 0 {
		return "no patches"
	}
	names := make([]string, len(r.Patches))
	for i, p := range r.Patches {
		names[i] = p.Name
	}
	return fmt.Sprintf("%d patches: %s", len(r.Patches), strings.Join(names, ", "))
}
