package publish

import (
	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/patch"
	"github.com/vmbuild/vmbuild/provenance"
	"github.com/vmbuild/vmbuild/recipe"
)

// recordedPatches are the provenance's patches: each with the recipe's
// options and the outcome the build reported (left unrecorded when the
// result has no report for it).
func recordedPatches(r *recipe.Recipe, res *build.Result) []provenance.Patch {
	var out []provenance.Patch
	for i, p := range r.Patches {
		pt := provenance.Patch{Name: p.Name, Kind: string(p.Kind), SHA256: p.SHA256,
			Options: &provenance.PatchOptions{Offset: p.Offset, Fuzz: p.Fuzz, Optional: p.Optional}}
		if i < len(res.Patches) && res.Patches[i].Patch == p.Name {
			switch res.Patches[i].Status {
			case patch.StatusApplied:
				pt.Outcome = provenance.OutcomeApplied
			case patch.StatusNoop:
				pt.Outcome = provenance.OutcomeNoop
			}
		}
		out = append(out, pt)
	}
	return out
}

// recordedNonHermetic is the build's network access and unpinned
// downloads as the provenance records them; nil (not recorded) when the
// build could not tell.
func recordedNonHermetic(res *build.Result) []provenance.Access {
	if res.NonHermetic == nil {
		return nil
	}
	out := make([]provenance.Access, 0, len(res.NonHermetic))
	for _, a := range res.NonHermetic {
		out = append(out, provenance.Access{Kind: a.Kind, Step: a.Step, Network: a.Network, URI: a.URL})
	}
	return out
}
