package deb

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSubjectHashMatchesOpenSSL checks the subject hash against the
// openssl program on every certificate the host has.
func TestSubjectHashMatchesOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl program to compare with")
	}
	files, _ := filepath.Glob("/usr/share/ca-certificates/*/*.crt")
	if len(files) == 0 {
		t.Skip("no certificates under /usr/share/ca-certificates")
	}
	// Every third one: each comparison runs the openssl program.
	n := 0
	for i, f := range files {
		if i%3 != 0 {
			continue
		}
		n++
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := subjectHashOfPEM(b)
		if !ok {
			t.Errorf("%s: no hash", f)
			continue
		}
		out, err := exec.Command("openssl", "x509", "-noout", "-subject_hash", "-in", f).Output()
		if err != nil {
			t.Fatalf("openssl on %s: %v", f, err)
		}
		if want := strings.TrimSpace(string(out)); got != want {
			t.Errorf("%s: subject hash %s, openssl says %s", filepath.Base(f), got, want)
		}
	}
	t.Logf("%d certificates compared", n)
}
