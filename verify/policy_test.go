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
		len(p.BaseImages) != 2 || len(p.Builders) != 1 || p.Builders[0] != provenance.DefaultBuilderID {
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
