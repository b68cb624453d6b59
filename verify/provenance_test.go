package verify

import (
	"context"
	"strings"
	"testing"

	"github.com/vmbuild/vmbuild/errs"
)

func TestProvenanceOfLayoutImage(t *testing.T) {
	s := newSigner(t)
	dir, d := makeLayout(t, t.TempDir(), "v1")
	in := provInput("127.0.0.1:5000/acme/app", d)
	signLayout(t, dir, d, s, stmtOf(t, in))
	ctx := context.Background()
	infos, err := mustVerifier(t, WithPublicKeys(s.Public())).Provenance(ctx, Target{Layout: dir, Digest: d})
	if err != nil || len(infos) != 1 || infos[0].Upstream.Commit != in.Upstream.Commit {
		t.Fatalf("Provenance = %+v, %v", infos, err)
	}
	// Under another key nothing is verified.
	_, err = mustVerifier(t, WithPublicKeys(newSigner(t).Public())).Provenance(ctx, Target{Layout: dir, Digest: d})
	if !errs.IsVerification(err) || !strings.Contains(err.Error(), "no verified SLSA provenance") {
		t.Fatalf("another key: %v", err)
	}
}
