package build

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/moby/buildkit/client"
	bk "github.com/moby/buildkit/client/llb"
	gateway "github.com/moby/buildkit/frontend/gateway/client"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/solver/pb"
	"github.com/moby/buildkit/util/entitlements"
	"github.com/moby/buildkit/util/progress/progressui"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	vmllb "github.com/vmbuild/vmbuild/llb"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/patch"
	"github.com/vmbuild/vmbuild/recipe"
)

// runner is one BuildKit gateway session for a recipe at a commit: the
// client-side session (local sources, stores), the status collector and
// progress display, and the graph once built.
type runner struct {
	r       *recipe.Recipe
	l       *lock.Lock
	opts    Options
	s       *buildSession
	col     *collector
	g       *vmllb.Graph
	baseCfg *ocispec.Image
	// patchErr keeps the typed patch failure: errors returned inside the
	// gateway session reach the caller flattened to text.
	patchErr *PatchError
}

type runFunc func(ctx context.Context, gw gateway.Client, x *runner) (*gateway.Result, error)

// run opens a session and runs fn in it, with the given exports. The
// returned error has been through explain: it names the recipe step.
func run(ctx context.Context, r *recipe.Recipe, l *lock.Lock, opts Options, exports []client.ExportEntry, fn runFunc) (*client.SolveResponse, *runner, error) {
	s, err := newSession(ctx, r, l, opts)
	if err != nil {
		return nil, nil, err
	}
	defer s.close()
	x := &runner{r: r, l: l, opts: opts, s: s, col: newCollector()}

	solveOpt := client.SolveOpt{
		Exports:      exports,
		LocalMounts:  s.locals,
		OCIStores:    s.stores,
		CacheImports: opts.CacheImports,
		CacheExports: cacheExports(opts.CacheExports),
		Session:      append(append([]session.Attachable(nil), opts.Session...), s.attach...),
		// Non-nil: BuildKit's client copies cache-import attributes into
		// it (and panics on a nil map).
		FrontendAttrs: map[string]string{},
	}
	if r.Build.Dockerfile != nil {
		solveOpt.SourcePolicy = vmllb.SourcePolicy(l)
	}
	// network.host only for a recipe that opts in, and only then: the
	// daemon must allow it too (the managed one does).
	if hosts := r.NetworkedLayers(); len(hosts) > 0 {
		solveOpt.AllowedEntitlements = []string{string(entitlements.EntitlementNetworkHost)}
		opts.logger().Warn("layers with network: host are not hermetic: what they download is neither pinned nor verified, and the provenance records them as networked", "layers", hosts)
	}

	statusCh := make(chan *client.SolveStatus)
	var displayCh chan *client.SolveStatus
	displayDone := make(chan struct{})
	if opts.Progress != nil {
		mode := opts.ProgressMode
		if mode == "" {
			mode = progressui.AutoMode
		}
		d, err := progressui.NewDisplay(opts.Progress, mode)
		if err != nil {
			return nil, nil, fmt.Errorf("starting progress display: %w", err)
		}
		displayCh = make(chan *client.SolveStatus)
		go func() {
			defer close(displayDone)
			_, _ = d.UpdateFrom(context.WithoutCancel(ctx), displayCh)
		}()
	} else {
		close(displayDone)
	}
	colDone := make(chan struct{})
	go func() { defer close(colDone); x.col.run(statusCh, displayCh) }()

	resp, err := opts.Client.Build(ctx, solveOpt, "vmbuild", func(ctx context.Context, gw gateway.Client) (*gateway.Result, error) {
		return fn(ctx, gw, x)
	}, statusCh)
	<-colDone
	<-displayDone
	if err != nil {
		if x.patchErr != nil {
			return resp, x, x.patchErr
		}
		return resp, x, explain(ctx, err, x.g, x.col, r, l)
	}
	return resp, x, nil
}

