package llb

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	bk "github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"github.com/moby/buildkit/solver/pb"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/internal/redact"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/recipe"
)

// Build makes the graph for r pinned by l.
func Build(r *recipe.Recipe, l *lock.Lock, opts Options) (*Graph, error) {
	if l == nil {
		return nil, fmt.Errorf("building graph: no lock")
	}
	if opts.Platform.OS == "" {
		p, err := lock.Platform(r)
		if err != nil {
			return nil, err
		}
		opts.Platform = p
	}
	if len(r.Patches) != len(l.Patches) {
		return nil, fmt.Errorf("building graph: the recipe has %d patches, the lock %d", len(r.Patches), len(l.Patches))
	}
	g := &Graph{Recipe: r, Lock: l, Options: opts}
	g.Source = g.source()
	g.add(Step{ID: "source", Kind: StepSource, Title: sourceTitle(r, l), State: g.Source})

	helper := bk.Local(HelperLocal,
		bk.IncludePatterns([]string{HelperBinary}),
		bk.SharedKeyHint(HelperLocal),
		bk.LocalUniqueID(HelperLocal),
		bk.WithCustomName("[vmbuild] helper"))
	if opts.Helper != nil {
		helper = *opts.Helper
	}
	g.helper = helper

	if r.NeedsBase() {
		switch {
		case r.BaseDebian != nil && l.Debian != nil:
			base, err := g.debianBase(helper)
			if err != nil {
				return nil, err
			}
			g.Base = base
			g.add(Step{ID: "base", Kind: StepBase, Title: "[vmbuild] base (Debian packages)", State: base})
		case r.BaseDebian != nil:
			return nil, fmt.Errorf("building graph: the lock has no Debian base (run `vmbuild lock`)")
		case l.Base == nil:
			return nil, fmt.Errorf("building graph: the lock has no base image")
		default:
			g.Base = g.base()
		}
	}

	tree := g.Source
	for i, p := range r.Patches {
		ps := g.patch(i, p, tree, helper)
		g.Patches = append(g.Patches, ps)
		g.add(Step{ID: "patch/" + p.Name, Kind: StepPatch, Name: p.Name, Title: patchTitle(i, len(r.Patches), p), State: ps.Tree})
		tree = ps.Tree
	}
	g.Patched = tree

	if df := r.Build.Dockerfile; df != nil {
		b, err := g.dockerfile(df)
		if err != nil {
			return nil, err
		}
		g.Dockerfile = b
		return g, nil
	}
	if err := g.native(); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *Graph) add(s Step) { g.Steps = append(g.Steps, s) }

func sourceTitle(r *recipe.Recipe, l *lock.Lock) string {
	return fmt.Sprintf("[vmbuild] source %s@%s", RedactURL(r.Upstream.Git), l.ShortCommit())
}

func patchTitle(i, n int, p recipe.Patch) string {
	return fmt.Sprintf("[vmbuild] patch %d/%d %s (%s)", i+1, n, p.Name, p.Kind)
}

// RedactURL is u as vmbuild publishes it (annotations, labels, history,
// progress titles): redact.URL's sanitized form, or, for a URL it cannot
// parse, redact.Text's. Recipes refuse credentials in URLs; this is the
// second line.
func RedactURL(u string) string {
	if clean, err := redact.URL(u); err == nil {
		return clean
	}
	return redact.Text(u)
}

func (g *Graph) source() bk.State {
	r, l := g.Recipe, g.Lock
	if _, local := r.LocalUpstream(); local {
		// buildkitd cannot fetch a path on the client: the build sends the
		// pinned commit's tree (git archive, mtimes = commit time) as a
		// local source. The unique id makes the definition deterministic.
		return bk.Local(SourceLocal,
			bk.SharedKeyHint(SourceLocal+"-"+l.Upstream.Commit),
			bk.LocalUniqueID(SourceLocal+"-"+l.Upstream.Commit),
			bk.WithCustomName(sourceTitle(r, l)))
	}
	return bk.Git(r.Upstream.Git, "",
		bk.GitRef(l.Upstream.Commit),
		bk.GitChecksum(l.Upstream.Commit),
		bk.GitMTimeCommit(),
		bk.WithCustomName(sourceTitle(r, l)))
}

