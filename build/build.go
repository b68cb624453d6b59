// Package build solves a recipe's LLB graph on BuildKit and exports the
// image: to an OCI image layout, or pushed to a registry by digest (tags
// are moved later, by the publisher, after signing).
//
// The build runs as one BuildKit gateway session: it resolves the base
// image's config, applies the patches one step at a time (reading each
// step's report, so a failing patch stops the build with the patch, hunk,
// file and commit named), then solves the image (native layers, or the
// dockerfile frontend on the patched tree) and exports it with the locked
// commit time as SOURCE_DATE_EPOCH.
//
// [Builder] and [PatchChecker] are the seams through which track and check
// build; [New] returns the real ones, over BuildKit.
package build

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	gateway "github.com/moby/buildkit/frontend/gateway/client"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/solver/pb"
	"github.com/moby/buildkit/util/progress/progressui"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/redact"
	vmllb "github.com/vmbuild/vmbuild/llb"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/patch"
	"github.com/vmbuild/vmbuild/recipe"
)

// Output says where the image goes. Exactly one of OCIDir and PushRepo.
type Output struct {
	// OCIDir is an OCI image layout directory; the image is added to its
	// index.json under the annotation org.opencontainers.image.ref.name =
	// OCITag (default "latest"), other entries are kept.
	OCIDir string
	OCITag string
	// PushRepo is a registry repository (no tag): the image is pushed by
	// digest only.
	PushRepo string
}

