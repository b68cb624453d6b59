package publish

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/patch"
	"github.com/vmbuild/vmbuild/provenance"
	"github.com/vmbuild/vmbuild/recipe"
)

// TestStatementRecordsApplication: the provenance records each patch's
// options (from the recipe) and outcome (from the build's report), and
// the build's network access and unpinned downloads.
func TestStatementRecordsApplication(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "fix.patch"), []byte("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "edit.sh"), []byte("true\n"), 0o644)
	p := filepath.Join(dir, "demo.yaml")
	os.WriteFile(p, []byte(`apiVersion: vmbuild/v1
name: demo
upstream: {git: "https://github.com/acme/demo.git", ref: main}
base: registry.local:5000/busybox:1
platform: linux/amd64
patches:
  - file: fix.patch
    offset: true
    fuzz: 2
  - script: edit.sh
    optional: true
build:
  layers:
    - name: bundle
      run: bundle install
      outputs: [/usr/local/bundle]
      network: host
`), 0o644)
	r, err := recipe.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	l := lock.Skeleton(r)
	l.Upstream.Commit, l.Upstream.CommitTime = strings.Repeat("ab", 20), time.Unix(1700000000, 0).UTC()
	l.Base = &lock.ImagePin{Ref: "registry.local:5000/busybox:1", Digest: "sha256:" + strings.Repeat("1", 64)}
	res := &build.Result{
		Digest:    digest.FromString("image"),
		BuildKit:  "v0.34.2",
		LLBDigest: digest.FromString("llb"),
		Patches: []patch.Report{
			{Patch: "fix.patch", Kind: patch.KindDiff, Status: patch.StatusApplied},
			{Patch: "edit.sh", Kind: patch.KindScript, Status: patch.StatusNoop},
		},
		NonHermetic: []build.Access{{Kind: build.AccessNetwork, Step: "[vmbuild] layer bundle: bundle install", Network: build.NetworkHost}},
	}
	st, err := Statement(r, l, res, "registry.local:5000/demo", "")
	if err != nil {
		t.Fatal(err)
	}
	info, err := provenance.Parse(st)
	if err != nil {
		t.Fatal(err)
	}
	want := []provenance.Patch{
		{Name: "fix.patch", Kind: "diff", SHA256: r.Patches[0].SHA256, Options: &provenance.PatchOptions{Offset: true, Fuzz: 2}, Outcome: provenance.OutcomeApplied},
		{Name: "edit.sh", Kind: "script", SHA256: r.Patches[1].SHA256, Options: &provenance.PatchOptions{Optional: true}, Outcome: provenance.OutcomeNoop},
	}
	if !reflect.DeepEqual(info.Patches, want) {
		t.Fatalf("patches %+v, want %+v", info.Patches, want)
	}
	wantAccess := []provenance.Access{{Kind: provenance.AccessNetwork, Step: "[vmbuild] layer bundle: bundle install", Network: provenance.NetworkHost}}
	if !reflect.DeepEqual(info.NonHermetic, wantAccess) {
		t.Fatalf("nonHermetic %+v, want %+v", info.NonHermetic, wantAccess)
	}

	// A build that could not tell (nil) is recorded as not recorded, not
	// as hermetic.
	res.NonHermetic = nil
	st, err = Statement(r, l, res, "registry.local:5000/demo", "")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := provenance.Parse(st); err != nil || info.NonHermetic != nil {
		t.Fatalf("unknown nonHermetic: %+v %v", info, err)
	}
}
