// Package yarn resolves a yarn.lock — Yarn v1 ("# yarn lockfile v1") or
// Yarn Berry (2+, YAML with __metadata) — to the npm-registry tarballs the
// install needs, as an npm.Set.
//
// Berry: the scope is `yarn workspaces focus [--production] WS…` (every
// workspace when none is named): the closure of the workspaces'
// dependencies through the lockfile, with Yarn's own rules for optional
// packages, `conditions` and builtin patches. Packages are laid out as a
// registry mirror (NAME/-/BASENAME-VERSION.tgz); Yarn installs from it with
// YARN_NPM_REGISTRY_SERVER pointing at a loopback server.
//
// Yarn v1: the scope is `yarn install --frozen-lockfile` from the root
// package.json and its workspaces. Yarn v1 does not rewrite the lockfile's
// registry hosts, so it installs with --offline from a yarn-offline-mirror
// directory; Path is the file name Yarn v1 looks for there.
package yarn

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"

	"github.com/vmbuild/vmbuild/deps/npm"
	"github.com/vmbuild/vmbuild/errs"
)

// DefaultRegistry is Yarn's default registry (both v1 and Berry). It
// serves the same tarballs as registry.npmjs.org.
const DefaultRegistry = "https://registry.yarnpkg.com"

// Resolve reads the yarn.lock at lockfile in fsys, tells v1 from Berry by
// its content, and resolves it (see ResolveBerry and ResolveV1).
func Resolve(ctx context.Context, fsys fs.FS, lockfile string, opts npm.Options) (*npm.Set, error) {
	raw, err := fs.ReadFile(fsys, lockfile)
	if err != nil {
		return nil, fmt.Errorf("reading yarn lockfile: %w", err)
	}
	switch Detect(raw) {
	case npm.ManagerYarnV1:
		return resolveV1(ctx, fsys, lockfile, raw, opts)
	case npm.ManagerYarnBerry:
		return resolveBerry(ctx, fsys, lockfile, raw, opts)
	}
	return nil, fmt.Errorf("parsing %s: %w: neither a Yarn v1 lockfile (\"# yarn lockfile v1\") nor a Yarn Berry one (__metadata)", lockfile, errs.ErrDependency)
}

// Detect says which Yarn wrote a lockfile: npm.ManagerYarnV1,
// npm.ManagerYarnBerry, or "".
func Detect(raw []byte) string {
	for _, line := range bytes.Split(raw, []byte("\n")) {
		line = bytes.TrimSpace(line)
		switch {
		case bytes.Equal(line, []byte("# yarn lockfile v1")):
			return npm.ManagerYarnV1
		case bytes.HasPrefix(line, []byte("__metadata:")):
			return npm.ManagerYarnBerry
		case len(line) == 0 || line[0] == '#':
			continue
		}
	}
	return ""
}
