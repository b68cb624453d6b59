package verify

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/provenance"
)

// TestPolicyExample: the documented example (docs/verify.md) parses.
func TestPolicyExample(t *testing.T) {
	p, err := LoadPolicy("testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("testdata/mastodon.history.jsonl")
	if p.Source != "https://github.com/mastodon/mastodon.git" || len(p.Commits) != 1 || p.HistoryFile != abs ||
		len(p.Patches) != 2 || p.Patches[0].Name != "4.1.2-drop-hiredis.sh" || p.Patches[1].Name != "" ||
		len(p.BaseImages) != 2 || len(p.Builders) != 1 || p.Builders[0] != provenance.DefaultBuilderID ||
		len(p.Recipes) != 1 || p.Frontends == nil || len(p.Frontends) != 0 || !p.StrictPatches || !p.Hermetic {
		t.Fatalf("parsed %+v", p)
	}
	doc, err := os.ReadFile("../docs/verify.md")
	if err != nil {
		t.Fatal(err)
	}
	ex, _ := os.ReadFile("testdata/policy.yaml")
	if !strings.Contains(string(doc), string(ex)) {
		t.Fatal("docs/verify.md does not show testdata/policy.yaml verbatim")
	}
}

const minimalPolicy = `apiVersion: vmbuild/v1
kind: VerifyPolicy
source: https://github.com/acme/app.git
commits: [cccccccccccccccccccccccccccccccccccccccc]
patches: []
baseImages: [sha256:babababababababababababababababababababababababababababababababa]
`

func TestPolicyMinimal(t *testing.T) {
	p, err := ParsePolicy("p.yaml", []byte(minimalPolicy))
	if err != nil {
		t.Fatal(err)
	}
	if p.Patches == nil || len(p.Patches) != 0 || p.AnyPatches {
		t.Fatalf("patches: [] must mean no patches: %+v", p.Patches)
	}
	if got := p.trustedBuilders(); len(got) != 1 || got[0] != provenance.DefaultBuilderID {
		t.Fatalf("default builders: %v", got)
	}
	// Unquoted all-digit hex reads as a YAML number: still a commit.
	p, err = ParsePolicy("p.yaml", []byte(strings.Replace(minimalPolicy, "cccccccccccccccccccccccccccccccccccccccc", "1234567890123456789012345678901234567890", 1)))
	if err != nil || p.Commits[0] != "1234567890123456789012345678901234567890" {
		t.Fatalf("digit-only commit: %v %v", p, err)
	}
	p, err = ParsePolicy("p.yaml", []byte("apiVersion: vmbuild/v1\nkind: VerifyPolicy\nsource: any\ncommits: any\npatches: any\nbaseImages: any\n"))
	if err != nil || !p.AnySource || !p.AnyCommit || !p.AnyPatches || !p.AnyBaseImage {
		t.Fatalf("all any: %+v %v", p, err)
	}
}

func TestPolicyErrors(t *testing.T) {
	for name, c := range map[string]struct {
		edit string // replaces minimalPolicy when it has no "=>"; else "old=>new"
		want []string
	}{
		"unknown field":    {"commits:=>comits:", []string{"p.yaml:4:1: comits: unknown field", "p.yaml:1:1: commits: missing required field"}},
		"missing source":   {"source: https://github.com/acme/app.git\n=>", []string{"p.yaml:1:1: source: missing required field"}},
		"short commit":     {"cccccccccccccccccccccccccccccccccccccccc=>cccccccc", []string{`p.yaml:4:11: commits[0]: "cccccccc" is not a full commit id`}},
		"commit a mapping": {"commits: [cccccccccccccccccccccccccccccccccccccccc]=>commits: {a: b}", []string{"p.yaml:4:10: commits: must be a list (or any), not a mapping"}},
		"bad patch sha":    {"patches: []=>patches:\n  - name: x\n    sha256: nothex", []string{`p.yaml:7:13: patches[0].sha256: "nothex" is not a sha256`}},
		"patch no sha":     {"patches: []=>patches:\n  - name: x", []string{"p.yaml:6:5: patches[0].sha256: missing required field"}},
		"patch unknown":    {"patches: []=>patches:\n  - sha256: " + strings.Repeat("a", 64) + "\n    kind: diff", []string{"p.yaml:7:5: patches[0].kind: unknown field (allowed: name, sha256)"}},
		"patch twice":      {"patches: []=>patches:\n  - sha256: " + strings.Repeat("a", 64) + "\n  - sha256: sha256:" + strings.Repeat("a", 64), []string{"p.yaml:7:13: patches[1].sha256: the same patch is listed twice (first on line 6)"}},
		"base by tag":      {"baseImages: [sha256:babababababababababababababababababababababababababababababababa]=>baseImages: [busybox:1.36]", []string{`p.yaml:6:14: baseImages[0]: "busybox:1.36" is not an image digest`}},
		"no base":          {"baseImages: [sha256:babababababababababababababababababababababababababababababababa]\n=>", []string{"baseImages: missing required field"}},
		"empty base":       {"baseImages: [sha256:babababababababababababababababababababababababababababababababa]=>baseImages: []", []string{"baseImages: required"}},
		"duplicate key":    {"kind: VerifyPolicy=>kind: VerifyPolicy\nkind: VerifyPolicy", []string{"p.yaml:3:1: kind: duplicate key (first defined on line 2)"}},
		"api version":      {"vmbuild/v1=>vmbuild/v2", []string{`p.yaml:1:13: apiVersion: unsupported apiVersion "vmbuild/v2"`}},
		"kind":             {"kind: VerifyPolicy=>kind: Recipe", []string{`p.yaml:2:7: kind: kind "Recipe", want "VerifyPolicy"`}},
		"credentials":      {"https://github.com/acme/app.git=>https://user:ghp_token@github.com/acme/app.git", []string{"p.yaml:3:9: source:", "sanitized form"}},
		"builder number":   {"patches: []=>patches: []\nbuilders: [1]", []string{"p.yaml:6:12: builders[0]: must be a string, not a number"}},
		"any and history":  {"commits: [cccccccccccccccccccccccccccccccccccccccc]=>commits: any\nhistory: h.jsonl", []string{"p.yaml:5:10: history: commits is any"}},
		"alias":            {"patches: []=>patches: &p []\nbuilders: *p", []string{"anchors and aliases are not supported"}},
		"merge key":        {"kind: VerifyPolicy=>kind: VerifyPolicy\n<<: {a: b}", []string{"merge keys"}},
		"malformed":        {"kind: VerifyPolicy=>kind: [VerifyPolicy", []string{"p.yaml:", "malformed YAML"}},
		"empty":            {"", []string{"p.yaml: the file is empty"}},
		"not a mapping":    {"- a\n- b\n", []string{"p.yaml:1:1: must be a mapping, not a list"}},
		"bool any":         {"patches: []=>patches: true", []string{"p.yaml:5:10: patches: must be a list (or any), not a boolean"}},
	} {
		t.Run(name, func(t *testing.T) {
			src := c.edit
			if old, repl, ok := strings.Cut(c.edit, "=>"); ok {
				if !strings.Contains(minimalPolicy, old) {
					t.Fatalf("bad test: %q not in the policy", old)
				}
				src = strings.Replace(minimalPolicy, old, repl, 1)
			}
			_, err := ParsePolicy("p.yaml", []byte(src))
			if err == nil {
				t.Fatalf("accepted:\n%s", src)
			}
			if !errors.Is(err, errs.ErrInvalidPolicy) {
				t.Fatalf("%v does not match ErrInvalidPolicy", err)
			}
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("%T is not a *PolicyError", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestLoadPolicyFiles(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "p.yaml")
	os.WriteFile(p, []byte(minimalPolicy+"history: nope.jsonl\n"), 0o644)
	if _, err := LoadPolicy(p); !errors.Is(err, errs.ErrInvalidPolicy) || !strings.Contains(err.Error(), p+":7: history:") {
		t.Fatalf("missing history file: %v", err)
	}
	if _, err := LoadPolicy(filepath.Join(dir, "none.yaml")); !errors.Is(err, errs.ErrInvalidPolicy) {
		t.Fatalf("missing policy: %v", err)
	}
	os.WriteFile(p, []byte(minimalPolicy+"# "+strings.Repeat("x", MaxPolicyBytes)+"\n"), 0o644)
	if _, err := LoadPolicy(p); !errors.Is(err, errs.ErrInvalidPolicy) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("huge policy: %v", err)
	}
}

func TestPolicyValidateInCode(t *testing.T) {
	for name, p := range map[string]*Policy{
		"nil":             nil,
		"empty":           {},
		"no commits":      {Source: testSource, Patches: []PolicyPatch{}, BaseImages: testPolicy().BaseImages},
		"nil patches":     {Source: testSource, Commits: []string{testCommit}, BaseImages: testPolicy().BaseImages},
		"bad digest":      {Source: testSource, Commits: []string{testCommit}, Patches: []PolicyPatch{}, BaseImages: []digest.Digest{"sha256:x"}},
		"any and source":  {Source: testSource, AnySource: true, AnyCommit: true, AnyPatches: true, AnyBaseImage: true},
		"dirty source":    {Source: "https://u:p@h/x.git", AnyCommit: true, AnyPatches: true, AnyBaseImage: true},
		"empty builder":   {AnySource: true, AnyCommit: true, AnyPatches: true, AnyBaseImage: true, Builders: []string{""}},
		"short patch sha": {AnySource: true, AnyCommit: true, Patches: []PolicyPatch{{SHA256: "ab"}}, AnyBaseImage: true},
	} {
		if err := p.Validate(); !errors.Is(err, errs.ErrInvalidPolicy) {
			t.Errorf("%s: Validate = %v", name, err)
		}
	}
	if err := testPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := NoPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestPolicyNewFields: recipes, frontends, strictPatches and hermetic
// parse; left out, they do not constrain (policies written before them).
func TestPolicyNewFields(t *testing.T) {
	p, err := ParsePolicy("p.yaml", []byte(minimalPolicy))
	if err != nil || p.Recipes != nil || p.AnyRecipe || p.Frontends != nil || p.AnyFrontend || p.StrictPatches || p.Hermetic {
		t.Fatalf("a policy without the new fields: %+v %v", p, err)
	}
	src := minimalPolicy + "recipes:\n  - " + testRecipe + "\n  - sha256:" + strings.Repeat("12", 32) + "\nfrontends: []\nstrictPatches: true\nhermetic: true\n"
	p, err = ParsePolicy("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Recipes) != 2 || p.Recipes[1] != strings.Repeat("12", 32) || p.Frontends == nil || len(p.Frontends) != 0 || !p.StrictPatches || !p.Hermetic {
		t.Fatalf("parsed %+v", p)
	}
	p, err = ParsePolicy("p.yaml", []byte(minimalPolicy+"recipes: any\nfrontends: any\n"))
	if err != nil || !p.AnyRecipe || !p.AnyFrontend {
		t.Fatalf("any: %+v %v", p, err)
	}
	fe := "sha256:" + strings.Repeat("fe", 32)
	p, err = ParsePolicy("p.yaml", []byte(minimalPolicy+"frontends: ["+fe+"]\n"))
	if err != nil || len(p.Frontends) != 1 || p.Frontends[0] != digest.Digest(fe) {
		t.Fatalf("frontends: %+v %v", p, err)
	}
	for name, c := range map[string]struct{ add, want string }{
		"recipes empty":       {"recipes: []\n", "p.yaml:7:10: recipes: an empty list allows no recipe"},
		"recipe short":        {"recipes: [abc]\n", `p.yaml:7:11: recipes[0]: "abc" is not a sha256`},
		"recipe twice":        {"recipes: [" + testRecipe + ", " + testRecipe + "]\n", "recipes[1]: the same recipe is listed twice"},
		"frontend by tag":     {"frontends: [docker/dockerfile:1.7]\n", `frontends[0]: "docker/dockerfile:1.7" is not an image digest`},
		"frontends a string":  {"frontends: none\n", "frontends: must be a list (or any), not a string"},
		"strictPatches yes":   {"strictPatches: yes\n", "strictPatches: must be true or false"},
		"hermetic a list":     {"hermetic: [true]\n", "hermetic: must be true or false"},
		"unknown lists them":  {"hermetik: true\n", "allowed: apiVersion, baseImages, builders, commits, debianBase, frontends, hermetic, history, kind, patches, recipes, source, strictPatches"},
		"recipes any and one": {"recipes: any\nrecipes: [" + testRecipe + "]\n", "duplicate key"},
		"debianBase empty":    {"debianBase: {}\n", "debianBase: constrains nothing"},
		"debianBase bad key":  {"debianBase:\n  signedBy: [ABCD]\n", `debianBase.signedBy[0]: "ABCD" is not an OpenPGP fingerprint`},
		"debianBase unknown":  {"debianBase:\n  suite: sid\n", `did you mean "suites"`},
	} {
		_, err := ParsePolicy("p.yaml", []byte(minimalPolicy+c.add))
		if !errors.Is(err, errs.ErrInvalidPolicy) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	for name, p := range map[string]*Policy{
		"recipes empty":      {AnySource: true, AnyCommit: true, AnyPatches: true, AnyBaseImage: true, Recipes: []string{}},
		"recipe any and one": {AnySource: true, AnyCommit: true, AnyPatches: true, AnyBaseImage: true, Recipes: []string{testRecipe}, AnyRecipe: true},
		"recipe upper":       {AnySource: true, AnyCommit: true, AnyPatches: true, AnyBaseImage: true, Recipes: []string{strings.ToUpper(testRecipe)}},
		"frontend digest":    {AnySource: true, AnyCommit: true, AnyPatches: true, AnyBaseImage: true, Frontends: []digest.Digest{"sha256:x"}},
		"frontend any and one": {AnySource: true, AnyCommit: true, AnyPatches: true, AnyBaseImage: true, AnyFrontend: true,
			Frontends: []digest.Digest{digest.Digest(fe)}},
	} {
		if err := p.Validate(); !errors.Is(err, errs.ErrInvalidPolicy) {
			t.Errorf("%s: Validate = %v", name, err)
		}
	}
}
