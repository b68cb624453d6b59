package build

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/platforms"
	bk "github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	gateway "github.com/moby/buildkit/frontend/gateway/client"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/secrets/secretsprovider"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/tonistiigi/fsutil"

	"github.com/vmbuild/vmbuild/errs"
	vmllb "github.com/vmbuild/vmbuild/llb"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/patch"
	"github.com/vmbuild/vmbuild/recipe"
)

// buildSession holds what the client side of a build provides to
// buildkitd: local sources (the helper, a local upstream's tree) and the
// content store of an oci-layout base.
type buildSession struct {
	r        *recipe.Recipe
	l        *lock.Lock
	platform ocispec.Platform
	locals   map[string]fsutil.FS
	stores   map[string]content.Store
	layout   content.Store
	// attach are session attachables of the build's own (the upstream's
	// git credentials), added to Options.Session.
	attach []session.Attachable
	tmp    []string
}

func newSession(ctx context.Context, r *recipe.Recipe, l *lock.Lock, opts Options) (*buildSession, error) {
	plat, err := lock.Platform(r)
	if err != nil {
		return nil, err
	}
	// Unsafe diffs (.., absolute paths, .git/) are refused before anything
	// is applied; the helper checks again, and also refuses writes through
	// symbolic links, inside the build.
	for _, p := range r.Patches {
		if p.Kind != recipe.PatchDiff {
			continue
		}
		parsed, err := patch.Parse(p.Name, p.Content)
		if err != nil {
			return nil, fmt.Errorf("reading patch %q (%s): %w: %w", p.Name, p.File, errs.ErrPatchFailed, err)
		}
		if err := parsed.CheckSafe(); err != nil {
			return nil, fmt.Errorf("checking patch %q (%s): %w", p.Name, p.File, err)
		}
	}
	s := &buildSession{r: r, l: l, platform: plat, locals: map[string]fsutil.FS{}, stores: map[string]content.Store{}}
	work := opts.WorkDir
	if work == "" {
		work = os.TempDir()
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, fmt.Errorf("creating work dir: %w", err)
	}
	// The helper is offered whenever a step runs it: patches, the Debian
	// base, dependency installs.
	if r.NeedsHelper() {
		if opts.HelperPath == "" {
			return nil, fmt.Errorf("building %s: %w: the recipe has patches, a Debian base or deps, and no vmbuild-helper was found; run `make build` (it builds bin/vmbuild-helper) or set VMBUILD_HELPER", r.Name, errs.ErrMissingTool)
		}
		dir, err := helperDir(work, opts.HelperPath)
		if err != nil {
			s.close()
			return nil, err
		}
		s.tmp = append(s.tmp, dir)
		fs, err := fsutil.NewFS(dir)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("sharing vmbuild-helper: %w", err)
		}
		s.locals[vmllb.HelperLocal] = fs
	}
	if path, ok := r.LocalUpstream(); ok {
		dir, err := sourceTree(ctx, work, path, l.Upstream.Commit)
		if err != nil {
			s.close()
			return nil, err
		}
		fs, err := fsutil.NewFS(dir)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("sharing the upstream tree: %w", err)
		}
		s.locals[vmllb.SourceLocal] = fs
	}
	if opts.GitCredentials != nil {
		if _, local := r.LocalUpstream(); !local {
			a, err := gitAuth(ctx, r.Upstream.Git, opts.GitCredentials)
			if err != nil {
				s.close()
				return nil, err
			}
			if a != nil {
				s.attach = append(s.attach, a)
			}
		}
	}
	if r.NeedsBase() && l.Base != nil && l.Base.IsLayout() {
		dir, _, _, err := recipe.ParseOCILayoutRef(l.Base.Ref, r.Dir)
		if err != nil {
			s.close()
			return nil, err
		}
		store, err := local.NewStore(dir)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("opening base layout %s: %w", dir, err)
		}
		s.layout = store
		s.stores[vmllb.BaseStore] = store
	}
	return s, nil
}

// gitAuth is the secrets provider that gives BuildKit's git source the
// upstream's credentials, or nil when there are none (or the URL is not
// http(s), where ssh keys and agents apply instead).
func gitAuth(ctx context.Context, remote string, creds func(ctx context.Context, url string) (string, string, bool, error)) (session.Attachable, error) {
	u, err := url.Parse(remote)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, nil
	}
	user, password, ok, err := creds(ctx, remote)
	if err != nil {
		return nil, fmt.Errorf("getting git credentials for %s: %w", u.Host, err)
	}
	if !ok {
		return nil, nil
	}
	header := "basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	return secretsprovider.FromMap(map[string][]byte{bk.GitAuthHeaderKey + "." + u.Host: []byte(header)}), nil
}

