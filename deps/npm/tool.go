package npm

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/errs"
)

// Tool is a package manager pinned as an npm-registry tarball, from a
// package.json "packageManager" field, runnable as `node <Entry>` from the
// unpacked tarball without corepack.
type Tool struct {
	// Package is the tarball: npm → "npm", yarn 1.x → "yarn", yarn ≥ 2 →
	// "@yarnpkg/cli-dist", pnpm → "pnpm".
	Package deps.Package `json:"package"`
	// Manager and Version are as packageManager spells them ("yarn",
	// "4.18.0").
	Manager string `json:"manager"`
	Version string `json:"version"`
	// Entry is the script to run with node, relative to the tarball's
	// root: npm tarballs keep everything under "package/"
	// ("package/bin/yarn.js").
	Entry string `json:"entry"`
	// Corepack is packageManager's hash suffix as "ALG.HEX", empty if none.
	// CorepackOf says what corepack hashes, and so what Pin checks it
	// against: "tarball" (npm, pnpm, yarn 1.x: the downloaded .tgz) or the
	// Entry path (yarn ≥ 2: corepack hashes the single yarn.js file, which
	// it takes from repo.yarnpkg.com or, with COREPACK_NPM_REGISTRY, from
	// @yarnpkg/cli-dist's bin/yarn.js).
	Corepack   string `json:"corepack,omitempty"`
	CorepackOf string `json:"corepackOf,omitempty"`
}

// ParsePackageManager parses a packageManager field ("yarn@4.18.0",
// "npm@10.9.0", "pnpm@9.15.0", "yarn@1.22.22+sha1.HEX") into the tool's
// tarball on registry (default registry.npmjs.org). The pin has no sha256
// until Tool.Pin.
func ParsePackageManager(field, registry string) (*Tool, error) {
	bad := func(why string, a ...any) error {
		return fmt.Errorf("parsing packageManager %q: %w: %s", field, errs.ErrDependency, fmt.Sprintf(why, a...))
	}
	if registry == "" {
		registry = DefaultRegistry
	}
	name, ref, ok := strings.Cut(field, "@")
	if !ok || name == "" {
		return nil, bad("want NAME@VERSION")
	}
	if strings.Contains(ref, "://") {
		return nil, bad("a URL is not a registry version; vmbuild needs the package manager from the npm registry")
	}
	version, build, _ := strings.Cut(ref, "+")
	major, ok := semverMajor(version)
	if !ok {
		return nil, bad("version %q is not an exact semver version", version)
	}
	t := &Tool{Manager: name, Version: version}
	pkgName := name
	switch name {
	case "npm":
		t.Entry = "package/bin/npm-cli.js"
	case "yarn":
		t.Entry = "package/bin/yarn.js"
		if major >= 2 {
			pkgName = "@yarnpkg/cli-dist"
		}
	case "pnpm":
		switch {
		case major < 6:
			t.Entry = "package/bin/pnpm.js"
		case major <= 10:
			t.Entry = "package/bin/pnpm.cjs"
		default:
			t.Entry = "package/bin/pnpm.mjs"
		}
	default:
		return nil, bad("unknown package manager %q (npm, yarn, pnpm)", name)
	}
	if build != "" {
		alg, hx, ok := strings.Cut(build, ".")
		if !ok || newToolHash(alg) == nil {
			return nil, bad("hash %q is not ALG.HEX with ALG sha1, sha224, sha256, sha384 or sha512", build)
		}
		if b, err := hex.DecodeString(hx); err != nil || len(b) != newToolHash(alg).Size() {
			return nil, bad("%s hash %q is not %d hex digits", alg, hx, 2*newToolHash(alg).Size())
		}
		t.Corepack = alg + "." + strings.ToLower(hx)
		t.CorepackOf = "tarball"
		if name == "yarn" && major >= 2 {
			t.CorepackOf = t.Entry
		}
	}
	t.Package = deps.Package{Name: pkgName, Version: version, URL: TarballURL(registry, pkgName, version), Path: TarballPath(pkgName, version)}
	return t, nil
}

func semverMajor(v string) (int, bool) {
	core, _, _ := strings.Cut(v, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return 0, false
	}
	var major int
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || p != strconv.Itoa(n) {
			return 0, false
		}
		if i == 0 {
			major = n
		}
	}
	return major, ValidVersion(v)
}

func newToolHash(alg string) hash.Hash {
	switch alg {
	case "sha1":
		return sha1.New()
	case "sha224":
		return sha256.New224()
	case "sha256":
		return sha256.New()
	case "sha384":
		return sha512.New384()
	case "sha512":
		return sha512.New()
	}
	return nil
}

