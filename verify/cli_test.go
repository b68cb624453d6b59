package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmbuild/vmbuild/internal/testenv"
	"github.com/vmbuild/vmbuild/provenance"
	"github.com/vmbuild/vmbuild/sign"
)

// The CLI is tested as users run it: the vmbuild binary, built from this
// checkout once per test run.
var vmbuildBin struct {
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

func buildVmbuild(t *testing.T) string {
	t.Helper()
	vmbuildBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "vmbuild-verify-cli-")
		if err != nil {
			vmbuildBin.err = err
			return
		}
		vmbuildBin.dir = dir
		vmbuildBin.path = filepath.Join(dir, "vmbuild")
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", vmbuildBin.path, "./cmd/vmbuild")
		cmd.Dir = testenv.RepoRoot()
		vmbuildBin.out, vmbuildBin.err = cmd.CombinedOutput()
	})
	if vmbuildBin.err != nil {
		t.Fatalf("building vmbuild: %v\n%s", vmbuildBin.err, vmbuildBin.out)
	}
	return vmbuildBin.path
}

type cliResult struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, dir string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, buildVmbuild(t), append([]string{"verify"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "DOCKER_CONFIG="+filepath.Join(dir, ".docker"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("running vmbuild: %v", err)
	}
	t.Logf("$ vmbuild verify %s\nexit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

func (r cliResult) want(t *testing.T, code int, fragments ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d", r.code, code)
	}
	for _, f := range fragments {
		if !strings.Contains(r.stdout+r.stderr, f) {
			t.Fatalf("output lacks %q", f)
		}
	}
}

func TestCLI(t *testing.T) {
	f := newFixture(t)
	work := t.TempDir()
	os.WriteFile(filepath.Join(work, "cosign.pub"), f.s.PublicKeyPEM(), 0o644)
	os.WriteFile(filepath.Join(work, "other.pub"), newSigner(t).PublicKeyPEM(), 0o644)
	policy := `apiVersion: vmbuild/v1
kind: VerifyPolicy
source: ` + testSource + `
commits: [` + testCommit + `]
patches:
  - sha256: ` + testPatch1.SHA256 + `
  - sha256: ` + testPatch2.SHA256 + `
baseImages: [` + testBase + `]
`
	os.WriteFile(filepath.Join(work, "policy.yaml"), []byte(policy), 0o644)
	os.WriteFile(filepath.Join(work, "bad.yaml"), []byte(strings.Replace(policy, "commits:", "comits:", 1)), 0o644)
	good := f.published(t, "cli-good", nil)
	bad := f.published(t, "cli-bad", func(in *provenance.Input) { in.Upstream.Commit = testCommit2 })

	// 0: verified.
	runCLI(t, work, good.String(), "--key", "cosign.pub", "--policy", "policy.yaml").
		want(t, 0, "PASS  signature", "PASS  patches", "VERIFIED  "+good.String())
	r := runCLI(t, work, good.String(), "--key", "other.pub", "--key", "cosign.pub", "--policy", "policy.yaml", "--output", "json")
	r.want(t, 0)
	var rep Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || !rep.Verified || rep.Image != good.String() || len(rep.Checks) != len(CheckNames()) {
		t.Fatalf("json report: %v\n%s", err, r.stdout)
	}
	runCLI(t, work, good.String(), "--key", "cosign.pub", "--no-policy").want(t, 0, "SKIP  commit", "VERIFIED")
	// A tag, with --resolve: the digest to deploy is printed.
	runCLI(t, work, good.Repository+":cli-good", "--resolve", "--key", "cosign.pub", "--policy", "policy.yaml").
		want(t, 0, "resolved "+good.Repository+":cli-good to "+good.String()+": deploy by this digest", "VERIFIED  "+good.String())

	// 1: verification failed.
	runCLI(t, work, bad.String(), "--key", "cosign.pub", "--policy", "policy.yaml").
		want(t, 1, "FAIL  commit", "NOT VERIFIED", "vmbuild: verification failed: commit: commit "+testCommit2)
	r = runCLI(t, work, bad.String(), "--key", "cosign.pub", "--policy", "policy.yaml", "-o", "json")
	r.want(t, 1)
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.Verified {
		t.Fatalf("json report: %v", err)
	}
	runCLI(t, work, good.String(), "--key", "other.pub", "--policy", "policy.yaml").want(t, 1, "FAIL  signature")

	// 2: usage, configuration, transport.
	runCLI(t, work, good.Repository+":cli-good", "--key", "cosign.pub", "--policy", "policy.yaml").
		want(t, 2, "is a tag, and tags move", "--resolve")
	runCLI(t, work, good.String(), "--key", "cosign.pub").want(t, 2, "a policy is required")
	runCLI(t, work, good.String(), "--policy", "policy.yaml").want(t, 2, "--key cosign.pub is required")
	runCLI(t, work, good.String(), "--key", "cosign.pub", "--policy", "bad.yaml").want(t, 2, "bad.yaml:4:1: comits: unknown field")
	runCLI(t, work, good.String(), "--key", "policy.yaml", "--policy", "policy.yaml").want(t, 2, "key error")
	runCLI(t, work, good.String(), "--key", "cosign.pub", "--policy", "policy.yaml", "--output", "yaml").want(t, 2, "--output")
	runCLI(t, work, "127.0.0.1:1/acme/app@"+good.Digest.String(), "--key", "cosign.pub", "--policy", "policy.yaml").
		want(t, 2, "registry error")
	runCLI(t, work, good.Repository+"@"+good.Digest.String(), "extra", "--key", "cosign.pub", "--no-policy").want(t, 2, "usage")

	// 2: a hostile registry's limit, named.
	l := newLiar(t, func(w http.ResponseWriter, r *http.Request, l *liar) bool {
		if !strings.HasSuffix(r.URL.Path, l.sigTag("sig")) {
			return false
		}
		serveJSON(w, r, "application/vnd.oci.image.manifest.v1+json", manyLayers(10000, sign.SimpleSigningMediaType))
		return true
	})
	os.WriteFile(filepath.Join(work, "liar.pub"), l.s.PublicKeyPEM(), 0o644)
	runCLI(t, work, l.image.String(), "--key", "liar.pub", "--policy", "policy.yaml").
		want(t, 2, "limit exceeded: signatures per image (100)", "FAIL  signature", "could not decide")
}

func TestCLILayout(t *testing.T) {
	work := t.TempDir()
	s := newSigner(t)
	dir, d := makeLayout(t, work, "latest")
	signLayout(t, dir, d, s, stmtOf(t, provInput("127.0.0.1:5000/acme/app", d)))
	os.WriteFile(filepath.Join(work, "cosign.pub"), s.PublicKeyPEM(), 0o644)
	rel, _ := filepath.Rel(work, dir)
	runCLI(t, work, "oci:"+rel+"@"+d.String(), "--key", "cosign.pub", "--no-policy").want(t, 0, "VERIFIED  oci:"+rel+"@"+d.String())
	runCLI(t, work, "oci:"+rel, "--key", "cosign.pub", "--no-policy").want(t, 2, "is a tag")
	runCLI(t, work, "oci:"+rel, "--resolve", "--key", "cosign.pub", "--no-policy").
		want(t, 0, "resolved oci:"+rel+":latest to oci:"+rel+"@"+d.String())
}
