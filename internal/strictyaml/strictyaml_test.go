package strictyaml

import (
	"errors"
	"strings"
	"testing"
)

var errBad = errors.New("bad")

func TestSecondDocumentRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		body string
		line string
	}{
		"appended document": {"name: a\nsource: x\n---\nsource: any\n", "p.yaml:3:"},
		"empty second":      {"name: a\n---\n", "p.yaml:"},
		"leading marker ok": {"---\nname: a\n", ""},
	} {
		t.Run(name, func(t *testing.T) {
			d := NewDecoder("policy", "p.yaml", errBad, Options{})
			n, err := d.Parse([]byte(tc.body))
			if tc.line == "" {
				if err != nil || n == nil {
					t.Fatalf("one document refused: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, errBad) || !strings.Contains(err.Error(), tc.line) || !strings.Contains(err.Error(), "second YAML document") {
				t.Fatalf("got %v", err)
			}
		})
	}
	d := NewDecoder("recipe", "r.yaml", errBad, Options{})
	if _, err := d.Parse([]byte("\n\n")); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty file: %v", err)
	}
}
