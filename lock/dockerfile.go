package lock

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/moby/buildkit/solver/pb"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// DockerfileInputs are the images a Dockerfile build would pull.
type DockerfileInputs struct {
	// Syntax is the `# syntax=` frontend image, if the Dockerfile names one.
	Syntax string
	// Images are the normalized references of every image the build of
	// the target would use (FROM, COPY --from, RUN --mount=from), sorted.
	Images []string
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