// graph resolves the base image config (when the recipe uses its base)
// and builds the graph.
func (x *runner) graph(ctx context.Context, gw gateway.Client) (*vmllb.Graph, error) {
	if x.g != nil {
		return x.g, nil
	}
	if x.r.NeedsBase() && x.r.BaseDebian == nil {
		cfg, err := x.s.baseConfig(ctx, gw)
		if err != nil {
			return nil, err
		}
		x.baseCfg = cfg
	}
	g, err := vmllb.Build(x.r, x.l, vmllb.Options{Platform: x.s.platform, BaseConfig: x.baseCfg})
	if err != nil {
		return nil, err
	}
	x.g = g
	return g, nil
}

func (x *runner) marshal(ctx context.Context, st bk.State) (*pb.Definition, error) {
	mo := []bk.ConstraintsOpt{bk.Platform(x.s.platform)}
	if x.opts.NoCache {
		mo = append(mo, bk.IgnoreCache)
	}
	def, err := st.Marshal(ctx, mo...)
	if err != nil {
		return nil, fmt.Errorf("marshaling LLB: %w", err)
	}
	return def.ToPB(), nil
}

// solveRef solves st and returns its single result reference.
func (x *runner) solveRef(ctx context.Context, gw gateway.Client, st bk.State) (gateway.Reference, *gateway.Result, error) {
	def, err := x.marshal(ctx, st)
	if err != nil {
		return nil, nil, err
	}
	rr, err := gw.Solve(ctx, gateway.SolveRequest{Definition: def, Evaluate: true, CacheImports: x.cacheImports()})
	if err != nil {
		return nil, nil, err
	}
	ref, err := rr.SingleRef()
	if err != nil {
		return nil, nil, err
	}
	return ref, rr, nil
}

// applyPatches solves the patch steps one at a time and reads each report.
// With stop, the first failing patch ends it with a *PatchError; without,
// every patch is tried (a patch after a failed one runs on the tree as the
// failed patch left it, which is the unpatched tree for diffs).
func (x *runner) applyPatches(ctx context.Context, gw gateway.Client, stop bool) ([]patch.Report, error) {
	var reports []patch.Report
	var firstErr error
	for i, ps := range x.g.Patches {
		ref, _, err := x.solveRef(ctx, gw, ps.Report)
		if err != nil {
			return reports, err
		}
		b, err := ref.ReadFile(ctx, gateway.ReadRequest{Filename: vmllb.ReportFile})
		if err != nil {
			return reports, fmt.Errorf("reading the report of patch %q: %w", ps.Patch.Name, err)
		}
		var rep patch.Report
		if err := json.Unmarshal(b, &rep); err != nil {
			return reports, fmt.Errorf("reading the report of patch %q: %w", ps.Patch.Name, err)
		}
		reports = append(reports, rep)
		if err := rep.Err(x.l.Upstream.Commit); err != nil {
			pe := &PatchError{Index: i, Report: rep, Commit: x.l.Upstream.Commit, Err: err}
			if x.patchErr == nil {
				x.patchErr = pe
			}
			if stop {
				return reports, pe
			}
			if firstErr == nil {
				firstErr = pe
			}
		}
	}
	return reports, firstErr
}

// cacheImports are the build's cache sources, for each gateway solve: a
// gateway build does not apply the session's imports by itself.
func (x *runner) cacheImports() []gateway.CacheOptionsEntry {
	var out []gateway.CacheOptionsEntry
	for _, c := range x.opts.CacheImports {
		out = append(out, gateway.CacheOptionsEntry{Type: c.Type, Attrs: c.Attrs})
	}
	return out
}

// cacheImportsJSON is the dockerfile frontend's "cache-imports" option.
func (x *runner) cacheImportsJSON() (string, error) {
	if len(x.opts.CacheImports) == 0 {
		return "", nil
	}
	b, err := json.Marshal(x.cacheImports())
	return string(b), err
}