// Options configure one build.
type Options struct {
	// Client is a connected BuildKit client.
	Client *client.Client
	// BuildKitVersion, recorded in the result (provenance).
	BuildKitVersion string
	// HelperPath is the static vmbuild-helper binary; required when the
	// recipe has patches.
	HelperPath string
	Output     Output
	// NoCache rebuilds every step (vmbuild build --check).
	NoCache bool
	// CacheImports and CacheExports are BuildKit cache options, e.g.
	// {Type: "registry", Attrs: {"ref": R}}. A registry export defaults
	// to mode=max, image-manifest=true, oci-mediatypes=true.
	CacheImports []client.CacheOptionsEntry
	CacheExports []client.CacheOptionsEntry
	// Session attachables, e.g. the Docker config auth provider. The
	// signing key is never one of them.
	Session []session.Attachable
	// GitCredentials, if set, is asked for the credentials of an http(s)
	// upstream (lock.GitCLI.Credential asks git's credential helpers).
	// They reach BuildKit as the session secret GIT_AUTH_HEADER.<host>,
	// which its git source reads: never in the graph, a cache key, the
	// lock or the provenance.
	GitCredentials func(ctx context.Context, url string) (user, password string, ok bool, err error)
	// Progress receives BuildKit's progress display; nil discards it.
	Progress     io.Writer
	ProgressMode progressui.DisplayMode
	// WorkDir holds temporary files (local source trees); default os.TempDir.
	WorkDir string
	Logger  *slog.Logger
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// StepResult reports one recipe step.
type StepResult struct {
	ID          string        `json:"id"`
	Kind        string        `json:"kind"`
	Name        string        `json:"name,omitempty"`
	Title       string        `json:"title"`
	Vertex      digest.Digest `json:"vertex,omitempty"`
	Cached      bool          `json:"cached"`
	Ran         bool          `json:"ran"`
	LayerDigest digest.Digest `json:"layerDigest,omitempty"`
	Duration    time.Duration `json:"durationNs,omitempty"`
}

// Result is what a build produced.
type Result struct {
	Digest     digest.Digest      `json:"digest"`
	Descriptor ocispec.Descriptor `json:"descriptor"`
	Manifest   *ocispec.Manifest  `json:"-"`
	Config     *ocispec.Image     `json:"-"`
	Commit     string             `json:"commit"`
	CommitTime time.Time          `json:"commitTime"`
	Epoch      int64              `json:"sourceDateEpoch"`
	LLBDigest  digest.Digest      `json:"llbDigest"`
	BuildKit   string             `json:"buildkitVersion"`
	Steps      []StepResult       `json:"steps"`
	Patches    []patch.Report     `json:"patches"`
	// NonHermetic lists the steps with network access and the downloads
	// nothing pins, read from the LLB BuildKit solved (in dockerfile mode,
	// the LLB the frontend made of the Dockerfile). Empty: none. nil: not
	// known (the frontend's LLB could not be read; logged).
	NonHermetic []Access  `json:"nonHermetic"`
	Vertices    []Vertex  `json:"vertices"`
	BytesPushed int64     `json:"bytesPushed"`
	BlobsPushed int       `json:"blobsPushed"`
	StartedOn   time.Time `json:"startedOn"`
	FinishedOn  time.Time `json:"finishedOn"`
	// BaseConfig is the base image config the graph was built with.
	BaseConfig *ocispec.Image `json:"-"`
	// graph is the LLB graph that was solved (maps layers to steps).
	graph *vmllb.Graph
}

// StepCached reports whether the step with the given id was a cache hit.
func (r *Result) StepCached(id string) (cached, found bool) {
	for _, s := range r.Steps {
		if s.ID == id {
			return s.Cached, true
		}
	}
	return false, false
}

// Build solves r pinned by l and exports the image. On a patch failure
// the error wraps errs.ErrPatchFailed and names the patch, hunk, file and
// commit; on a failing step it wraps errs.ErrBuildFailed and names the step
// and shows its last output lines. Nothing is exported or pushed unless the
// whole build succeeded.
//
// Build is the one-shot form of New(opts).Build(ctx, r, l, Request{}), for
// callers that build once; libraries take a [Builder] instead, so that
// their callers can swap it.
func Build(ctx context.Context, r *recipe.Recipe, l *lock.Lock, opts Options) (*Result, error) {
	if opts.Client == nil {
		return nil, errors.New("building: no BuildKit client")
	}
	if (opts.Output.OCIDir == "") == (opts.Output.PushRepo == "") {
		return nil, fmt.Errorf("building: %w: give exactly one output (an OCI layout directory or a repository to push to)", errs.ErrUsage)
	}
	res := &Result{Commit: l.Upstream.Commit, CommitTime: l.Upstream.CommitTime, Epoch: l.Epoch(), BuildKit: opts.BuildKitVersion, StartedOn: time.Now().UTC()}

	epoch := strconv.FormatInt(l.Epoch(), 10)
	exportAttrs := map[string]string{
		"source-date-epoch": epoch,
		"oci-mediatypes":    "true",
		"compression":       "gzip",
	}
	// Dockerfile steps write files with the time they ran: the exporter
	// clamps them to the epoch. Native graphs set every file's time
	// themselves (LayerTime, or the commit time in the source layer), so
	// their layers need no rewrite, which would otherwise decompress and
	// recompress every layer not from a base image (a Debian base of 50
	// MB costs 11 s) on every build.
	if !r.Build.Native() {
		exportAttrs["rewrite-timestamp"] = "true"
	}
	for k, v := range vmllb.Annotations(r, l) {
		exportAttrs["annotation."+k] = v
	}
	var export client.ExportEntry
	var importDone chan importResult
	var pipeW *io.PipeWriter
	if opts.Output.PushRepo != "" {
		export = client.ExportEntry{Type: client.ExporterImage, Attrs: exportAttrs}
		export.Attrs["name"] = opts.Output.PushRepo
		export.Attrs["push"] = "true"
		export.Attrs["push-by-digest"] = "true"
	} else {
		export = client.ExportEntry{Type: client.ExporterOCI, Attrs: exportAttrs}
		pr, pw := io.Pipe()
		pipeW = pw
		importDone = make(chan importResult, 1)
		go func() {
			desc, err := importLayout(ctx, opts.Output.OCIDir, pr)
			pr.CloseWithError(err)
			importDone <- importResult{desc, err}
		}()
		export.Output = func(map[string]string) (io.WriteCloser, error) { return pw, nil }
	}

	resp, x, buildErr := run(ctx, r, l, opts, []client.ExportEntry{export}, func(ctx context.Context, gw gateway.Client, x *runner) (*gateway.Result, error) {
		g, err := x.graph(ctx, gw)
		if err != nil {
			return nil, err
		}
		res.BaseConfig = x.baseCfg
		reports, err := x.applyPatches(ctx, gw, true)
		res.Patches = reports
		if err != nil {
			return nil, err
		}
		if df := g.Dockerfile; df != nil {
			inputs := map[string]*pb.Definition{}
			for name, st := range df.Inputs {
				def, err := x.marshal(ctx, st)
				if err != nil {
					return nil, err
				}
				inputs[name] = def
			}
			fopt := map[string]string{}
			for k, v := range df.FrontendOpt {
				fopt[k] = v
			}
			if opts.NoCache {
				fopt["no-cache"] = ""
			}
			if ci, err := x.cacheImportsJSON(); err != nil {
				return nil, err
			} else if ci != "" {
				fopt["cache-imports"] = ci
			}
			out, err := gw.Solve(ctx, gateway.SolveRequest{Frontend: df.Frontend, FrontendOpt: fopt, FrontendInputs: inputs, Evaluate: true, CacheImports: x.cacheImports()})
			if err != nil {
				return nil, err
			}
			// What the Dockerfile's steps reached beyond the pins, from
			// the LLB the frontend made: unknown (nil) if unreadable.
			if acc, err := resultNonHermetic(ctx, out); err != nil {
				opts.logger().Warn("network access and unpinned downloads of the Dockerfile build are not recorded", "error", err)
			} else {
				res.NonHermetic = acc
			}
			return out, nil
		}
		def, err := x.marshal(ctx, g.Image)
		if err != nil {
			return nil, err
		}
		acc, err := nonHermetic(def)
		if err != nil {
			return nil, err
		}
		res.NonHermetic = acc
		out, err := gw.Solve(ctx, gateway.SolveRequest{Definition: def, Evaluate: true, CacheImports: x.cacheImports()})
		if err != nil {
			return nil, err
		}
		cfg, err := json.Marshal(g.Config)
		if err != nil {
			return nil, err
		}
		out.AddMeta(exptypesImageConfigKey, cfg)
		if x.baseCfg != nil {
			// The exporter leaves the base image's layers untouched by
			// the timestamp rewrite when it knows them.
			b, err := json.Marshal(x.baseCfg)
			if err != nil {
				return nil, err
			}
			out.AddMeta(exptypesBaseImageKey, b)
		}
		return out, nil
	})
	if importDone != nil && buildErr != nil {
		// Nothing, or half an archive, was exported: unblock the importer
		// and discard what it read (it never touches index.json).
		pipeW.CloseWithError(buildErr)
		<-importDone
	}
	if x == nil {
		return res, buildErr
	}
	res.Vertices = x.col.all()
	if buildErr != nil {
		return res, buildErr
	}
	g := x.g
	res.FinishedOn = time.Now().UTC()
	if opts.Output.OCIDir != "" {
		ir := <-importDone
		if ir.err != nil {
			return res, fmt.Errorf("writing OCI layout %s: %w", opts.Output.OCIDir, ir.err)
		}
		desc, err := addToLayout(ctx, opts.Output.OCIDir, ir.desc, opts.Output.OCITag, l)
		if err != nil {
			return res, err
		}
		res.Descriptor = desc
		res.Digest = desc.Digest
		m, cfg, err := readLayoutImage(ctx, opts.Output.OCIDir, desc)
		if err != nil {
			return res, err
		}
		res.Manifest, res.Config = m, cfg
	} else {
		d := resp.ExporterResponse["containerimage.digest"]
		if d == "" {
			return res, fmt.Errorf("building: %w: BuildKit returned no image digest", errs.ErrBuildFailed)
		}
		res.Digest = digest.Digest(d)
		if desc, err := descriptorFrom(resp.ExporterResponse); err == nil {
			res.Descriptor = desc
		} else {
			res.Descriptor = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: res.Digest}
		}
	}
	res.BytesPushed, res.BlobsPushed = x.col.bytesPushed()
	def, err := g.Definition(ctx)
	if err == nil {
		res.LLBDigest = vmllb.Digest(def)
	}
	res.graph = g
	res.Steps = stepResults(ctx, g, x.col, x.s.platform)
	if res.Manifest != nil {
		assignLayerDigests(res, g)
	}
	return res, nil
}

