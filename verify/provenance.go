package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/provenance"
	"github.com/vmbuild/vmbuild/sign"
)

// Provenance returns the SLSA provenance of t: every attestation attached
// to the image that is signed by a trusted key and reads as vmbuild
// provenance about t's digest (the format checks of Verify, through
// provenance.Read), once each (the same statement attached in two
// formats is returned once). It reads within the Verifier's limits and
// deadline and checks no policy: to decide whether to deploy, use Verify.
// When none qualifies the error is an *errs.VerificationError with each
// attestation's reason.
func (v *Verifier) Provenance(ctx context.Context, t Target) ([]*provenance.Info, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := v.deadline(ctx)
	defer cancel()
	ctx = withBudget(ctx, v.maxBytes)
	st, err := v.openImage(ctx, t)
	if err != nil {
		return nil, v.classify(ctx, err)
	}
	atts, err := sign.FetchAttestations(ctx, st, t.Digest)
	if err != nil {
		return nil, v.classify(ctx, err)
	}
	ev := evidence{digest: t.Digest, keys: v.keys, policy: NoPolicy()}
	var out []*provenance.Info
	var reasons []string
	seen := map[string]bool{}
	for _, a := range atts {
		r := evalAttestation(ev, a)
		if r.info == nil {
			for _, c := range r.checks {
				if !c.OK && !c.Skipped {
					reasons = append(reasons, c.Reason)
					break
				}
			}
			continue
		}
		key, err := json.Marshal(r.info)
		if err != nil || seen[string(key)] {
			continue
		}
		seen[string(key)] = true
		out = append(out, r.info)
	}
	if len(out) == 0 {
		if len(reasons) == 0 {
			reasons = append(reasons, "no attestations found")
		}
		sort.Strings(reasons)
		return nil, &errs.VerificationError{Check: CheckAttestation, Reason: fmt.Sprintf("no verified SLSA provenance for %s: %s", t, strings.Join(reasons, "; "))}
	}
	return out, nil
}