func (g *Graph) base() bk.State {
	pin := g.Lock.Base
	name := fmt.Sprintf("[vmbuild] base %s", pin.Pinned())
	if pin.IsLayout() {
		return bk.OCILayout("vmbuild/base@"+pin.Digest,
			bk.OCIStore("", BaseStore),
			bk.Platform(g.Options.Platform),
			bk.WithCustomName(name))
	}
	return bk.Image(pin.Pinned(), bk.Platform(g.Options.Platform), bk.WithCustomName(name))
}

// patch is one patch step: the helper applies a diff in a scratch rootfs,
// or runs a script in the base image, on the tree mounted read-write, and
// writes its report.
func (g *Graph) patch(i int, p recipe.Patch, tree, helper bk.State) PatchStep {
	file := path.Base(p.File)
	patchSt := bk.Scratch().File(bk.Mkfile("/"+file, 0o644, p.Content), bk.WithCustomName(fmt.Sprintf("[vmbuild] patch %s content (sha256 %s)", p.Name, shortHex(p.SHA256))))
	args := []string{}
	var run bk.ExecState
	common := []bk.RunOption{
		bk.Network(bk.NetModeNone),
		bk.ReadonlyRootFS(),
		bk.WithCustomName(patchTitle(i, len(g.Recipe.Patches), p)),
	}
	switch p.Kind {
	case recipe.PatchDiff:
		args = append(args, helperMount+"/"+HelperBinary, "apply-diff",
			"--tree="+srcMount, "--patch="+patchMount+"/"+file, "--name="+p.Name, "--report="+outMount+ReportFile)
		if p.Offset {
			args = append(args, "--offset")
		}
		if p.Fuzz > 0 {
			args = append(args, "--fuzz="+strconv.Itoa(p.Fuzz))
		}
		if p.Optional {
			args = append(args, "--optional")
		}
		// An empty root with the helper mounted read-only: the step
		// depends on nothing but the helper, the tree and the patch, and
		// (unlike a root mount) a read-only mount is cached by content.
		root := bk.Scratch().File(bk.Mkdir(helperMount, 0o755, bk.WithCreatedTime(LayerTime)), bk.WithCustomName("[vmbuild] empty root"))
		run = root.Run(append(common,
			bk.Args(args),
			bk.Dir("/"),
			bk.AddMount(helperMount, helper, bk.Readonly),
		)...)
	case recipe.PatchScript:
		args = append(args, helperMount+"/"+HelperBinary, "run-script",
			"--tree="+srcMount, "--script="+patchMount+"/"+file, "--name="+p.Name, "--report="+outMount+ReportFile, "--shell=/bin/sh")
		if p.Optional {
			args = append(args, "--optional")
		}
		run = g.Base.Run(append(common,
			bk.Args(args),
			bk.Dir(srcMount),
			bk.AddMount(helperMount, helper, bk.Readonly),
			bk.AddMount("/tmp", bk.Scratch(), bk.Tmpfs()),
		)...)
	}
	run.AddMount(patchMount, patchSt, bk.Readonly)
	out := run.AddMount(srcMount, tree)
	report := run.AddMount(outMount, bk.Scratch())
	return PatchStep{Patch: p, Tree: out, Report: report}
}

