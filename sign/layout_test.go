package sign

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/provenance"
	"github.com/vmbuild/vmbuild/store"
)

func readIndex(t *testing.T, dir string) ocispec.Index {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	return idx
}

func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func localArgs(cmd, pub, dir string) []string {
	args := []string{cmd, "--key", pub, "--insecure-ignore-tlog", "--local-image", dir}
	if cmd == "verify-attestation" {
		args = append(args, "--type", "slsaprovenance1")
	}
	return args
}

func TestCosignVerifiesLayout(t *testing.T) {
	cosign := cosignBin(t, "cosign")
	cosign3 := cosignBin(t, "cosign3")
	ctx := context.Background()
	work := t.TempDir()
	s := keyFiles(t, work, "vmbuild")
	keyFiles(t, work, "other")
	dir, img := makeLayout(t, work, "both")
	stmt := provenanceFor(t, "127.0.0.1:5000/acme/app", img.Digest, "1")

	res, err := signLayout(ctx, dir, img.Digest, s, stmt, WithFormats(FormatAll))
	if err != nil {
		t.Fatalf("SignLayout: %v", err)
	}
	if len(res.Artifacts) != 4 {
		t.Fatalf("SignLayout result: %+v", res)
	}
	idx := readIndex(t, dir)
	kinds := map[string]int{}
	for _, m := range idx.Manifests {
		kinds[m.Annotations[store.KindAnnotation]+"|"+m.ArtifactType]++
	}
	if kinds[store.KindImage+"|"] != 1 || kinds[store.KindSignatures+"|"] != 1 || kinds[store.KindAttestation+"|"] != 1 || kinds["|"+BundleMediaType] != 2 {
		t.Fatalf("index.json entries: %v", kinds)
	}
	if idx.Manifests[0].Annotations["io.containerd.image.name"] == "" {
		t.Fatal("the exporter's annotations were lost")
	}

	for _, bin := range []string{cosign, cosign3} {
		mustPass(t, work, bin, localArgs("verify", "vmbuild.pub", dir)...)
		out := mustPass(t, work, bin, localArgs("verify-attestation", "vmbuild.pub", dir)...)
		if !strings.Contains(out, base64.StdEncoding.EncodeToString(stmt)) {
			t.Fatalf("%s verify-attestation output lacks the statement", filepath.Base(bin))
		}
		mustFail(t, work, bin, localArgs("verify", "other.pub", dir)...)
		mustFail(t, work, bin, localArgs("verify-attestation", "other.pub", dir)...)
	}

	// Our read side.
	sigs, err := fetchLayoutSignatures(ctx, dir, img.Digest)
	if err != nil || len(sigs) != 2 {
		t.Fatalf("FetchLayoutSignatures: %d, %v", len(sigs), err)
	}
	for _, sg := range sigs {
		if err := VerifyImageSignature(s.Public(), sg, img.Digest); err != nil {
			t.Fatalf("%s: %v", sg.Source, err)
		}
	}
	ss, _ := ParseSimpleSigning(sigs[0].Payload)
	if ss == nil || ss.DockerReference != "127.0.0.1:5000/acme/app" {
		t.Fatalf("layout signature identity: %+v", ss)
	}

	// Idempotent: nothing changes on disk.
	before := listFiles(t, dir)
	beforeIdx, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	res, err = signLayout(ctx, dir, img.Digest, s, stmt, WithFormats(FormatAll))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range res.Artifacts {
		if a.Action != Unchanged {
			t.Fatalf("second SignLayout: %s %v %s", a.Kind, a.Format, a.Action)
		}
	}
	afterIdx, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	if strings.Join(before, ",") != strings.Join(listFiles(t, dir), ",") || string(beforeIdx) != string(afterIdx) {
		t.Fatal("second SignLayout changed the layout")
	}

	// A new statement replaces the attestation; the old blobs go away.
	stmt2 := provenanceFor(t, "127.0.0.1:5000/acme/app", img.Digest, "2")
	res, err = signLayout(ctx, dir, img.Digest, s, stmt2, WithFormats(FormatAll))
	if err != nil {
		t.Fatal(err)
	}
	actions := map[string]Action{}
	for _, a := range res.Artifacts {
		actions[a.Kind+"/"+a.Format.String()] = a.Action
	}
	if actions["signature/legacy"] != Unchanged || actions["signature/bundle"] != Unchanged || actions["attestation/legacy"] != Replaced || actions["attestation/bundle"] != Replaced {
		t.Fatalf("replacement actions: %v", actions)
	}
	if n := len(listFiles(t, dir)); n != len(before) {
		t.Fatalf("after replacement %d files, before %d: old blobs left behind or new missing:\n%v\n%v", n, len(before), before, listFiles(t, dir))
	}
	for _, bin := range []string{cosign, cosign3} {
		out := mustPass(t, work, bin, localArgs("verify-attestation", "vmbuild.pub", dir)...)
		if !strings.Contains(out, base64.StdEncoding.EncodeToString(stmt2)) || strings.Contains(out, base64.StdEncoding.EncodeToString(stmt)) {
			t.Fatalf("%s sees the replaced statement", filepath.Base(bin))
		}
	}
	atts, err := fetchLayoutAttestations(ctx, dir, img.Digest)
	if err != nil || len(atts) != 2 {
		t.Fatalf("FetchLayoutAttestations: %d, %v", len(atts), err)
	}
	for _, a := range atts {
		_, payload, err := VerifyDSSE(s.Public(), a.Envelope)
		if err != nil || string(payload) != string(stmt2) {
			t.Fatalf("%s: %v", a.Source, err)
		}
		if _, err := provenance.Parse(payload); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range listFiles(t, dir) {
		if strings.Contains(f, ".tmp-") || strings.HasPrefix(f, "ingest") {
			t.Fatalf("leftover file %s", f)
		}
	}

	// Legacy only: what cosign v2 and v3 read without bundles.
	ldir, limg := makeLayout(t, work, "legacy")
	if _, err := signLayout(ctx, ldir, limg.Digest, s, provenanceFor(t, "x", limg.Digest, "1"), WithFormats(FormatLegacy)); err != nil {
		t.Fatal(err)
	}
	for _, bin := range []string{cosign, cosign3} {
		mustPass(t, work, bin, localArgs("verify", "vmbuild.pub", ldir)...)
		mustPass(t, work, bin, localArgs("verify-attestation", "vmbuild.pub", ldir)...)
		mustFail(t, work, bin, localArgs("verify", "other.pub", ldir)...)
	}
}

func TestSignLayoutRefusals(t *testing.T) {
	ctx := context.Background()
	work := t.TempDir()
	s := keyFiles(t, work, "k")
	dir, img := makeLayout(t, work, "a")
	if _, err := signLayout(ctx, dir, digest.FromString("not there"), s, nil); err == nil {
		t.Fatal("signing an image that is not in the layout succeeded")
	}
	if _, err := signLayout(ctx, dir, img.Digest, s, provenanceFor(t, "x", digest.FromString("other"), "1")); err == nil {
		t.Fatal("attesting a statement about another image succeeded")
	}
	if _, err := signLayout(ctx, work, img.Digest, s, nil); err == nil {
		t.Fatal("a directory without oci-layout was accepted")
	}
	// Signature only (no statement).
	res, err := signLayout(ctx, dir, img.Digest, s, nil, WithFormats(FormatAll))
	if err != nil || len(res.Artifacts) != 2 {
		t.Fatalf("sign only: %+v, %v", res, err)
	}
	if atts, err := fetchLayoutAttestations(ctx, dir, img.Digest); err != nil || len(atts) != 0 {
		t.Fatalf("attestations after sign-only: %d, %v", len(atts), err)
	}
}
