package verify

import (
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/vmbuild/vmbuild/provenance"
)

// policyCheck is one constraint of a policy, decided on the provenance as
// provenance.Read parsed it (never on a looser reading). A new policy
// field is a row here, its field in Policy, and its line in the decoder.
type policyCheck struct {
	name string
	// waivable: the policy may leave the constraint open, and the check
	// is then reported as skipped (builder is never waived).
	waivable bool
	check    func(ev evidence, info *provenance.Info) Check
}

// policyChecks are the policy's constraints, in report order.
var policyChecks = []policyCheck{
	{CheckBuilder, false, func(ev evidence, info *provenance.Info) Check { return checkBuilder(ev.policy, info) }},
	{CheckSource, true, func(ev evidence, info *provenance.Info) Check { return checkSource(ev.policy, info) }},
	{CheckCommit, true, func(ev evidence, info *provenance.Info) Check { return checkCommit(ev.policy, ev.published, info) }},
	{CheckRecipe, true, func(ev evidence, info *provenance.Info) Check { return checkRecipe(ev.policy, info) }},
	{CheckPatches, true, func(ev evidence, info *provenance.Info) Check { return checkPatches(ev.policy, info) }},
	{CheckBaseImage, true, func(ev evidence, info *provenance.Info) Check { return checkBaseImages(ev.policy, info) }},
	{CheckFrontend, true, func(ev evidence, info *provenance.Info) Check { return checkFrontend(ev.policy, info) }},
	{CheckHermetic, true, func(ev evidence, info *provenance.Info) Check { return checkHermetic(ev.policy, info) }},
	{CheckDebianBase, true, func(ev evidence, info *provenance.Info) Check { return checkDebianBase(ev.policy, info) }},
}

// waivable reports whether the named check may be skipped in a verified
// report.
func waivable(name string) bool {
	for _, pc := range policyChecks {
		if pc.name == name {
			return pc.waivable
		}
	}
	return false
}

func checkBuilder(p *Policy, info *provenance.Info) Check {
	trusted := p.trustedBuilders()
	if slices.Contains(trusted, info.BuilderID) {
		return pass(CheckBuilder, "builder %s is trusted", info.BuilderID)
	}
	why := "the policy's builders"
	if p.IsNoPolicy() {
		why = "without a policy, only the default builder"
	} else if len(p.Builders) == 0 {
		why = "the policy names no builders: only the default builder"
	}
	return fail(CheckBuilder, "builder %q is not trusted (%s: %s)", clip(info.BuilderID), why, strings.Join(trusted, ", "))
}

func checkSource(p *Policy, info *provenance.Info) Check {
	switch {
	case p.IsNoPolicy():
		return skip(CheckSource, "not constrained: no policy (source is %s)", info.Upstream.URL)
	case p.AnySource:
		return skip(CheckSource, "not constrained: the policy allows any source (source is %s)", info.Upstream.URL)
	case info.Upstream.URL == p.Source:
		return pass(CheckSource, "built from %s", info.Upstream.URL)
	}
	return fail(CheckSource, "built from %q, the policy allows only %q", clip(info.Upstream.URL), p.Source)
}

func checkCommit(p *Policy, published map[string]bool, info *provenance.Info) Check {
	c := info.Upstream.Commit
	switch {
	case p.IsNoPolicy():
		return skip(CheckCommit, "not constrained: no policy (commit is %s)", c)
	case p.AnyCommit:
		return skip(CheckCommit, "not constrained: the policy allows any commit (commit is %s)", c)
	case slices.Contains(p.Commits, c):
		return pass(CheckCommit, "commit %s is listed in the policy", c)
	case published[c]:
		return pass(CheckCommit, "commit %s is recorded as published in %s", c, p.HistoryFile)
	}
	var where []string
	if len(p.Commits) > 0 {
		where = append(where, fmt.Sprintf("not among the policy's %d commit(s)", len(p.Commits)))
	}
	if p.HistoryFile != "" {
		where = append(where, fmt.Sprintf("not recorded as published in %s", p.HistoryFile))
	}
	return fail(CheckCommit, "commit %s is not allowed: %s", c, strings.Join(where, ", "))
}

func checkRecipe(p *Policy, info *provenance.Info) Check {
	rec := fmt.Sprintf("recipe %s (%s, sha256 %s)", clip(info.Recipe.Name), clip(info.Recipe.Path), info.Recipe.SHA256)
	switch {
	case p.IsNoPolicy():
		return skip(CheckRecipe, "not constrained: no policy (%s)", rec)
	case p.AnyRecipe:
		return skip(CheckRecipe, "not constrained: the policy allows any recipe (%s)", rec)
	case p.Recipes == nil:
		return skip(CheckRecipe, "not constrained: the policy lists no recipes (%s)", rec)
	case slices.Contains(p.Recipes, info.Recipe.SHA256):
		return pass(CheckRecipe, "%s is allowed", rec)
	}
	return fail(CheckRecipe, "%s: the sha256 is not among the policy's %d recipe(s)", rec, len(p.Recipes))
}

