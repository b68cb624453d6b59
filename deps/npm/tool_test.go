package npm

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/deps/internal/jstest"
	"github.com/vmbuild/vmbuild/errs"
)

func TestParsePackageManager(t *testing.T) {
	for _, tc := range []struct {
		field, pkg, url, entry, corepack, of string
	}{
		{"npm@10.9.0", "npm", "https://registry.npmjs.org/npm/-/npm-10.9.0.tgz", "package/bin/npm-cli.js", "", ""},
		{"yarn@1.22.22", "yarn", "https://registry.npmjs.org/yarn/-/yarn-1.22.22.tgz", "package/bin/yarn.js", "", ""},
		{"yarn@4.18.0", "@yarnpkg/cli-dist", "https://registry.npmjs.org/@yarnpkg/cli-dist/-/cli-dist-4.18.0.tgz", "package/bin/yarn.js", "", ""},
		{"yarn@1.22.22+sha1.AC34549E6AA8E7EAD463A7407E1C7390F61A6610", "yarn", "", "package/bin/yarn.js", "sha1.ac34549e6aa8e7ead463a7407e1c7390f61a6610", "tarball"},
		{"yarn@4.12.0+sha224.877304a94a6946ab1d58a358df5ff8af2f7c9d86ea506f05f5c9df05", "@yarnpkg/cli-dist", "", "package/bin/yarn.js", "sha224.877304a94a6946ab1d58a358df5ff8af2f7c9d86ea506f05f5c9df05", "package/bin/yarn.js"},
		{"pnpm@9.15.0", "pnpm", "", "package/bin/pnpm.cjs", "", ""},
		{"pnpm@11.0.0-rc.1", "pnpm", "", "package/bin/pnpm.mjs", "", ""},
	} {
		tool, err := ParsePackageManager(tc.field, "")
		if err != nil {
			t.Errorf("%s: %v", tc.field, err)
			continue
		}
		if tool.Package.Name != tc.pkg || tool.Entry != tc.entry || tool.Corepack != tc.corepack || tool.CorepackOf != tc.of || (tc.url != "" && tool.Package.URL != tc.url) {
			t.Errorf("%s: %+v", tc.field, tool)
		}
		if tool.Package.Path != TarballPath(tool.Package.Name, tool.Version) {
			t.Errorf("%s: path %s", tc.field, tool.Package.Path)
		}
	}
	for _, bad := range []string{"yarn", "yarn@^4", "yarn@4.18", "bun@1.0.0", "yarn@https://example.com/yarn.js", "yarn@4.18.0+md5.abc", "yarn@4.18.0+sha256.abc", "npm@1.2.3/../x"} {
		if _, err := ParsePackageManager(bad, ""); !errors.Is(err, errs.ErrDependency) {
			t.Errorf("%s: want ErrDependency, got %v", bad, err)
		}
	}
	tool, _ := ParsePackageManager("yarn@4.18.0", "https://mirror.example/npm/")
	if tool.Package.URL != "https://mirror.example/npm/@yarnpkg/cli-dist/-/cli-dist-4.18.0.tgz" {
		t.Errorf("registry: %s", tool.Package.URL)
	}
}

// The corepack hashes here are corepack 0.34.6's own defaults (its
// config.json): yarn 1.22.22's is the sha1 of the registry tarball, yarn
// 4.12.0's the sha224 of bin/yarn.js — not of @yarnpkg/cli-dist's tarball.
func TestPinToolCorepack(t *testing.T) {
	jstest.Integration(t)
	f := &deps.Fetcher{}
	for _, field := range []string{
		"yarn@1.22.22+sha1.ac34549e6aa8e7ead463a7407e1c7390f61a6610",
		"yarn@4.12.0+sha224.877304a94a6946ab1d58a358df5ff8af2f7c9d86ea506f05f5c9df05",
		"npm@11.8.0+sha1.d1bc924deb3b4d412055b1755098a70bf8a4713b",
		"yarn@4.18.0",
	} {
		tool, err := ParsePackageManager(field, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := tool.Pin(context.Background(), f); err != nil {
			t.Errorf("%s: %v", field, err)
			continue
		}
		t.Logf("%s → %s sha256:%s (%d bytes)", field, tool.Package.ID(), tool.Package.SHA256, tool.Package.Size)
	}
	// A wrong hash names the tool and what was hashed.
	for _, field := range []string{
		"yarn@4.12.0+sha224.00000000000000000000000000000000000000000000000000000000",
		"yarn@1.22.22+sha1.0000000000000000000000000000000000000000",
	} {
		tool, _ := ParsePackageManager(field, "")
		err := tool.Pin(context.Background(), f)
		var he *deps.HashError
		if !errors.As(err, &he) || !errors.Is(err, errs.ErrHashMismatch) || !strings.Contains(err.Error(), "corepack hash") {
			t.Errorf("%s: want a corepack HashError, got %v", field, err)
		}
	}
}
