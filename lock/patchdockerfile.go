package lock

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vmbuild/vmbuild/patch"
	"github.com/vmbuild/vmbuild/recipe"
)

// patchDockerfile applies the recipe's diff patches to the Dockerfile
// read at the locked commit, so that a patch that changes a FROM line pins
// the image the build will use. Only each patch's part about the
// Dockerfile is applied. Script patches cannot run outside the build; a
// script that edits the Dockerfile's images is caught at build time by the
// source policy (an image the lock does not know is refused).
func (res Resolver) patchDockerfile(ctx context.Context, r *recipe.Recipe, path string, content []byte) ([]byte, error) {
	for _, p := range r.Patches {
		if p.Kind != recipe.PatchDiff {
			continue
		}
		parsed, err := patch.Parse(p.Name, p.Content)
		if err != nil {
			return nil, fmt.Errorf("parsing patch %q: %w", p.Name, err)
		}
		var files []*patch.FileDiff
		for _, f := range parsed.Files {
			if f.Path() == path || f.OldPath == path {
				files = append(files, f)
			}
		}
		if len(files) == 0 {
			continue
		}
		if content, err = res.applyToFile(ctx, &patch.Patch{Name: parsed.Name, Files: files}, p, path, content); err != nil {
			return nil, err
		}
	}
	return content, nil
}

// applyToFile applies sub, a patch about the one file path, to content.
func (res Resolver) applyToFile(ctx context.Context, sub *patch.Patch, p recipe.Patch, path string, content []byte) ([]byte, error) {
	dir, err := os.MkdirTemp(res.WorkDir, "vmbuild-dockerfile-")
	if err != nil {
		return nil, fmt.Errorf("applying patch %q to %s: %w", p.Name, path, err)
	}
	defer os.RemoveAll(dir)
	target := filepath.Join(dir, filepath.FromSlash(path))
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return nil, fmt.Errorf("applying patch %q to %s: %w", p.Name, path, err)
	}
	if err := os.WriteFile(target, content, 0o644); err != nil {
		return nil, fmt.Errorf("applying patch %q to %s: %w", p.Name, path, err)
	}
	// Optional: the rest of the patch set is checked by the build, which
	// applies it whole; here only the Dockerfile's images matter.
	rep, err := sub.Apply(ctx, dir, patch.WithOffset(p.Offset), patch.WithFuzz(p.Fuzz), patch.WithOptional(true))
	if err != nil {
		return nil, fmt.Errorf("applying patch %q to %s: %w", p.Name, path, err)
	}
	if err := rep.Err(""); err != nil {
		return nil, err
	}
	return os.ReadFile(target)
}
