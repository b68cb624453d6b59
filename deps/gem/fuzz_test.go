package gem

import (
	"errors"
	"testing"
)

// Gemfile.lock and Gemfile come from the upstream tree: untrusted input.
// Parsing never panics, and every failure is an *InputError naming the
// file.

func FuzzParseLockfile(f *testing.F) {
	f.Add([]byte(fullLock))
	f.Add([]byte(scopeLock))
	f.Add([]byte("GEM\n  remote: https://rubygems.org/\n  specs:\n    a (1.0-x86_64-linux)\n      b (>= 1, < 2)\n\nDEPENDENCIES\n  a!\n\nCHECKSUMS\n  a (1.0) sha256=qrvN7wEjRWeJq83vASNFZ4mrze8BI0VniavN7wEjRWc=\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lf, err := ParseLockfile("Gemfile.lock", data)
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) || ie.File != "Gemfile.lock" {
				t.Fatalf("error %v is not an *InputError naming the file", err)
			}
			return
		}
		for _, s := range lf.Specs {
			if s.Source == nil || s.Name == "" || s.Line <= 0 {
				t.Fatalf("spec %+v", s)
			}
			_ = s.FullName()
		}
		for _, c := range lf.Checksums {
			if c.SHA256 != "" && len(c.SHA256) != 64 {
				t.Fatalf("checksum %q", c.SHA256)
			}
		}
	})
}

func FuzzParseGemfile(f *testing.F) {
	f.Add([]byte(richGemfile))
	f.Add([]byte(scopeGemfile))
	f.Add([]byte("gem 'a', \"~> #{V}\", require: -> { 1 }\nif x\nend\n%w[a b] %i(c d)\n=begin\nx\n=end\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		gf, err := ParseGemfile("Gemfile", data)
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) || ie.File != "Gemfile" {
				t.Fatalf("error %v is not an *InputError naming the file", err)
			}
			return
		}
		for _, d := range gf.Deps {
			if d.Name == "" || len(d.Groups) == 0 || d.Line <= 0 {
				t.Fatalf("dep %+v", d)
			}
		}
	})
}
