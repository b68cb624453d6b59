package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmbuild/vmbuild/internal/fixture"
	"github.com/vmbuild/vmbuild/internal/testenv"
	"github.com/vmbuild/vmbuild/lock"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// run calls the CLI in-process and returns its exit code and output.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), append([]string{"vmbuild"}, args...), strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestGraphNeedsNoDaemon(t *testing.T) {
	code, out, errOut := run(t, "graph", filepath.Join(testenv.RepoRoot(), "recipes", "demo", "demo.yaml"))
	if code != 0 || !strings.HasPrefix(out, `digraph "demo"`) || !strings.Contains(out, "layer_bundle -> layer_assets") {
		t.Fatalf("code %d\n%s\n%s", code, out, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	for name, args := range map[string][]string{
		"no recipe":           {"build"},
		"unknown flag":        {"build", "x.yaml", "--no-such-flag"},
		"push without key":    {"build", "x.yaml", "--push", "127.0.0.1:1/x"},
		"bad progress":        {"build", "x.yaml", "--progress", "fancy"},
		"both outputs":        {"build", "x.yaml", "--push", "r/x", "--output", "oci:d", "--no-sign"},
		"track once+interval": {"track", "x.yaml", "--once", "--interval", "1m"},
		"build -o x":          {"build", "x.yaml", "-o", "x"},
		"build -o out/x":      {"build", "x.yaml", "-o", "out/x"},
		"track -o x":          {"track", "x.yaml", "-o", "x"},
		"track -o out/x":      {"track", "x.yaml", "--output", "out/x"},
		"cache-to no type":    {"track", "x.yaml", "--cache-to", "ref=r/x:c"},
	} {
		code, _, errOut := run(t, args...)
		if code != 2 || !strings.Contains(errOut, "vmbuild: ") {
			t.Errorf("%s: exit %d, stderr %q", name, code, errOut)
		}
	}
	code, _, errOut := run(t, "build", "/nonexistent/recipe.yaml")
	if code != 1 || !strings.Contains(errOut, "/nonexistent/recipe.yaml") {
		t.Errorf("missing recipe: exit %d: %s", code, errOut)
	}
}

// TestBuildPushVerifyFlow: lock, build (OCI and push with signing), the
// metadata file, a stale lock refused, provenance printed; the signing key
// never reaches a build step.
func TestBuildPushVerifyFlow(t *testing.T) {
	e := fixture.Start(t)
	up := e.NewUpstream(t, "cli")
	// A layer that records its whole environment and every file it can
	// see: the signing key and its password must not be among them.
	body := strings.Replace(fixture.NativeRecipe, "run: sh bin/fake-assets", `run: |
        sh bin/fake-assets
        env > public/assets/env.txt
        find / -xdev -type f 2>/dev/null | sort > public/assets/files.txt
        cat $(find / -xdev -name '*.key' -type f 2>/dev/null) > public/assets/keys.txt 2>/dev/null || true`, 1)
	path := e.WriteRecipe(t, body, up.URL, fixture.Patches())
	dir := filepath.Dir(path)
	t.Setenv("COSIGN_PASSWORD", "correct horse")
	t.Chdir(dir)
	common := []string{"--addr", e.BK.Addr, "--helper", e.Helper, "--progress", "quiet"}

	if code, _, errOut := run(t, "keygen"); code != 0 {
		t.Fatalf("keygen: %s", errOut)
	}
	keyPEM, _ := os.ReadFile(filepath.Join(dir, "cosign.key"))

	code, _, errOut := run(t, append([]string{"build", path}, common...)...)
	if code != 1 || !strings.Contains(errOut, "lock") || !strings.Contains(errOut, "vmbuild lock") {
		t.Fatalf("build without a lock: exit %d: %s", code, errOut)
	}
	if code, out, errOut := run(t, "lock", path); code != 0 || !strings.Contains(out, "app.lock.json") {
		t.Fatalf("lock: %d %s %s", code, out, errOut)
	}
	l, err := lock.Read(filepath.Join(dir, "app.lock.json"))
	if err != nil || l.Base == nil || l.Upstream.Commit != up.Head() {
		t.Fatalf("lock %+v %v", l, err)
	}

	meta := filepath.Join(dir, "meta.json")
	repo := e.Reg.Ref("cli")
	code, out, errOut := run(t, append([]string{"build", path, "--push", repo + ":v1", "--key", "cosign.key", "--metadata-file", meta}, common...)...)
	if code != 0 {
		t.Fatalf("build --push: %d\n%s", code, errOut)
	}
	digest := strings.TrimSpace(out)
	if !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("stdout %q is not a digest", out)
	}
	var m map[string]any
	b, _ := os.ReadFile(meta)
	if err := json.Unmarshal(b, &m); err != nil || m["containerimage.digest"] != digest || m["commit"] != l.Upstream.Commit {
		t.Fatalf("metadata %s: %v", b, err)
	}
	steps, _ := m["steps"].([]any)
	if len(steps) < 5 {
		t.Errorf("metadata steps: %v", m["steps"])
	}
	// The pushed manifest was read back: native layers have their blobs.
	withLayer := 0
	for _, st := range steps {
		if s, _ := st.(map[string]any); s != nil && s["layerDigest"] != nil {
			withLayer++
		}
	}
	if withLayer == 0 {
		t.Errorf("no step has a layerDigest after --push: %v", steps)
	}
	if pub, _ := m["published"].(map[string]any); pub == nil || pub["signed"] != true || pub["attested"] != true {
		t.Errorf("metadata published: %v", m["published"])
	}
	desc, err := e.Registry().Resolve(context.Background(), repo+":v1")
	if err != nil || desc.Digest.String() != digest {
		t.Fatalf("tag v1 = %v %v", desc.Digest, err)
	}

	// provenance: verified and printed.
	code, out, errOut = run(t, "provenance", repo+"@"+digest, "--key", "cosign.pub")
	if code != 0 || !strings.Contains(out, l.Upstream.Commit) || !strings.Contains(out, "workers.patch (diff) sha256:") ||
		!strings.Contains(out, "drop-hiredis.sh (script) sha256:") || !strings.Contains(out, " applied\n") ||
		!strings.Contains(out, "hermetic:   yes") {
		t.Fatalf("provenance: %d\n%s\n%s", code, out, errOut)
	}
	if code, _, errOut = run(t, "provenance", repo+":v1", "--key", "cosign.pub"); code != 2 || !strings.Contains(errOut, "--resolve") {
		t.Errorf("provenance by tag: %d %s", code, errOut)
	}

	// The build steps never saw the key or its password.
	code, _, errOut = run(t, append([]string{"build", path, "--output", "oci:" + filepath.Join(dir, "oci")}, common...)...)
	if code != 0 {
		t.Fatal(errOut)
	}
	outDir := filepath.Join(dir, "oci", "blobs", "sha256")
	ents, _ := os.ReadDir(outDir)
	secret := strings.TrimSpace(strings.Split(string(keyPEM), "\n")[1])
	for _, en := range ents {
		blob, _ := os.ReadFile(filepath.Join(outDir, en.Name()))
		if bytes.Contains(blob, []byte(secret)) || bytes.Contains(blob, []byte("correct horse")) {
			t.Errorf("blob %s contains key material", en.Name())
		}
	}

	// A stale lock (patch edited) is refused, naming the patch.
	os.WriteFile(filepath.Join(dir, "patches", "workers.patch"), []byte(strings.Replace(fixture.Patches()["patches/workers.patch"], "workers = 4", "workers = 5", 1)), 0o644)
	code, _, errOut = run(t, append([]string{"build", path}, common...)...)
	if code != 1 || !strings.Contains(errOut, `patch "workers.patch" (patches/workers.patch) changed since it was locked`) {
		t.Errorf("stale lock: %d %s", code, errOut)
	}
	code, _, errOut = run(t, append([]string{"build", path, "--update-lock", "--output", "oci:" + filepath.Join(dir, "oci2")}, common...)...)
	if code != 0 {
		t.Errorf("--update-lock: %d %s", code, errOut)
	}
}
