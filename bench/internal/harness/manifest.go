package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/registry"
)

// layers returns the layers of the image ref (HOST/repo@digest, or a tag)
// names (HOST/repo@digest or HOST/repo:tag); for an index, of its
// linux/amd64 manifest. Reading is a GET and
// is not counted as pushed.
func (b *bench) layers(ctx context.Context, ref string) ([]ocispec.Descriptor, error) {
	return imageLayers(ctx, registry.New(), ref)
}

func imageLayers(ctx context.Context, rc *registry.Client, ref string) ([]ocispec.Descriptor, error) {
	body, _, err := rc.FetchManifest(ctx, ref)
	if err != nil {
		return nil, err
	}
	var probe struct {
		MediaType string               `json:"mediaType"`
		Manifests []ocispec.Descriptor `json:"manifests"`
		Layers    []ocispec.Descriptor `json:"layers"`
		Config    *ocispec.Descriptor  `json:"config"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", ref, err)
	}
	if probe.Config != nil {
		return probe.Layers, nil
	}
	want := platforms.Only(platforms.MustParse("linux/amd64"))
	for _, m := range probe.Manifests {
		if m.Platform != nil && want.Match(*m.Platform) {
			repo := ref
			if i := lastAt(ref); i > 0 {
				repo = ref[:i]
			} else if i := lastColonAfterSlash(ref); i > 0 {
				repo = ref[:i]
			}
			return imageLayers(ctx, rc, repo+"@"+m.Digest.String())
		}
	}
	return nil, fmt.Errorf("manifest %s: no layers and no linux/amd64 manifest", ref)
}

func lastAt(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '@' {
			return i
		}
	}
	return -1
}

func lastColonAfterSlash(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		switch s[i] {
		case ':':
			return i
		case '/':
			return -1
		}
	}
	return -1
}

// baseLayers returns the base image's layer digests.
func (b *bench) baseLayers(ctx context.Context) []string {
	ls, err := b.layers(ctx, b.base)
	if err != nil {
		b.errorf("reading the base image's manifest: %v", err)
		return nil
	}
	var out []string
	for _, l := range ls {
		out = append(out, l.Digest.String())
	}
	return out
}

func parseFloat(s string) (float64, error) { return strconv.ParseFloat(s, 64) }
