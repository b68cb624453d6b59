package verify

import (
	"context"
	"crypto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vmbuild/vmbuild/internal/testenv"
	"github.com/vmbuild/vmbuild/provenance"
	"github.com/vmbuild/vmbuild/registry"
	"github.com/vmbuild/vmbuild/sign"
)

func mustKey(t *testing.T, pemBytes []byte) crypto.PublicKey {
	k, err := sign.LoadPublicKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// cosignRun runs a stock cosign binary in dir with an isolated HOME.
func cosignRun(t *testing.T, dir, bin string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "TUF_ROOT="+filepath.Join(dir, ".sigstore"), "COSIGN_PASSWORD=test-password", "COSIGN_YES=true")
	out, err := cmd.CombinedOutput()
	t.Logf("$ %s %s\n%s", filepath.Base(bin), strings.Join(args, " "), out)
	if err != nil {
		t.Fatalf("%s: %v", filepath.Base(bin), err)
	}
}

// TestCosignInterop: what stock cosign signs and attests (with a
// predicate from provenance.New) verifies with vmbuild verify, library
// and CLI: we read cosign's own output, not only our own.
func TestCosignInterop(t *testing.T) {
	for _, c := range []struct {
		bin   string
		extra []string // cosign v3 writes bundles as OCI referrers by default
	}{
		{"cosign", nil},
		{"cosign3", []string{"--use-signing-config=false"}},
	} {
		t.Run(c.bin, func(t *testing.T) {
			bin := testenv.Bin(t, c.bin)
			reg := testenv.StartRegistry(t)
			rc := registry.New()
			work := t.TempDir()
			priv, pub, err := sign.GenerateKeyPair([]byte("test-password"))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(work, "cosign.key"), priv, 0o600)
			os.WriteFile(filepath.Join(work, "cosign.pub"), pub, 0o644)
			tg := pushTinyImage(t, rc, reg.Ref("acme/app"), "cosign")
			st, err := provenance.New(provInput(tg.Repository, tg.Digest))
			if err != nil {
				t.Fatal(err)
			}
			pred, err := protojson.Marshal(st.GetPredicate())
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(work, "pred.json"), pred, 0o644)
			flags := append([]string{"--tlog-upload=false", "-y", "--allow-insecure-registry", "--allow-http-registry"}, c.extra...)
			cosignRun(t, work, bin, append(append([]string{"sign", "--key", "cosign.key"}, flags...), tg.String())...)
			cosignRun(t, work, bin, append(append([]string{"attest", "--key", "cosign.key", "--type", "slsaprovenance1", "--predicate", "pred.json"}, flags...), tg.String())...)

			if atts, err := sign.FetchAttestations(context.Background(), regStore(t, rc, tg.Repository), tg.Digest); err == nil {
				for _, a := range atts {
					_, p, _ := sign.VerifyDSSE(mustKey(t, pub), a.Envelope)
					t.Logf("cosign's statement (%s): %s", a.Source, p)
				}
			}
			v := mustVerifier(t, WithPublicKeyPEM(pub))
			rep, err := v.Verify(context.Background(), tg, testPolicy())
			wantVerified(t, rep, err)

			// And the command line.
			pol := "apiVersion: vmbuild/v1\nkind: VerifyPolicy\nsource: " + testSource + "\ncommits: [" + testCommit + "]\npatches:\n  - sha256: " + testPatch1.SHA256 + "\n  - sha256: " + testPatch2.SHA256 + "\nbaseImages: [" + testBase + "]\n"
			os.WriteFile(filepath.Join(work, "policy.yaml"), []byte(pol), 0o644)
			runCLI(t, work, tg.String(), "--key", "cosign.pub", "--policy", "policy.yaml").want(t, 0, "VERIFIED  "+tg.String())
			// Another key refuses cosign's signatures too.
			os.WriteFile(filepath.Join(work, "other.pub"), newSigner(t).PublicKeyPEM(), 0o644)
			runCLI(t, work, tg.String(), "--key", "other.pub", "--policy", "policy.yaml").want(t, 1, "FAIL  signature", "FAIL  dsse-signature")
		})
	}
}