// checkPatches compares the patches applied with the policy's as
// multisets of sha256: a patch applied twice does not match a policy that
// lists it once (a policy cannot list a patch twice). With StrictPatches,
// each patch must be recorded as applied strictly.
func checkPatches(p *Policy, info *provenance.Info) Check {
	if p.IsNoPolicy() {
		return skip(CheckPatches, "not constrained: no policy (%d patch(es))", len(info.Patches))
	}
	if p.AnyPatches && !p.StrictPatches {
		return skip(CheckPatches, "not constrained: the policy allows any patch set (%d patch(es))", len(info.Patches))
	}
	var problems []string
	if !p.AnyPatches {
		problems = patchSetProblems(p.Patches, info.Patches)
	}
	if p.StrictPatches {
		for _, pt := range info.Patches {
			if ok, why := pt.Strict(); !ok {
				problems = append(problems, fmt.Sprintf("patch %q is not applied strictly (%s)", clip(pt.Name), why))
			}
		}
	}
	if len(problems) > 0 {
		what := "the patch set differs from the policy's"
		if p.AnyPatches {
			what = "the policy requires strict patches"
		}
		return fail(CheckPatches, "%s: %s", what, strings.Join(problems, "; "))
	}
	strict := ""
	if p.StrictPatches {
		strict = ", each applied strictly"
	}
	if len(info.Patches) == 0 {
		if p.AnyPatches {
			return pass(CheckPatches, "no patches (the policy allows any patch set, applied strictly)")
		}
		return pass(CheckPatches, "no patches, as the policy requires")
	}
	names := make([]string, 0, len(info.Patches))
	for _, pt := range info.Patches {
		names = append(names, pt.Name)
	}
	if p.AnyPatches {
		return pass(CheckPatches, "%d patch(es) (the policy allows any patch set)%s: %s", len(info.Patches), strict, strings.Join(names, ", "))
	}
	return pass(CheckPatches, "exactly the policy's %d patch(es)%s: %s", len(info.Patches), strict, strings.Join(names, ", "))
}

// patchSetProblems compares the applied patches with the policy's, by
// sha256, counting: every applied patch must be listed, as often as it
// was applied, under the policy's name when it gives one.
func patchSetProblems(want []PolicyPatch, got []provenance.Patch) []string {
	listed := map[string]PolicyPatch{}
	for _, pt := range want {
		listed[pt.SHA256] = pt
	}
	applied := map[string][]string{} // sha256 → names, in order
	var order []string
	var problems []string
	for _, pt := range got {
		if _, seen := applied[pt.SHA256]; !seen {
			order = append(order, pt.SHA256)
		}
		applied[pt.SHA256] = append(applied[pt.SHA256], pt.Name)
		w, ok := listed[pt.SHA256]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("extra patch %q (sha256 %s) is not in the policy", clip(pt.Name), pt.SHA256))
		case w.Name != "" && w.Name != pt.Name:
			problems = append(problems, fmt.Sprintf("patch sha256 %s is recorded as %q, the policy names it %q", pt.SHA256, clip(pt.Name), w.Name))
		}
	}
	for _, sha := range order {
		if names := applied[sha]; len(names) > 1 {
			if _, ok := listed[sha]; ok {
				quoted := make([]string, len(names))
				for i, n := range names {
					quoted[i] = fmt.Sprintf("%q", clip(n))
				}
				problems = append(problems, fmt.Sprintf("patch sha256 %s is applied %d times (as %s), the policy lists it once", sha, len(names), strings.Join(quoted, ", ")))
			}
		}
	}
	for _, pt := range want {
		if len(applied[pt.SHA256]) == 0 {
			name := ""
			if pt.Name != "" {
				name = fmt.Sprintf(" %q", pt.Name)
			}
			problems = append(problems, fmt.Sprintf("missing patch%s (sha256 %s) was not applied", name, pt.SHA256))
		}
	}
	return problems
}

func checkBaseImages(p *Policy, info *provenance.Info) Check {
	var imgs []provenance.Image
	if info.Base.Ref != "" {
		imgs = append(imgs, info.Base)
	}
	imgs = append(imgs, info.Images...)
	var names []string
	for _, im := range imgs {
		names = append(names, im.Ref+"@"+im.Digest)
	}
	switch {
	case p.IsNoPolicy():
		return skip(CheckBaseImage, "not constrained: no policy (%s)", strings.Join(names, ", "))
	case p.AnyBaseImage:
		return skip(CheckBaseImage, "not constrained: the policy allows any base image (%s)", strings.Join(names, ", "))
	case len(imgs) == 0 && info.Debian != nil:
		return pass(CheckBaseImage, "the build started from no image: its base is assembled from Debian packages")
	case len(imgs) == 0:
		return pass(CheckBaseImage, "the build started from no image")
	}
	var bad []string
	for _, im := range imgs {
		if !slices.Contains(p.BaseImages, digest.Digest(im.Digest)) {
			bad = append(bad, fmt.Sprintf("%s@%s", clip(im.Ref), im.Digest))
		}
	}
	if len(bad) > 0 {
		return fail(CheckBaseImage, "image(s) not allowed by the policy's baseImages: %s", strings.Join(bad, ", "))
	}
	return pass(CheckBaseImage, "allowed: %s", strings.Join(names, ", "))
}

