package yarn

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/vmbuild/vmbuild/deps/npm"
	"github.com/vmbuild/vmbuild/errs"
)

func resolveV1(ctx context.Context, fsys fs.FS, lockfile string, raw []byte, opts npm.Options) (*npm.Set, error) {
	return nil, fmt.Errorf("resolving %s: %w: Yarn v1 lockfiles are not supported yet", lockfile, errs.ErrDependency)
}