const (
	exptypesImageConfigKey = exptypes.ExporterImageConfigKey
	exptypesBaseImageKey   = exptypes.ExporterImageBaseConfigKey
)

type importResult struct {
	desc ocispec.Descriptor
	err  error
}

// assignLayerDigests maps native layers to manifest layers: the image is
// Merge(base, source, outputs…), so layer i of the merge is at
// len(base layers) + i.
func assignLayerDigests(res *Result, g *vmllb.Graph) {
	if g == nil || g.Dockerfile != nil || res.Manifest == nil || res.BaseConfig == nil {
		return
	}
	n := len(res.BaseConfig.RootFS.DiffIDs)
	layers := res.Manifest.Layers
	idx := map[string]int{"source-layer": n}
	for i, ls := range g.Layers {
		idx["layer-output/"+ls.Layer.Name] = n + 1 + i
		idx["layer/"+ls.Layer.Name] = n + 1 + i
	}
	for i := range res.Steps {
		if j, ok := idx[res.Steps[i].ID]; ok && j < len(layers) {
			res.Steps[i].LayerDigest = layers[j].Digest
		}
	}
}

func stepResults(ctx context.Context, g *vmllb.Graph, col *collector, p ocispec.Platform) []StepResult {
	var out []StepResult
	if g == nil {
		return nil
	}
	for _, st := range g.Steps {
		sr := StepResult{ID: st.ID, Kind: string(st.Kind), Name: st.Name, Title: st.Title}
		if st.Kind != vmllb.StepDockerfile {
			if d, err := vmllb.VertexDigest(ctx, st.State, p); err == nil {
				sr.Vertex = d
				if v, ok := col.get(d); ok {
					sr.Cached = v.Cached
					sr.Ran = !v.Cached && v.done != nil
					sr.Duration = v.Duration
				} else {
					// Not reported: a later step was a cache hit, so
					// BuildKit never needed this one.
					sr.Cached = true
				}
			}
		}
		out = append(out, sr)
	}
	return out
}