func checkFrontend(p *Policy, info *provenance.Info) Check {
	fe := "no frontend image"
	switch {
	case info.Frontend != nil:
		fe = "frontend " + clip(info.Frontend.Ref) + "@" + info.Frontend.Digest
	case info.Dockerfile != nil:
		fe = "no frontend image: BuildKit's built-in Dockerfile frontend"
	case info.Native != nil:
		fe = "no frontend image: a native build"
	}
	switch {
	case p.IsNoPolicy():
		return skip(CheckFrontend, "not constrained: no policy (%s)", fe)
	case p.AnyFrontend:
		return skip(CheckFrontend, "not constrained: the policy allows any frontend (%s)", fe)
	case p.Frontends == nil:
		return skip(CheckFrontend, "not constrained: the policy lists no frontends (%s)", fe)
	case info.Frontend == nil:
		return pass(CheckFrontend, "%s", fe)
	case slices.Contains(p.Frontends, digest.Digest(info.Frontend.Digest)):
		return pass(CheckFrontend, "%s is allowed", fe)
	case len(p.Frontends) == 0:
		return fail(CheckFrontend, "%s: the policy allows no frontend image (frontends: [])", fe)
	}
	return fail(CheckFrontend, "%s is not among the policy's %d frontend(s)", fe, len(p.Frontends))
}

// maxListed bounds the non-hermetic accesses a reason names.
const maxListed = 5

func checkHermetic(p *Policy, info *provenance.Info) Check {
	var state string
	switch n := len(info.NonHermetic); {
	case info.NonHermetic == nil:
		state = "not recorded"
	case n == 0:
		state = "hermetic"
	default:
		state = fmt.Sprintf("%d non-hermetic step(s) or download(s)", n)
	}
	switch {
	case p.IsNoPolicy():
		return skip(CheckHermetic, "not constrained: no policy (%s)", state)
	case !p.Hermetic:
		return skip(CheckHermetic, "not required by the policy (%s)", state)
	case info.NonHermetic == nil:
		return fail(CheckHermetic, "the provenance does not record network access and unpinned downloads (it predates that record): the build cannot be shown hermetic")
	case len(info.NonHermetic) == 0:
		return pass(CheckHermetic, "hermetic: no step had network access, nothing was downloaded unpinned")
	}
	var items []string
	for i, a := range info.NonHermetic {
		if i == maxListed {
			items = append(items, fmt.Sprintf("and %d more", len(info.NonHermetic)-maxListed))
			break
		}
		items = append(items, clip(a.String()))
	}
	return fail(CheckHermetic, "not hermetic: %s", strings.Join(items, "; "))
}

func checkDebianBase(p *Policy, info *provenance.Info) Check {
	state := "no Debian base"
	if d := info.Debian; d != nil {
		state = fmt.Sprintf("Debian %s from %s, index signed by %s, %d package(s)", d.Suite, clip(d.Mirror), d.SignedBy, countBase(info))
	}
	switch {
	case p.IsNoPolicy():
		return skip(CheckDebianBase, "not constrained: no policy (%s)", state)
	case p.Debian == nil:
		return skip(CheckDebianBase, "not constrained by the policy (%s)", state)
	case info.Debian == nil:
		return fail(CheckDebianBase, "the policy constrains a Debian base, but the image's base is not assembled from Debian packages")
	}
	d, want := info.Debian, p.Debian
	var bad []string
	if want.Suites != nil && !slices.Contains(want.Suites, d.Suite) {
		bad = append(bad, fmt.Sprintf("suite %q is not one of %s", clip(d.Suite), strings.Join(want.Suites, ", ")))
	}
	if want.SignedBy != nil && !slices.Contains(want.SignedBy, d.SignedBy) {
		bad = append(bad, fmt.Sprintf("the index was signed by %s, not by one of %s", d.SignedBy, strings.Join(want.SignedBy, ", ")))
	}
	if want.Keyrings != nil && !slices.Contains(want.Keyrings, d.KeyringSHA256) {
		bad = append(bad, fmt.Sprintf("keyring sha256 %s is not one of the policy's %d", d.KeyringSHA256, len(want.Keyrings)))
	}
	if len(bad) > 0 {
		return fail(CheckDebianBase, "%s", strings.Join(bad, "; "))
	}
	return pass(CheckDebianBase, "%s", state)
}

// countBase counts the .debs of a Debian base.
func countBase(info *provenance.Info) int {
	n := 0
	for _, p := range info.Packages {
		if p.Layer == "" {
			n++
		}
	}
	return n
}
