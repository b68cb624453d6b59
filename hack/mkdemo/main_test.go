package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestUpstreamIsDeterministic(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed: run `make deps`")
	}
	src := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "bin"), 0o755))
	must(os.WriteFile(filepath.Join(src, "README"), []byte("demo\n"), 0o600)) // mode normalised to 0644
	must(os.WriteFile(filepath.Join(src, "bin", "run"), []byte("#!/bin/sh\necho hi\n"), 0o700))
	must(os.Symlink("README", filepath.Join(src, "link")))

	ctx := context.Background()
	a, err := makeUpstream(ctx, filepath.Join(t.TempDir(), "a.git"), src, 2, "README")
	must(err)
	b, err := makeUpstream(ctx, filepath.Join(t.TempDir(), "b.git"), src, 2, "README")
	must(err)
	// Fixed: the same files give these hashes on every machine.
	want := "e91f498a8dc16eac2cf43afd0860c27df1bd7077"
	if a[0] != b[0] || a[1] != b[1] {
		t.Fatalf("two runs differ: %v %v", a, b)
	}
	if a[0] != want {
		t.Errorf("commit 1 is %s, want %s", a[0], want)
	}
	if a[0] == a[1] {
		t.Error("commit 2 did not change anything")
	}
}