func (s *buildSession) close() {
	for _, d := range s.tmp {
		_ = os.RemoveAll(d)
	}
}

// helperDir makes a directory holding only the helper, named as the graph
// expects.
func helperDir(work, helper string) (string, error) {
	st, err := os.Stat(helper)
	if err != nil {
		return "", fmt.Errorf("finding vmbuild-helper: %w: %v", errs.ErrMissingTool, err)
	}
	if st.IsDir() {
		return "", fmt.Errorf("finding vmbuild-helper: %w: %s is a directory", errs.ErrMissingTool, helper)
	}
	dir, err := os.MkdirTemp(work, "vmbuild-helper-")
	if err != nil {
		return "", fmt.Errorf("staging vmbuild-helper: %w", err)
	}
	dst := filepath.Join(dir, vmllb.HelperBinary)
	if err := os.Link(helper, dst); err != nil {
		b, err := os.ReadFile(helper)
		if err != nil {
			return "", fmt.Errorf("staging vmbuild-helper: %w", err)
		}
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			return "", fmt.Errorf("staging vmbuild-helper: %w", err)
		}
	}
	return dir, nil
}

// sourceTree exports commit of the local repository at repo into a cache
// directory (reused across builds of the same commit), with git archive's
// file modes and mtimes (the commit time).
func sourceTree(ctx context.Context, work, repo, commit string) (string, error) {
	dir := filepath.Join(work, "vmbuild-sources", commit)
	if _, err := os.Stat(filepath.Join(dir, ".vmbuild-complete")); err == nil {
		return filepath.Join(dir, "tree"), nil
	}
	_ = os.RemoveAll(dir)
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		return "", fmt.Errorf("exporting upstream tree: %w", err)
	}
	if err := (lock.GitCLI{}).Export(ctx, repo, commit, tree); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, ".vmbuild-complete"), nil, 0o644); err != nil {
		return "", err
	}
	return tree, nil
}

// baseConfig returns the base image's config for the target platform.
func (s *buildSession) baseConfig(ctx context.Context, gw gateway.Client) (*ocispec.Image, error) {
	pin := s.l.Base
	if s.layout != nil {
		return layoutConfig(ctx, s.layout, pin, s.platform)
	}
	_, _, b, err := gw.ResolveImageConfig(ctx, pin.Pinned(), sourceresolver.Opt{
		LogName:  "[vmbuild] base " + pin.Pinned(),
		ImageOpt: &sourceresolver.ResolveImageOpt{Platform: &s.platform, ResolveMode: "default"},
	})
	if err != nil {
		return nil, fmt.Errorf("resolving base image %s: %w: %w", pin.Pinned(), errs.ErrImageResolve, err)
	}
	var img ocispec.Image
	if err := json.Unmarshal(b, &img); err != nil {
		return nil, fmt.Errorf("reading base image config: %w", err)
	}
	return &img, nil
}

func layoutConfig(ctx context.Context, store content.Store, pin *lock.ImagePin, plat ocispec.Platform) (*ocispec.Image, error) {
	dgst := pin.ManifestFor(plat)
	info, err := store.Info(ctx, digestOf(dgst))
	if err != nil {
		return nil, fmt.Errorf("reading base image %s: %w: the locked manifest %s is not in the layout (was the layout rebuilt? re-pin it with `vmbuild lock --update`): %v", pin.Ref, errs.ErrImageResolve, dgst, err)
	}
	mb, err := content.ReadBlob(ctx, store, ocispec.Descriptor{Digest: info.Digest, Size: info.Size})
	if err != nil {
		return nil, fmt.Errorf("reading base image %s: %w", pin.Ref, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return nil, fmt.Errorf("reading base image %s: %w", pin.Ref, err)
	}
	if m.Config.Digest == "" {
		return nil, fmt.Errorf("reading base image %s: %w: %s is not an image manifest", pin.Ref, errs.ErrImageResolve, dgst)
	}
	cb, err := content.ReadBlob(ctx, store, m.Config)
	if err != nil {
		return nil, fmt.Errorf("reading base image %s config: %w", pin.Ref, err)
	}
	var img ocispec.Image
	if err := json.Unmarshal(cb, &img); err != nil {
		return nil, fmt.Errorf("reading base image %s config: %w", pin.Ref, err)
	}
	if img.OS != "" && !platforms.Only(plat).Match(img.Platform) {
		return nil, fmt.Errorf("reading base image %s: %w: it is %s, not %s", pin.Ref, errs.ErrImageResolve, platforms.Format(img.Platform), platforms.Format(plat))
	}
	return &img, nil
}

func decodeBase64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