func descriptorFrom(resp map[string]string) (ocispec.Descriptor, error) {
	var desc ocispec.Descriptor
	v, ok := resp["containerimage.descriptor"]
	if !ok {
		return desc, errors.New("no descriptor")
	}
	b, err := decodeBase64(v)
	if err != nil {
		return desc, err
	}
	err = json.Unmarshal(b, &desc)
	return desc, err
}

// PatchError is a patch that did not apply.
type PatchError struct {
	Index  int
	Report patch.Report
	Commit string
	Err    error
}

func (e *PatchError) Error() string { return e.Err.Error() }
func (e *PatchError) Unwrap() error { return e.Err }

// StepError is a build step that failed.
type StepError struct {
	Step   string // e.g. `layer "bundle"`
	Detail string
	Output string // last lines of the step's output
	Err    error
}

func (e *StepError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s failed: %s", e.Step, e.Detail)
	if e.Output != "" {
		b.WriteString("\n--- last lines of output ---\n")
		b.WriteString(e.Output)
	}
	return b.String()
}
func (e *StepError) Unwrap() error { return e.Err }
func (e *StepError) Is(target error) bool {
	return target == errs.ErrBuildFailed
}

// BuildKit's HTTP source says "digest mismatch for URL: GOT (expected:
// WANT)" or "digest mismatch GOT: WANT".
var (
	digestMismatchURLRE = regexp.MustCompile(`digest mismatch for (\S+): (sha256:[0-9a-f]{64}) \(expected: (sha256:[0-9a-f]{64})\)`)
	digestMismatchRE    = regexp.MustCompile(`digest mismatch (sha256:[0-9a-f]{64}): (sha256:[0-9a-f]{64})`)
)

// fetchError is a pinned download that failed: content other than the
// pin's (a *deps.HashError naming package, URL and both digests) or an
// unreachable URL.
func fetchError(vertex, detail string, l *lock.Lock, err error) error {
	_, id, _ := strings.Cut(vertex, " ") // "npm express@5.2.1"
	if m := digestMismatchURLRE.FindStringSubmatch(detail); m != nil {
		return fmt.Errorf("building: %w", &deps.HashError{Package: id, URL: redact.Text(m[1]), Source: "the lock's pin", Expected: m[3], Actual: m[2]})
	}
	if m := digestMismatchRE.FindStringSubmatch(detail); m != nil {
		return fmt.Errorf("building: %w", &deps.HashError{Package: id, URL: redact.Text(l.DepsLock.URLOf(id, m[2])), Source: "the lock's pin", Expected: m[2], Actual: m[1]})
	}
	return &StepError{Step: "fetching " + vertex, Detail: shortBKError(redact.Text(detail)), Err: fmt.Errorf("%w: %w", errs.ErrDependency, err)}
}

