package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vmbuild/vmbuild/internal/testenv"
	"github.com/vmbuild/vmbuild/provenance"
	"github.com/vmbuild/vmbuild/registry"
	"github.com/vmbuild/vmbuild/sign"
)

// TestProvenanceReadsCosignAttestation: `vmbuild provenance` reads the
// attestation stock cosign v2 makes of a vmbuild predicate (an in-toto
// v0.1 statement), as `vmbuild verify` does: one attestation reader.
func TestProvenanceReadsCosignAttestation(t *testing.T) {
	bin := testenv.Bin(t, "cosign")
	reg := testenv.StartRegistry(t)
	ctx := context.Background()
	rc := registry.New()
	work := t.TempDir()
	t.Chdir(work)

	// A one-layer image.
	lay := []byte("a layer\n")
	ld := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(lay), Size: int64(len(lay))}
	cfg := []byte(`{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["` + ld.Digest.String() + `"]}}`)
	cd := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	man, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: []ocispec.Descriptor{ld}})
	repo := reg.Ref("acme/app")
	for _, b := range []struct {
		d    ocispec.Descriptor
		data []byte
	}{{ld, lay}, {cd, cfg}} {
		if err := rc.PushBlob(ctx, repo, b.d, bytes.NewReader(b.data)); err != nil {
			t.Fatal(err)
		}
	}
	desc, err := rc.PushManifest(ctx, repo+":v1", ocispec.MediaTypeImageManifest, man)
	if err != nil {
		t.Fatal(err)
	}
	ref := repo + "@" + desc.Digest.String()

	commit := strings.Repeat("c", 40)
	st, err := provenance.New(provenance.Input{
		Subject:         provenance.Subject{Name: repo, Digest: desc.Digest.String()},
		Recipe:          provenance.Recipe{Name: "app", Path: "app.yaml", SHA256: strings.Repeat("ab", 32)},
		Upstream:        provenance.Upstream{URL: "https://github.com/acme/app.git", Ref: "main", Commit: commit},
		Patches:         []provenance.Patch{{Name: "fix.patch", Kind: provenance.PatchKindDiff, SHA256: strings.Repeat("01", 32)}},
		Native:          &provenance.Native{Layers: []string{"app"}},
		BuildKitVersion: "v0.34.2",
		LLBDigest:       "sha256:" + strings.Repeat("0d", 32),
		Base:            provenance.Image{Ref: "docker.io/library/busybox:1.36", Digest: "sha256:" + strings.Repeat("ba", 32)},
		InvocationID:    "cosign-test",
		StartedOn:       time.Date(2025, 1, 2, 4, 0, 0, 0, time.UTC),
		FinishedOn:      time.Date(2025, 1, 2, 4, 1, 0, 0, time.UTC),
	})
	if err != nil {
		t.Fatal(err)
	}
	pred, err := protojson.Marshal(st.GetPredicate())
	if err != nil {
		t.Fatal(err)
	}
	priv, pub, err := sign.GenerateKeyPair([]byte("test-password"))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"cosign.key": priv, "cosign.pub": pub, "pred.json": pred} {
		if err := os.WriteFile(filepath.Join(work, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, bin, "attest", "--key", "cosign.key", "--type", "slsaprovenance1", "--predicate", "pred.json",
		"--tlog-upload=false", "-y", "--allow-insecure-registry", "--allow-http-registry", ref)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "HOME="+work, "TUF_ROOT="+filepath.Join(work, ".sigstore"), "COSIGN_PASSWORD=test-password", "COSIGN_YES=true")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign attest: %v\n%s", err, out)
	}

	code, out, errOut := run(t, "provenance", ref, "--key", "cosign.pub")
	if code != 0 || !strings.Contains(out, commit) || !strings.Contains(out, "fix.patch (diff) sha256:") {
		t.Fatalf("provenance of cosign's attestation: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = run(t, "provenance", ref, "--key", "cosign.pub", "-o", "json")
	var infos []provenance.Info
	if code != 0 || json.Unmarshal([]byte(out), &infos) != nil || len(infos) != 1 || infos[0].InvocationID != "cosign-test" {
		t.Fatalf("provenance -o json: exit %d\n%s\n%s", code, out, errOut)
	}
}
