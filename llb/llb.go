// Package llb turns a recipe and its lock into a BuildKit LLB graph.
//
// It is a pure function: no daemon, no network, no clock. The same recipe,
// lock and options marshal to byte-identical definitions, which is what
// makes BuildKit's content-addressed cache (and vmbuild's reproducibility
// checks) work.
//
// The graph is:
//
//	git source (pinned commit, mtimes = commit time)
//	  → one step per patch (helper binary; diffs in a scratch rootfs,
//	    scripts in the base image with a read-only root and no network)
//	  → dockerfile mode: the dockerfile frontend on the patched tree (the
//	    Debian base, if any, as the named context of the images it
//	    replaces)
//	  → native mode: one exec per layer on base + only its declared inputs
//	    (+ the outputs of the layers it needs); each layer's outputs copied
//	    into a layer of their own with fixed mtimes; the image is
//	    Merge(base, source tree, layer outputs…), so a layer whose inputs did
//	    not change keeps its exact blob digest.
package llb

import (
	"time"

	bk "github.com/moby/buildkit/client/llb"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/recipe"
)

// LayerTime is the modification time of every file in a native layer's
// output (Unix time 0, as apko's default SOURCE_DATE_EPOCH). It is fixed,
// not the commit time, so that a layer whose inputs did not change is
// byte-identical across commits: the exporter's timestamp rewrite only
// clamps times later than the epoch, and leaves these alone.
var LayerTime = time.Unix(0, 0).UTC()

// Names of the local sources the build session must provide.
const (
	// HelperLocal holds the static vmbuild-helper binary at /vmbuild-helper.
	HelperLocal = "vmbuild-helper"
	// SourceLocal holds the upstream tree of a local repository (git
	// archive of the pinned commit), for upstreams buildkitd cannot fetch.
	SourceLocal = "vmbuild-source"
	// BaseStore is the OCI content store id of an oci-layout:// base.
	BaseStore = "vmbuild-base"
	// HelperBinary is the helper's file name inside HelperLocal.
	HelperBinary = "vmbuild-helper"
	// BaseInput is the dockerfile frontend's input holding the Debian
	// base, which the named contexts of build.dockerfile.baseFor point
	// at.
	BaseInput = "vmbuild-base"
)

// Mount points inside patch steps.
const (
	srcMount    = "/vmbuild-src"
	helperMount = "/vmbuild-bin"
	patchMount  = "/vmbuild-patch"
	outMount    = "/vmbuild-out"
	// ReportFile is the patch report's path inside a patch step's Report
	// state.
	ReportFile = "/report.json"
)

// Options carry what the graph needs beyond recipe and lock.
type Options struct {
	// Platform is the target platform (lock.Platform(recipe)).
	Platform ocispec.Platform
	// BaseConfig is the base image's config. nil means a minimal default
	// (PATH only); the build fetches the real one through BuildKit.
	BaseConfig *ocispec.Image
	// Helper is the state providing /vmbuild-helper. Zero means the local
	// source HelperLocal.
	Helper *bk.State
}

// StepKind classifies graph steps.
type StepKind string

const (
	StepSource      StepKind = "source"
	StepPatch       StepKind = "patch"
	StepLayer       StepKind = "layer"
	StepLayerOutput StepKind = "layer-output"
	StepSourceLayer StepKind = "source-layer"
	StepDockerfile  StepKind = "dockerfile"
	StepBase        StepKind = "base"
)

// Step is one named step of the graph, for status reporting and DOT.
type Step struct {
	ID    string // unique: "source", "patch/NAME", "layer/NAME", "layer-output/NAME"
	Kind  StepKind
	Name  string // recipe name of the patch or layer
	Title string // what progress output shows
	State bk.State
}

// PatchStep is the LLB of one patch.
type PatchStep struct {
	Patch recipe.Patch
	// Tree is the source tree after this patch.
	Tree bk.State
	// Report holds ReportFile, the helper's JSON patch report.
	Report bk.State
}

// LayerStep is the LLB of one native layer.
type LayerStep struct {
	Layer recipe.Layer
	// Run is the state after the layer's command ran.
	Run bk.State
	// Output is the layer: only its outputs, on scratch.
	Output bk.State
}

// DockerfileBuild is how the build invokes the dockerfile frontend.
type DockerfileBuild struct {
	// Frontend is "dockerfile.v0" (BuildKit's built-in frontend) or
	// "gateway.v0" with FrontendOpt["source"] the pinned `# syntax=` image.
	Frontend    string
	FrontendOpt map[string]string
	// Inputs are "context" and "dockerfile": both the patched tree; and
	// BaseInput, the Debian base, when it replaces images the Dockerfile
	// uses (FrontendOpt "context:NAME" = "input:"+BaseInput).
	Inputs map[string]bk.State
}

// Graph is a recipe's LLB.
type Graph struct {
	Recipe  *recipe.Recipe
	Lock    *lock.Lock
	Options Options

	Source  bk.State
	Base    bk.State
	Patches []PatchStep
	Patched bk.State

	// Native mode.
	SourceLayer bk.State
	Layers      []LayerStep
	Image       bk.State
	Config      ocispec.Image

	// Dockerfile mode.
	Dockerfile *DockerfileBuild

	Steps []Step

	helper bk.State
}