// ToolFromManifest reads packageManager from the package.json at file; nil
// when the file or the field is absent.
func ToolFromManifest(fsys fs.FS, file, registry string) (*Tool, error) {
	b, err := fs.ReadFile(fsys, file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	var m struct {
		PackageManager string `json:"packageManager"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parsing %s: %w: %v", file, errs.ErrDependency, jsonErr(b, err))
	}
	if m.PackageManager == "" {
		return nil, nil
	}
	t, err := ParsePackageManager(m.PackageManager, registry)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	return t, nil
}

// Pin hashes the tool's tarball with f (sha256, size) and, when
// packageManager carries a corepack hash, checks it: against the tarball,
// or against the entry script inside it (yarn ≥ 2). That check downloads
// the tarball a second time (through f's client and headers) and insists
// it is the same bytes.
func (t *Tool) Pin(ctx context.Context, f *deps.Fetcher) error {
	if f == nil {
		f = &deps.Fetcher{}
	}
	sums, err := f.Hash(ctx, []deps.Request{{ID: t.Package.ID(), URL: t.Package.URL}})
	if err != nil {
		return fmt.Errorf("pinning package manager %s@%s: %w", t.Manager, t.Version, err)
	}
	t.Package.SHA256, t.Package.Size = sums[0].SHA256, sums[0].Size
	if err := t.Package.Validate(); err != nil {
		return fmt.Errorf("pinning package manager %s@%s: %w: %v", t.Manager, t.Version, errs.ErrDependency, err)
	}
	if t.Corepack == "" {
		return nil
	}
	return t.checkCorepack(ctx, f)
}

func (t *Tool) checkCorepack(ctx context.Context, f *deps.Fetcher) error {
	alg, want, _ := strings.Cut(t.Corepack, ".")
	h := newToolHash(alg)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.Package.URL, nil)
	if err != nil {
		return fmt.Errorf("checking package manager %s@%s: %w", t.Manager, t.Version, err)
	}
	if f.Header != nil {
		for k, vs := range f.Header(t.Package.URL) {
			req.Header[k] = vs
		}
	}
	client := f.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Minute}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("checking package manager %s@%s: %w", t.Manager, t.Version, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("checking package manager %s@%s: %w: %s answered %s", t.Manager, t.Version, errs.ErrDependency, deps.RedactURL(t.Package.URL), resp.Status)
	}
	whole := sha256.New()
	body := io.TeeReader(io.LimitReader(resp.Body, 512<<20), whole)
	if t.CorepackOf == "tarball" {
		if _, err := io.Copy(h, body); err != nil {
			return fmt.Errorf("checking package manager %s@%s: %w", t.Manager, t.Version, err)
		}
	} else {
		found, err := hashTarEntry(body, t.CorepackOf, h)
		if err != nil {
			return fmt.Errorf("checking package manager %s@%s: %w: %v", t.Manager, t.Version, errs.ErrDependency, err)
		}
		if !found {
			return fmt.Errorf("checking package manager %s@%s: %w: %s has no %s", t.Manager, t.Version, errs.ErrDependency, t.Package.ID(), t.CorepackOf)
		}
		if _, err := io.Copy(io.Discard, body); err != nil {
			return fmt.Errorf("checking package manager %s@%s: %w", t.Manager, t.Version, err)
		}
	}
	if got := hex.EncodeToString(whole.Sum(nil)); got != t.Package.SHA256 {
		return &deps.HashError{Package: t.Package.ID(), URL: deps.RedactURL(t.Package.URL), Source: "the first download", Expected: "sha256:" + t.Package.SHA256, Actual: "sha256:" + got}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return &deps.HashError{Package: t.Package.ID(), URL: deps.RedactURL(t.Package.URL), Source: "packageManager's corepack hash (of " + t.CorepackOf + ")", Expected: alg + "." + want, Actual: alg + "." + got}
	}
	return nil
}

// hashTarEntry hashes the file at name in a gzipped npm tarball. Like
// corepack, it ignores the tarball's top directory (usually "package/").
func hashTarEntry(r io.Reader, name string, h hash.Hash) (bool, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return false, fmt.Errorf("reading tarball: %v", err)
	}
	_, want, _ := strings.Cut(name, "/")
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("reading tarball: %v", err)
		}
		_, rel, _ := strings.Cut(strings.TrimPrefix(hdr.Name, "./"), "/")
		if rel == want && hdr.Typeflag == tar.TypeReg {
			if _, err := io.Copy(h, tr); err != nil {
				return false, fmt.Errorf("reading tarball: %v", err)
			}
			return true, nil
		}
	}
}