func shortHex(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// dockerfile prepares the frontend call: upstream's Dockerfile on the
// patched tree. SOURCE_DATE_EPOCH is not a build arg unless the recipe opts
// in: the epoch reaches the exporter instead, where it does not enter step
// cache keys.
func (g *Graph) dockerfile(df *recipe.Dockerfile) (*DockerfileBuild, error) {
	opt := map[string]string{
		"filename":                df.Path,
		"platform":                platformString(g.Options.Platform),
		"build-arg:SOURCE_COMMIT": g.Lock.Upstream.Commit,
	}
	if df.Target != "" {
		opt["target"] = df.Target
	}
	for k, v := range df.Args {
		opt["build-arg:"+k] = v
	}
	if df.SourceDateEpochArg {
		opt["build-arg:SOURCE_DATE_EPOCH"] = strconv.FormatInt(g.Lock.Epoch(), 10)
	}
	// The build context's files carry a fixed time (LayerTime). COPY keeps
	// source mtimes, and BuildKit reuses a COPY step across commits by
	// content alone: with commit-time mtimes, a cached COPY from an older
	// commit would carry that commit's time and the image would depend on
	// the cache's history.
	ctxSt := bk.Scratch().File(
		bk.Copy(g.Patched, "/", "/", &bk.CopyInfo{CopyDirContentsOnly: true, CreatedTime: &LayerTime}),
		bk.WithCustomName("[vmbuild] build context (patched tree, fixed mtimes)"))
	b := &DockerfileBuild{
		Frontend:    "dockerfile.v0",
		FrontendOpt: opt,
		Inputs:      map[string]bk.State{"context": ctxSt, "dockerfile": g.Patched},
	}
	if len(df.BaseFor) > 0 {
		// The Debian base replaces these images as named contexts, as
		// `docker buildx build --build-context NAME=…` passes them: one
		// input, with its image config (PATH, platform, history) as the
		// input's metadata, and each name pointing at it.
		cfg, err := json.Marshal(g.debianBaseConfig())
		if err != nil {
			return nil, fmt.Errorf("building graph: the Debian base's image config: %w", err)
		}
		md, err := json.Marshal(map[string][]byte{exptypes.ExporterImageConfigKey: cfg})
		if err != nil {
			return nil, fmt.Errorf("building graph: the Debian base's image config: %w", err)
		}
		b.Inputs[BaseInput] = g.Base
		opt["input-metadata:"+BaseInput] = string(md)
		for _, ref := range df.BaseFor {
			opt["context:"+recipe.NamedContext(ref)] = "input:" + BaseInput
		}
	}
	if f := g.Lock.Frontend; f != nil {
		b.Frontend = "gateway.v0"
		opt["source"] = f.Pinned()
		opt["cmdline"] = f.Pinned()
	}
	g.add(Step{ID: "dockerfile", Kind: StepDockerfile, Title: fmt.Sprintf("[vmbuild] dockerfile %s target %q", df.Path, df.Target), State: g.Patched})
	return b, nil
}

func platformString(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// baseEnv is the base image's environment, or a default PATH.
func (g *Graph) baseEnv() []string {
	if g.Options.BaseConfig != nil && len(g.Options.BaseConfig.Config.Env) > 0 {
		return g.Options.BaseConfig.Config.Env
	}
	return []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
}

func (g *Graph) native() error {
	r := g.Recipe
	wd := r.Image.Workdir
	// Every file of the source layer gets the commit time. The time is in
	// this one op's definition, which is new for every commit anyway (its
	// content is); so the layer never depends on which earlier build the
	// cache holds.
	created := g.Lock.Upstream.CommitTime.UTC()
	g.SourceLayer = bk.Scratch().File(
		bk.Copy(g.Patched, "/", wd+"/", &bk.CopyInfo{CopyDirContentsOnly: true, CreateDestPath: true, CreatedTime: &created,
			IncludePatterns: r.Image.Include, AllowWildcard: len(r.Image.Include) > 0, AllowEmptyWildcard: len(r.Image.Include) > 0}),
		bk.WithCustomName(fmt.Sprintf("[vmbuild] source tree → %s", wd)))
	g.add(Step{ID: "source-layer", Kind: StepSourceLayer, Title: "[vmbuild] source tree", State: g.SourceLayer})

	outputs := map[string]bk.State{}
	for _, lay := range r.OrderedLayers() {
		ls, err := g.layer(lay, outputs)
		if err != nil {
			return err
		}
		outputs[lay.Name] = ls.Output
		g.Layers = append(g.Layers, ls)
		g.add(Step{ID: "layer/" + lay.Name, Kind: StepLayer, Name: lay.Name, Title: layerTitle(lay), State: ls.Run})
		g.add(Step{ID: "layer-output/" + lay.Name, Kind: StepLayerOutput, Name: lay.Name, Title: "[vmbuild] layer " + lay.Name + " outputs", State: ls.Output})
	}
	parts := []bk.State{g.Base, g.SourceLayer}
	for _, ls := range g.Layers {
		parts = append(parts, ls.Output)
	}
	g.Image = bk.Merge(parts, bk.WithCustomName("[vmbuild] image"))
	g.Config = g.imageConfig()
	return nil
}

func layerTitle(l recipe.Layer) string {
	run := strings.Join(strings.Fields(l.Run), " ")
	if len(run) > 60 {
		run = run[:57] + "..."
	}
	return fmt.Sprintf("[vmbuild] layer %s: %s", l.Name, run)
}

// layer runs one native layer: on the base, plus its declared inputs
// copied from the patched tree into the workdir, plus the outputs of the
// layers it needs. Only its outputs are kept, on scratch, with fixed
// mtimes: the layer's blob depends on nothing but its inputs.
func (g *Graph) layer(l recipe.Layer, outputs map[string]bk.State) (LayerStep, error) {
	r := g.Recipe
	wd := r.Image.Workdir
	parts := []bk.State{g.Base}
	if len(l.Inputs) > 0 {
		in := bk.Scratch().File(
			bk.Copy(g.Patched, "/", wd+"/", &bk.CopyInfo{
				CopyDirContentsOnly: true,
				CreateDestPath:      true,
				IncludePatterns:     l.Inputs,
				AllowWildcard:       true,
				AllowEmptyWildcard:  true,
				// Inputs carry a fixed time, not the commit's: a step is a
				// function of its inputs' content only, so a cached run and
				// a fresh one produce the same bytes even if a tool records
				// input mtimes.
				CreatedTime: &LayerTime,
			}),
			bk.WithCustomName(fmt.Sprintf("[vmbuild] layer %s inputs: %s", l.Name, strings.Join(l.Inputs, " "))))
		parts = append(parts, in)
	} else {
		parts = append(parts, bk.Scratch().File(bk.Mkdir(wd, 0o755, bk.WithParents(true), bk.WithCreatedTime(LayerTime)),
			bk.WithCustomName(fmt.Sprintf("[vmbuild] layer %s workdir", l.Name))))
	}
	needs := append([]string(nil), l.Needs...)
	sort.Strings(needs)
	for _, n := range needs {
		parts = append(parts, outputs[n])
	}
	env := append([]string(nil), g.baseEnv()...)
	for _, k := range recipe.SortedKeys(l.Env) {
		env = setEnv(env, k, l.Env[k])
	}
	if d := l.Deps; d != nil && d.Manager == recipe.DepsBundler {
		env = setEnv(env, "BUNDLE_PATH", bundlePath(l))
		if ld, ok := g.Lock.DepsLock.LayerDeps(l.Name); ok && d.PerGem {
			parts = append(parts, g.perGemInstalls(l, ld, env)...)
		}
	}
	rootfs := bk.Merge(parts, bk.WithCustomName(fmt.Sprintf("[vmbuild] layer %s rootfs", l.Name)))

	if l.SourceDateEpoch {
		env = setEnv(env, "SOURCE_DATE_EPOCH", strconv.FormatInt(g.Lock.Epoch(), 10))
	}
	args := []string{"/bin/sh", "-ec", l.Run}
	var depsSet *lock.LayerDeps
	if l.Deps != nil {
		ld, ok := g.Lock.DepsLock.LayerDeps(l.Name)
		if !ok {
			return LayerStep{}, fmt.Errorf("building graph: layer %s declares deps the lock does not pin (run `vmbuild lock`)", l.Name)
		}
		depsSet = ld
		args = depsRun(l, ld, wd)
	}
	opts := []bk.RunOption{
		bk.Args(args),
		bk.Dir(wd),
		bk.WithCustomName(layerTitle(l)),
	}
	if depsSet != nil {
		m := mirror(fmt.Sprintf("[vmbuild] layer %s: %d pinned packages (%s)", l.Name, len(depsSet.Packages), depsSet.Manager), depsPackages(depsSet))
		if depsSet.Manager == "bundler" {
			m = gemMirror(l, depsSet)
		}
		opts = append(opts,
			bk.AddMount(helperMount, g.helper, bk.Readonly),
			bk.AddMount(DepsMount, m, bk.Readonly))
	}
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		opts = append(opts, bk.AddEnv(k, v))
	}
	if l.Network == recipe.NetworkHost {
		opts = append(opts, bk.Network(bk.NetModeHost))
	} else {
		opts = append(opts, bk.Network(bk.NetModeNone))
	}
	for _, c := range l.Cache {
		id := fmt.Sprintf("vmbuild/%s/%s%s", r.Name, l.Name, c)
		opts = append(opts, bk.AddMount(c, bk.Scratch(), bk.AsPersistentCacheDir(id, bk.CacheMountLocked)))
	}
	run := rootfs.Run(opts...)
	root := run.Root()

	var fa *bk.FileAction
	for _, o := range l.Outputs {
		ci := &bk.CopyInfo{CopyDirContentsOnly: true, CreateDestPath: true, CreatedTime: &LayerTime, AllowWildcard: false}
		if fa == nil {
			fa = bk.Copy(root, o, o, ci)
		} else {
			fa = fa.Copy(root, o, o, ci)
		}
	}
	out := bk.Scratch().File(fa, bk.WithCustomName(fmt.Sprintf("[vmbuild] layer %s outputs: %s", l.Name, strings.Join(l.Outputs, " "))))
	if len(l.Outputs) > 1 {
		// Each copy sets its own files' times, but adding an output to a
		// directory an earlier one created moves that directory's mtime
		// to the build's time: one copy of the whole result sets every
		// time, directories after their contents.
		out = bk.Scratch().File(
			bk.Copy(out, "/", "/", &bk.CopyInfo{CopyDirContentsOnly: true, CreatedTime: &LayerTime}),
			bk.WithCustomName(fmt.Sprintf("[vmbuild] layer %s outputs (fixed times)", l.Name)))
	}
	return LayerStep{Layer: l, Run: root, Output: out}, nil
}

func setEnv(env []string, k, v string) []string {
	for i, e := range env {
		if strings.HasPrefix(e, k+"=") {
			out := append([]string(nil), env...)
			out[i] = k + "=" + v
			return out
		}
	}
	return append(env, k+"="+v)
}

// Annotations are the OCI annotations every vmbuild image carries, on the
// manifest (and the index descriptor in an OCI layout).
func Annotations(r *recipe.Recipe, l *lock.Lock) map[string]string {
	return map[string]string{
		ocispec.AnnotationSource:   RedactURL(r.Upstream.Git),
		ocispec.AnnotationRevision: l.Upstream.Commit,
		ocispec.AnnotationCreated:  l.Upstream.CommitTime.UTC().Format("2006-01-02T15:04:05Z"),
	}
}

// imageConfig is the native image's config: the base's, with the recipe's
// image settings on top. created and history times are the commit time.
func (g *Graph) imageConfig() ocispec.Image {
	r, l := g.Recipe, g.Lock
	var img ocispec.Image
	if g.Options.BaseConfig != nil {
		img = *g.Options.BaseConfig
		img.Config.Env = append([]string(nil), img.Config.Env...)
		img.History = append([]ocispec.History(nil), img.History...)
	} else {
		img.Config.Env = g.baseEnv()
	}
	img.Platform = g.Options.Platform
	created := l.Upstream.CommitTime.UTC()
	img.Created = &created
	img.RootFS = ocispec.RootFS{Type: "layers"} // filled by the exporter
	for _, k := range recipe.SortedKeys(r.Image.Env) {
		img.Config.Env = setEnv(img.Config.Env, k, r.Image.Env[k])
	}
	img.Config.WorkingDir = r.Image.Workdir
	if r.Image.User != "" {
		img.Config.User = r.Image.User
	}
	if r.Image.Entrypoint != nil {
		img.Config.Entrypoint = r.Image.Entrypoint
		img.Config.Cmd = nil
	}
	if r.Image.Cmd != nil {
		img.Config.Cmd = r.Image.Cmd
	}
	if len(r.Image.Expose) > 0 {
		img.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range r.Image.Expose {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			img.Config.ExposedPorts[p] = struct{}{}
		}
	}
	labels := map[string]string{}
	for k, v := range img.Config.Labels {
		labels[k] = v
	}
	for k, v := range r.Image.Labels {
		labels[k] = v
	}
	for k, v := range Annotations(r, l) {
		labels[k] = v
	}
	img.Config.Labels = labels
	if l.Debian != nil && g.Options.BaseConfig == nil {
		img.History = append(img.History, g.debianHistory())
	}
	img.History = append(img.History, ocispec.History{
		Created:   &created,
		CreatedBy: fmt.Sprintf("vmbuild: source %s@%s → %s", RedactURL(r.Upstream.Git), l.Upstream.Commit, r.Image.Workdir),
		Comment:   "vmbuild",
	})
	for _, ls := range g.Layers {
		img.History = append(img.History, ocispec.History{
			Created:   &created,
			CreatedBy: fmt.Sprintf("vmbuild: layer %s: %s", ls.Layer.Name, strings.Join(strings.Fields(ls.Layer.Run), " ")),
			Comment:   "vmbuild",
		})
	}
	return img
}

// debianHistory is the history entry of the Debian base's one layer.
func (g *Graph) debianHistory() ocispec.History {
	d := g.Lock.Debian
	created := g.Lock.Upstream.CommitTime.UTC()
	return ocispec.History{
		Created:   &created,
		CreatedBy: fmt.Sprintf("vmbuild: base of %d Debian packages from %s %s (%s), InRelease sha256:%s", d.Packages, d.Mirror, d.Suite, d.Architecture, d.InRelease.SHA256),
		Comment:   "vmbuild",
	}
}

// debianBaseConfig is the Debian base's image config, for a Dockerfile
// whose images it replaces: the platform, a default PATH (the base sets
// no environment) and the history of its layer.
func (g *Graph) debianBaseConfig() ocispec.Image {
	var img ocispec.Image
	img.Platform = g.Options.Platform
	img.Config.Env = g.baseEnv()
	img.RootFS = ocispec.RootFS{Type: "layers"}
	img.History = []ocispec.History{g.debianHistory()}
	return img
}

// Definition marshals the graph's result: the image in native mode, the
// patched tree in dockerfile mode.
func (g *Graph) Definition(ctx context.Context) (*bk.Definition, error) {
	st := g.Image
	if g.Dockerfile != nil {
		st = g.Patched
	}
	def, err := st.Marshal(ctx, bk.Platform(g.Options.Platform))
	if err != nil {
		return nil, fmt.Errorf("marshaling LLB: %w", err)
	}
	return def, nil
}

// Digest is the LLB definition's digest: sha256 over the marshaled ops in
// order. Recorded in provenance as internalParameters.llbDigest.
func Digest(def *bk.Definition) digest.Digest {
	d := digest.SHA256.Digester()
	for _, op := range def.Def {
		dd := digest.FromBytes(op)
		d.Hash().Write([]byte(dd.String()))
	}
	return d.Digest()
}

// VertexDigest is the digest of the vertex that produces st, as BuildKit's
// solve status reports it.
func VertexDigest(ctx context.Context, st bk.State, p ocispec.Platform) (digest.Digest, error) {
	def, err := st.Marshal(ctx, bk.Platform(p))
	if err != nil {
		return "", err
	}
	if len(def.Def) == 0 {
		return "", fmt.Errorf("empty definition")
	}
	var op pb.Op
	if err := op.UnmarshalVT(def.Def[len(def.Def)-1]); err != nil {
		return "", err
	}
	if len(op.Inputs) == 0 {
		return "", fmt.Errorf("definition has no terminal op")
	}
	return digest.Digest(op.Inputs[0].Digest), nil
}
