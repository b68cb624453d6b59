package lock

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/moby/buildkit/solver/pb"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/recipe"
)

// DockerfileInputs are the images a Dockerfile build would pull.
type DockerfileInputs struct {
	// Syntax is the `# syntax=` frontend image, if the Dockerfile names one.
	Syntax string
	// Images are the normalized references of every image the build of
	// the target would use (FROM, COPY --from, RUN --mount=from), sorted.
	Images []string
	// Stages are the names of the Dockerfile's named stages (AS NAME), in
	// order.
	Stages []string
}

// fakeConfigResolver answers image-config lookups with an empty config, so
// that the Dockerfile can be converted to LLB without a registry: only the
// set of images matters here, not their content.
type fakeConfigResolver struct{ platform ocispec.Platform }

func (f fakeConfigResolver) ResolveImageConfig(ctx context.Context, ref string, opt sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	img := ocispec.Image{Platform: f.platform}
	img.RootFS.Type = "layers"
	// One layer: an image without layers is taken for scratch and dropped.
	img.RootFS.DiffIDs = []digest.Digest{digest.FromString(ref)}
	b, err := json.Marshal(img)
	return ref, "", b, err
}

// ScanDockerfile converts a Dockerfile to LLB in-process, exactly as the
// dockerfile frontend would for target and args, and lists the images the
// result pulls. Build args the Dockerfile uses in FROM lines (versions,
// registries) are expanded as the frontend expands them.
func ScanDockerfile(ctx context.Context, dt []byte, target string, args map[string]string, platform ocispec.Platform) (*DockerfileInputs, error) {
	in := &DockerfileInputs{}
	if syntax, _, _, ok := parser.DetectSyntax(dt); ok {
		in.Syntax = syntax
	}
	ast, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		return nil, fmt.Errorf("reading Dockerfile: %w", err)
	}
	stages, _, err := instructions.Parse(ast.AST, &linter.Linter{})
	if err != nil {
		return nil, fmt.Errorf("reading Dockerfile: %w", err)
	}
	for _, st := range stages {
		if st.Name != "" {
			in.Stages = append(in.Stages, st.Name)
		}
	}
	res, err := dockerfile2llb.Dockerfile2LLB(ctx, dt, dockerfile2llb.ConvertOpt{
		Config:         dockerui.Config{BuildArgs: args, Target: target},
		TargetPlatform: &platform,
		MetaResolver:   fakeConfigResolver{platform: platform},
	})
	if err != nil {
		return nil, fmt.Errorf("reading Dockerfile: %w", err)
	}
	def, err := res.State.Marshal(ctx, llb.Platform(platform))
	if err != nil {
		return nil, fmt.Errorf("reading Dockerfile: %w", err)
	}
	seen := map[string]bool{}
	for _, b := range def.Def {
		var op pb.Op
		if err := op.UnmarshalVT(b); err != nil {
			return nil, fmt.Errorf("reading Dockerfile: %w", err)
		}
		src := op.GetSource()
		if src == nil || !strings.HasPrefix(src.Identifier, "docker-image://") {
			continue
		}
		ref := strings.TrimPrefix(src.Identifier, "docker-image://")
		if !seen[ref] {
			seen[ref] = true
			in.Images = append(in.Images, ref)
		}
	}
	sort.Strings(in.Images)
	return in, nil
}

// ReplaceImages drops from in.Images those baseFor names (the images the
// recipe's Debian base replaces as named contexts; matched by name as the
// frontend matches them, docker.io/library/node:24 = node:24), so that
// lock neither resolves nor pins them, and returns what is left. An entry
// that names no image in.Images holds, or names one of the Dockerfile's
// stages, is an error: the frontend would replace nothing, or the whole
// stage, which the scan does not model.
func ReplaceImages(in *DockerfileInputs, baseFor []string) ([]string, error) {
	if len(baseFor) == 0 {
		return in.Images, nil
	}
	replaced := map[string]bool{}
	for _, ref := range baseFor {
		name := recipe.NamedContext(ref)
		for _, st := range in.Stages {
			if recipe.NamedContext(st) == name {
				return nil, fmt.Errorf("%w: build.dockerfile.baseFor: %q names the Dockerfile's stage %q; give the image that stage starts FROM instead", errs.ErrInvalidRecipe, ref, st)
			}
		}
		replaced[name] = false
	}
	var kept []string
	for _, im := range in.Images {
		name := recipe.NamedContext(im)
		if _, ok := replaced[name]; ok {
			replaced[name] = true
			continue
		}
		kept = append(kept, im)
	}
	for _, ref := range baseFor {
		if !replaced[recipe.NamedContext(ref)] {
			uses := "no image"
			if len(in.Images) > 0 {
				uses = strings.Join(in.Images, ", ")
			}
			return nil, fmt.Errorf("%w: build.dockerfile.baseFor: the Dockerfile does not use image %q (it uses %s)", errs.ErrInvalidRecipe, ref, uses)
		}
	}
	return kept, nil
}
