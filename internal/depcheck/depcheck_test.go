// Package depcheck keeps vmbuild's packages layered the way its data
// flows: recipe → lock → llb → build (solve) → provenance/sign → publish,
// with verify, track and check on top, and the CLI above all.
// A package importing one "downstream" of it fails this test (the model
// is go-containerregistry's depcheck).
package depcheck

import (
	"encoding/json"
	"io"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const mod = "github.com/vmbuild/vmbuild/"

// allowed lists, for each library package, the vmbuild packages it may
// import (directly). Anything not listed is refused; a new package must be
// placed here.
var allowed = map[string][]string{
	"errs":                {},
	"recipe":              {"errs", "internal/strictyaml", "internal/redact"},
	"patch":               {"errs"},
	"track/history":       {},
	"registry":            {"errs", "internal/redact", "internal/termsafe"},
	"provenance":          {"errs", "internal/redact"},
	"buildkit":            {"errs", "internal/localsvc"},
	"lock":                {"errs", "recipe", "store", "internal/redact", "patch", "deps", "deps/npm", "deps/yarn", "deps/deb", "deps/gem"},
	"llb":                 {"errs", "recipe", "lock", "internal/redact", "deps"},
	"build":               {"errs", "recipe", "lock", "llb", "patch", "store", "deps", "internal/redact"},
	"sign":                {"errs", "registry", "store", "provenance"},
	"publish":             {"errs", "recipe", "lock", "build", "patch", "provenance", "sbom", "deps", "sign", "store", "registry", "internal/redact"},
	"check":               {"errs", "recipe", "lock", "build", "patch", "store"},
	"verify":              {"errs", "registry", "store", "sign", "provenance", "track/history", "internal/strictyaml", "internal/redact"},
	"track":               {"errs", "recipe", "lock", "build", "patch", "buildkit", "publish", "sign", "registry", "store", "track/history"},
	"store":               {"errs", "registry"},
	"internal/strictyaml": {},
	"internal/redact":     {},
	"internal/termsafe":   {},
	"deps":                {"errs", "internal/redact"},
	"internal/localsvc":   {},
	"deps/npm":            {"errs", "deps"},
	"deps/yarn":           {"errs", "deps", "deps/npm"},
	"deps/deb":            {"errs", "deps"},
	"deps/install":        {"deps", "deps/deb"},
	"deps/gem":            {"errs", "deps"},
	"sbom":                {},
	// Test and tooling support (never imported by library code).
	"internal/baseimage":      {"errs", "registry", "store"},
	"internal/testenv":        {"buildkit", "internal/baseimage", "internal/testenv/detgit", "internal/localsvc"},
	"internal/fixture":        {"internal/testenv", "lock", "recipe", "registry", "buildkit", "deps", "deps/deb"},
	"internal/testenv/detgit": {"errs"},
	"deps/internal/jstest":    {"deps"},
	"lock/locktest":           {"lock"},
}

// Packages no library may import.
var forbiddenExternal = []string{"github.com/spf13/cobra", "github.com/spf13/pflag"}

type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Name         string
}

// testSupport are the packages any test may import besides its package's
// own allowed set: the harness that starts real services, and fixtures.
var testSupport = []string{"buildkit", "deps/internal/jstest", "lock/locktest", "internal/testenv", "internal/testenv/detgit", "internal/fixture", "internal/baseimage", "internal/localsvc"}

func list(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json", "../../...")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = nil
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(out)
	var pkgs []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list: %v", err)
	}
	return pkgs
}

func TestLayering(t *testing.T) {
	pkgs := list(t)
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	for _, p := range pkgs {
		rel := strings.TrimPrefix(p.ImportPath, mod)
		if rel == p.ImportPath || p.Name == "main" || strings.HasPrefix(rel, "cmd/") || strings.HasPrefix(rel, "bench") || strings.HasPrefix(rel, "hack/") || strings.HasPrefix(rel, "recipes/") || rel == "internal/depcheck" {
			continue
		}
		ok, known := allowed[rel]
		if !known {
			t.Errorf("package %s is not placed in the layering (add it to depcheck's allowed map)", rel)
			continue
		}
		okSet := map[string]bool{}
		for _, a := range ok {
			okSet[a] = true
		}
		check := func(imports []string, what string, okSet map[string]bool) {
			for _, imp := range imports {
				for _, f := range forbiddenExternal {
					if imp == f || strings.HasPrefix(imp, f+"/") {
						t.Errorf("library package %s%s imports %s (flags and commands belong in cmd/vmbuild)", rel, what, imp)
					}
				}
				irel, isOurs := strings.CutPrefix(imp, mod)
				if !isOurs || irel == rel {
					continue
				}
				if !okSet[irel] {
					t.Errorf("%s%s imports %s, against the data flow (allowed: %s)", rel, what, irel, strings.Join(sorted(ok), ", "))
				}
			}
		}
		check(p.Imports, "", okSet)
		// Tests keep the layering too; they may also use the test harness.
		testOK := map[string]bool{}
		for k := range okSet {
			testOK[k] = true
		}
		for _, s := range testSupport {
			testOK[s] = true
		}
		check(p.TestImports, " (tests)", testOK)
		check(p.XTestImports, " (external tests)", testOK)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