// explain turns a BuildKit error into one that names the recipe step.
func explain(ctx context.Context, err error, g *vmllb.Graph, col *collector, r *recipe.Recipe, l *lock.Lock) error {
	var pe *PatchError
	if errors.As(err, &pe) {
		return pe
	}
	if ctx.Err() != nil {
		return fmt.Errorf("building %s at %s: %w", r.Name, l.ShortCommit(), context.Cause(ctx))
	}
	if lostDaemon(err) {
		return fmt.Errorf("building %s at %s: %w: lost the connection to buildkitd: %v", r.Name, l.ShortCommit(), errs.ErrBuildKitUnavailable, err)
	}
	msg := err.Error()
	if strings.Contains(msg, "network.host is not allowed") || strings.Contains(msg, "granting entitlement network.host is not allowed") {
		return fmt.Errorf("building %s: %w: layers %s ask for network: host, which this buildkitd does not allow; start it with --allow-insecure-entitlement network.host "+
			"(the managed daemon does this itself), or make the layers hermetic with deps", r.Name, errs.ErrBuildFailed, strings.Join(r.NetworkedLayers(), ", "))
	}
	if strings.Contains(msg, "source denied by policy") || strings.Contains(msg, "denied by policy") {
		ref := ""
		if i := strings.Index(msg, "docker-image://"); i >= 0 {
			ref = strings.Trim(strings.Fields(msg[i:])[0], `"`)
		}
		return fmt.Errorf("building %s: %w: the Dockerfile uses image %s, which the lock does not pin; run `vmbuild lock` (or `vmbuild lock --update`) to pin it", r.Name, errs.ErrBuildFailed, ref)
	}
	stepByVertex := map[digest.Digest]vmllb.Step{}
	if g != nil {
		for _, st := range g.Steps {
			if d, err := vmllb.VertexDigest(ctx, st.State, g.Options.Platform); err == nil {
				stepByVertex[d] = st
			}
		}
	}
	for _, v := range col.failed() {
		st, ok := stepByVertex[v.Digest]
		detail := v.Error
		out := v.tail(20)
		if pkg, found := strings.CutPrefix(v.Name, "[vmbuild] fetch "); found {
			return fetchError(pkg, detail, l, err)
		}
		if ok {
			switch st.Kind {
			case vmllb.StepSource:
				return &StepError{Step: fmt.Sprintf("fetching upstream %s at commit %s", vmllb.RedactURL(r.Upstream.Git), l.Upstream.Commit), Detail: detail, Output: out, Err: err}
			case vmllb.StepLayer:
				lay, _ := r.LayerByName(st.Name)
				cmd := ""
				if lay != nil {
					cmd = strings.TrimSpace(lay.Run)
				}
				return &StepError{Step: fmt.Sprintf("layer %q", st.Name), Detail: fmt.Sprintf("%s\ncommand: %s", shortBKError(detail), cmd), Output: out, Err: err}
			case vmllb.StepLayerOutput:
				lay, _ := r.LayerByName(st.Name)
				outs := ""
				if lay != nil {
					outs = strings.Join(lay.Outputs, ", ")
				}
				return &StepError{Step: fmt.Sprintf("layer %q", st.Name), Detail: fmt.Sprintf("collecting its outputs (%s): %s (does the run step create every output path?)", outs, shortBKError(detail)), Err: err}
			case vmllb.StepPatch:
				return &StepError{Step: fmt.Sprintf("patch %q", st.Name), Detail: shortBKError(detail), Output: out, Err: err}
			}
		}
		if strings.Contains(v.Name, "[vmbuild] base") || strings.Contains(detail, "failed to resolve source metadata") || strings.Contains(detail, "failed to do request") {
			return &StepError{Step: "resolving the base image", Detail: detail, Err: err}
		}
		if strings.HasPrefix(v.Name, "[vmbuild] layer ") && strings.Contains(v.Name, " inputs: ") {
			return &StepError{Step: strings.TrimPrefix(v.Name, "[vmbuild] "), Detail: detail, Err: err}
		}
		return &StepError{Step: fmt.Sprintf("step %q", v.Name), Detail: shortBKError(detail), Output: out, Err: err}
	}
	return fmt.Errorf("building %s at %s: %w: %w", r.Name, l.ShortCommit(), errs.ErrBuildFailed, err)
}

// lostDaemon reports whether err means buildkitd went away (killed,
// crashed, network gone) rather than a step failing.
func lostDaemon(err error) bool {
	if st, ok := status.FromError(errors.Unwrap(err)); ok && st.Code() == codes.Unavailable {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"code = Unavailable", "error reading from server", "connection refused", "transport is closing", "connection reset by peer"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// shortBKError trims BuildKit's error wrapping ("process ... did not
// complete successfully: exit code: 1") to its useful part.
func shortBKError(s string) string {
	if i := strings.Index(s, "did not complete successfully: "); i >= 0 {
		return strings.TrimSpace(s[i+len("did not complete successfully: "):])
	}
	return s
}
