package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/vmbuild/vmbuild/bench/internal/harness"
)

// Target is one of the issues' targets, evaluated.
type Target struct {
	Name   string
	Figure string
	Status string // met, missed, held, failed, n/a
	// scenario and contender whose failed checks make a held target
	// failed (contender empty: any of the scenario's).
	scenario, contender string
}

func size(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func (r *Results) scenario(id string) *Scenario {
	for _, s := range r.Scenarios {
		if s != nil && s.ID == id {
			return s
		}
	}
	return nil
}

// bumpTarget is the limit of issue #12: a single-package bump costs at
// most this fraction of a full reinstall.
const bumpTarget = 0.2

// bumpCase is one single-package bump the targets judge: the hermetic
// contender's rebuild after it against the baseline's (the layer running
// the package manager with the network, which reinstalls everything).
type bumpCase struct {
	scenario, what, hermetic, phase string
}

var bumpCases = []bumpCase{
	{"yarn", "yarn.lock: " + bumpPackage + " " + bumpTo + " (Mastodon streaming)", "hermetic", "bump"},
	{"npm", "package-lock.json: dotenv 16.4.7", "hermetic", "bump"},
	{"bundler", "Gemfile.lock: " + bumpPlain + " (per gem)", "hermetic-pergem", "bump-plain"},
	{"bundler", "Gemfile.lock: " + bumpCExt + ", two C extensions compile against it (per gem)", "hermetic-pergem", "bump-cext"},
	{"bundler", "Gemfile.lock: " + bumpPlain + " (perGem: false)", "hermetic-all", "bump-plain"},
	{"bundler", "Gemfile.lock: " + bumpCExt + " (perGem: false)", "hermetic-all", "bump-cext"},
}

// noopOK reports whether every no-op rebuild of contender that ran made
// no request to the package source nor to the archive, and how many ran.
func (s *Scenario) noopOK(contender string) (ok bool, n int) {
	ok = true
	for _, r := range s.Runs {
		if r.Contender != contender || r.Phase != "noop" || r.Digest == "" {
			continue
		}
		n++
		if r.Proxy.Requests != 0 || r.Archive.Requests != 0 {
			ok = false
		}
	}
	return ok, n
}

// Targets evaluates the targets the issues name, against the medians.
func (r *Results) Targets() []Target {
	var ts []Target
	for _, c := range bumpCases {
		s := r.scenario(c.scenario)
		if s == nil {
			continue
		}
		hb, bb, hc := s.agg(c.hermetic, c.phase), s.agg("baseline", c.phase), s.agg(c.hermetic, "cold")
		t := Target{Name: fmt.Sprintf("#12: a single-package bump costs ≤ %.1f× a full reinstall — %s", bumpTarget, c.what), Status: "n/a"}
		if hb.N > 0 && bb.N > 0 {
			x := harness.Ratio(hb.Wall, bb.Wall)
			t.Figure = fmt.Sprintf("wall: %s rebuild %s s vs the baseline's reinstall with the network %s s = **%.2f×**", c.hermetic, harness.Secs(hb.Wall), harness.Secs(bb.Wall), x)
			if hc.N > 0 {
				t.Figure += fmt.Sprintf(" (%.2f× the hermetic cold build, %s s)", harness.Ratio(hb.Wall, hc.Wall), harness.Secs(hc.Wall))
			}
			if hb.InstallTime > 0 && bb.InstallTime > 0 {
				what := "the layer's step alone"
				if hb.InstallTime != hb.StepTime {
					what = "the install alone (the layer's step and the per-gem installs that ran, summed)"
				}
				t.Figure += fmt.Sprintf("; %s %s s vs %s s (%.2f×)", what, harness.Secs(hb.InstallTime), harness.Secs(bb.InstallTime), harness.Ratio(hb.InstallTime, bb.InstallTime))
			}
			t.Figure += fmt.Sprintf("; fetched %d packages, %s vs %d packages, %s", hb.Packages, size(hb.Bytes), bb.Packages, size(bb.Bytes))
			if bb.Bytes > 0 {
				t.Figure += fmt.Sprintf(" (%.3f× the bytes)", float64(hb.Bytes)/float64(bb.Bytes))
			}
			t.Status = "missed"
			if x <= bumpTarget {
				t.Status = "met"
			}
		}
		ts = append(ts, t)
	}
	for _, id := range []string{"yarn", "npm", "bundler"} {
		s := r.scenario(id)
		if s == nil {
			continue
		}
		for _, c := range s.contenders() {
			if c == "baseline" {
				continue
			}
			t := Target{Name: fmt.Sprintf("#12: a warm rebuild of an unchanged lockfile fetches nothing — %s, %s", id, c), Status: "n/a"}
			ok, n := s.noopOK(c)
			if n > 0 {
				a := s.agg(c, "noop")
				t.Figure = fmt.Sprintf("%d of %d no-op rebuilds made 0 requests to the package source and 0 to the archive (%s s, median)", n, s.reps(r), harness.Secs(a.Wall))
				t.Status = "met"
				if !ok {
					t.Status = "missed"
					t.Figure = fmt.Sprintf("a no-op rebuild fetched: registry %s, archive %s", a.First.Proxy, a.First.Archive)
				}
			}
			ts = append(ts, t)
		}
	}
	if g := r.scenario("bundler"); g != nil {
		p, c := g.agg("hermetic-pergem", "bump-plain"), g.agg("hermetic-pergem", "bump-cext")
		t := Target{Name: "#12: a one-gem bump re-runs that gem's step and its dependents' only; a C extension compiles again only when it depends on the bumped gem (per-gem, asserted)", Status: "n/a", scenario: "bundler", contender: "hermetic-pergem"}
		if p.N > 0 && c.N > 0 {
			t.Figure = fmt.Sprintf("bump of %s: %d gem steps re-ran (%s), no C extension; bump of %s: %d re-ran (%s), C extensions %s compiled again", bumpPlain, len(p.First.GemStepsRan), strings.Join(p.First.GemStepsRan, ", "), bumpCExt, len(c.First.GemStepsRan), strings.Join(c.First.GemStepsRan, ", "), strings.Join(cextsOver(c.First.GemStepsRan), " and "))
			t.Status = "held"
		}
		ts = append(ts, t)
	}
	if d := r.scenario("debian"); d != nil {
		t := Target{Name: "#13: a warm rebuild of the Debian base fetches and unpacks nothing, same digest (asserted)", Status: "n/a", scenario: "debian"}
		if a, c := d.agg("hermetic", "warm"), d.agg("hermetic", "cold"); a.N > 0 && c.N > 0 {
			t.Figure = fmt.Sprintf("cold %s s (%d .debs, %s), warm %s s (0 fetched, 0 unpacked)", harness.Secs(c.Wall), c.First.Debs, size(c.DebBytes), harness.Secs(a.Wall))
			t.Status = "held"
		}
		ts = append(ts, t)
	}
	for _, s := range r.Scenarios {
		if s == nil {
			continue
		}
		for _, run := range s.Runs {
			if !run.OK() {
				for i := range ts {
					if ts[i].Status == "held" && strings.Contains(run.Err, "check failed") && ts[i].scenario == s.ID && (ts[i].contender == "" || ts[i].contender == run.Contender) {
						ts[i].Status = "failed"
					}
				}
			}
		}
	}
	return ts
}

// summary is what the program prints at the end.
func summary(r *Results) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nTargets (repetitions: %s):\n", r.repsText())
	for _, t := range r.Targets() {
		fmt.Fprintf(&b, "  [%s] %s: %s\n", t.Status, t.Name, strings.ReplaceAll(t.Figure, "**", ""))
	}
	return b.String()
}

var phaseTitles = map[string]string{
	"lock":          "lock (no download cache)",
	"lock-cold":     "lock, cold Debian index cache",
	"lock-warm":     "lock, warm Debian index cache",
	"cli-lock-cold": "`vmbuild lock` (the command), empty cache directory",
	"cli-lock-warm": "`vmbuild lock` (the command), warm cache directory",
	"cold":          "cold build (fresh buildkitd)",
	"warm":          "warm rebuild (same daemon)",
	"noop":          "no-op rebuild (same lock)",
	"relock":        "re-lock at the bump",
	"bump":          "rebuild after the bump",
	"relock-plain":  "re-lock: " + bumpPlain + " bumped",
	"bump-plain":    "rebuild: " + bumpPlain + " bumped (no C extension needs it)",
	"relock-cext":   "re-lock: " + bumpCExt + " bumped",
	"bump-cext":     "rebuild: " + bumpCExt + " bumped (cext1, cext3 compile against it)",
}

func wallCell(a Agg) string {
	if a.N == 0 {
		return "—"
	}
	if a.N == 1 {
		return harness.Secs(a.Wall)
	}
	return fmt.Sprintf("%s <sub>%s–%s</sub>", harness.Secs(a.Wall), harness.Secs(a.Min), harness.Secs(a.Max))
}

// phases lists a scenario's phases in the order they ran.
func (s *Scenario) phases() []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range s.Runs {
		if !seen[r.Phase] {
			seen[r.Phase] = true
			out = append(out, r.Phase)
		}
	}
	return out
}

func (s *Scenario) contenders() []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range s.Runs {
		if !seen[r.Contender] {
			seen[r.Contender] = true
			out = append(out, r.Contender)
		}
	}
	order := map[string]int{"hermetic": 0, "hermetic-pergem": 1, "hermetic-all": 2, "baseline": 3}
	sort.SliceStable(out, func(i, j int) bool { return order[out[i]] < order[out[j]] })
	return out
}

func isLock(phase string) bool {
	return strings.HasPrefix(phase, "lock") || strings.HasPrefix(phase, "relock") || strings.HasPrefix(phase, "cli-lock")
}

// table renders a scenario's runs: one row per contender × phase.
func (s *Scenario) table(b *strings.Builder, gems bool) {
	pkgWord := "packages"
	if gems {
		pkgWord = "gems"
	}
	fmt.Fprintf(b, "| contender | run | wall (s): median <sub>range</sub> | %s fetched | bytes fetched | .debs fetched | steps re-run |\n", pkgWord)
	b.WriteString("|---|---|---:|---:|---:|---:|---|\n")
	for _, c := range s.contenders() {
		for _, ph := range s.phases() {
			a := s.agg(c, ph)
			if a.N == 0 {
				if s.hasRun(c, ph) {
					fmt.Fprintf(b, "| %s | %s | failed | | | | |\n", c, title(ph))
				}
				continue
			}
			var pk, by, debs, steps string
			if isLock(ph) {
				pk = fmt.Sprintf("%d downloaded to hash", a.Packages)
				if a.Packages == 0 {
					pk = "0"
				}
				by = size(a.Bytes)
				debs = "index: " + size(a.DebBytes)
				if a.DebBytes == 0 {
					debs = "0"
				}
				steps = ""
				if len(a.First.Changes) > 0 {
					steps = "lock: " + strings.Join(a.First.Changes, "; ")
				}
			} else {
				pk = fmt.Sprintf("%d", a.Packages)
				by = size(a.Bytes)
				debs = fmt.Sprintf("%d (%s)", a.Debs, size(a.DebBytes))
				if a.Debs == 0 {
					debs = "0"
				}
				steps = stepsCell(a.First, gems)
			}
			if len(a.Differing) > 0 {
				steps += " (differs in " + strings.Join(a.Differing, ", ") + ")"
			}
			t := title(ph)
			if a.First.ReusedDaemon && ph == "cold" {
				t += " — **--quick: the scenario's daemon, not cold**"
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n", c, t, wallCell(a), pk, by, debs, steps)
		}
	}
}

func (s *Scenario) hasRun(c, ph string) bool {
	for _, r := range s.Runs {
		if r.Contender == c && r.Phase == ph {
			return true
		}
	}
	return false
}

func title(ph string) string {
	if t, ok := phaseTitles[ph]; ok {
		return t
	}
	return ph
}

func stepsCell(r Run, gems bool) string {
	var parts []string
	if len(r.LayerSteps) == 0 {
		parts = append(parts, "0")
	} else {
		parts = append(parts, fmt.Sprintf("layer %s (%s s)", strings.Join(r.LayerSteps, ", "), harness.Secs(r.LayerStepTime)))
	}
	if r.Unpacked > 0 {
		parts = append(parts, fmt.Sprintf("%d .debs unpacked", r.Unpacked))
	}
	if gems && (len(r.GemStepsRan) > 0 || r.GemStepsCached > 0) {
		s := fmt.Sprintf("%d gem installs ran, %d cache hits", len(r.GemStepsRan), r.GemStepsCached)
		if n := len(r.GemStepsRan); n > 0 && n < 34 {
			s += " (" + strings.Join(r.GemStepsRan, ", ") + ")"
		}
		if cx := cextsOver(r.GemStepsRan); len(cx) > 0 {
			s += fmt.Sprintf("; C extensions compiled: %s", strings.Join(cx, ", "))
		} else if len(r.GemStepsRan) > 0 {
			s += "; no C extension compiled"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// breakdown renders where a build's time went (medians).
func (s *Scenario) breakdown(c, ph string) string {
	var rs []Run
	for _, r := range s.Runs {
		if r.Contender == c && r.Phase == ph && r.OK() {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		return ""
	}
	parts := map[string][]time.Duration{}
	for _, r := range rs {
		for k, v := range r.Breakdown {
			parts[k] = append(parts[k], v)
		}
	}
	names := map[string]string{
		"source": "fetching the commit (BuildKit's git source)", "fetches": "fetches (in parallel, summed)", "unpacks": ".deb unpacks (in parallel, summed)",
		"base": "assembling the base", "mirror": "the pinned packages' mirror", "gem-installs": "per-gem installs (some in parallel, summed)",
		"layer": "the layer's run", "outputs": "the layer's outputs", "export": "exporting the image",
	}
	var out []string
	for _, k := range []string{"source", "fetches", "unpacks", "base", "mirror", "gem-installs", "layer", "outputs", "export"} {
		if v, ok := parts[k]; ok {
			out = append(out, fmt.Sprintf("%s %s s", names[k], harness.Secs(harness.Median(v))))
		}
	}
	return strings.Join(out, ", ")
}

// Markdown renders the results in the style of bench/RESULTS.md.
func (r *Results) Markdown(jsonName string) string {
	var b strings.Builder
	b.WriteString("# vmbuild hermetic dependencies benchmark\n\n")
	fmt.Fprintf(&b, "Written by `%s`; figures measured on %s, %s to %s UTC (each scenario says the command that measured it). Medians over the repetitions of every sequence (%s). Raw figures: `%s`.\n\n",
		r.Command, r.Started.Format("2006-01-02"), r.Started.Format("15:04"), r.Finished.Format("15:04"), r.repsText(), jsonName)
	b.WriteString("Reproduce: `bench/run-hermetic` (from the repository root, as root; needs `make tools build`, node, ruby with `gem`, and the network: registry.npmjs.org, registry.yarnpkg.com, deb.debian.org). `bench/run-hermetic --quick` is the harness check (1 repetition); `--reps 3,bundler=1` runs a slow scenario fewer times; `--scenarios bundler --merge bench/RESULTS-hermetic.json` measures one scenario again and keeps the others. Each scenario below says the command that measured it.\n\n")
	if r.Quick {
		b.WriteString("**Quick run** (a harness check): one repetition, and the sequences of a scenario share one buildkitd (only the first one's cold build is cold); the figures are not for quoting.\n\n")
	}
	if len(r.Errors) > 0 {
		b.WriteString("**The run had harness errors** (it exited 1):\n\n")
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "- %s\n", harness.FirstLine(e))
		}
		b.WriteString("\n")
	}

	b.WriteString("## Targets\n\n| target | where we stand | status |\n|---|---|---|\n")
	for _, t := range r.Targets() {
		fmt.Fprintf(&b, "| %s | %s | **%s** |\n", t.Name, t.Figure, t.Status)
	}
	b.WriteString("\n")
	r.yarnWhy(&b)

	n := 0
	for _, s := range r.Scenarios {
		if s == nil {
			continue
		}
		n++
		fmt.Fprintf(&b, "## %d. %s\n\n", n, s.Title)
		if s.Skipped != "" {
			fmt.Fprintf(&b, "Not run: %s\n\n", s.Skipped)
			continue
		}
		fmt.Fprintf(&b, "Measured by %s.\n\n", s.measuredBy(r))
		for _, l := range s.Setup {
			fmt.Fprintf(&b, "- %s\n", l)
		}
		b.WriteString("\n")
		s.table(&b, s.ID == "bundler")
		b.WriteString("\n")
		switch s.ID {
		case "yarn":
			r.yarnNotes(&b, s)
		case "bundler":
			r.gemNotes(&b, s)
		case "debian":
			r.debianNotes(&b, s)
		case "npm":
			r.buildNotes(&b, s, []string{"hermetic", "baseline"}, []string{"cold", "bump"})
		}
		for _, l := range s.Notes {
			fmt.Fprintf(&b, "- %s\n", l)
		}
		b.WriteString("\n")
	}
	if y := r.scenario("yarn"); y != nil {
		r.streaming(&b, y, "##")
	}

	b.WriteString(`## How each figure is measured

- **Daemons**: every sequence (one contender, one repetition) starts its own buildkitd (harness.StartBuildKitd: a fresh state directory, ` + "`gc = false`" + `, allowed the network.host entitlement as vmbuild's managed daemon is) and stops and removes it at the end, so each cold build is really cold: no fetch, unpack or step of another sequence is in its cache. The order of contenders rotates between repetitions.
- **Locks and builds** are made in-process with the library vmbuild's CLI uses: ` + "`lock.Resolver.Resolve`" + ` (as ` + "`vmbuild lock`" + `, with a fresh ` + "`deps.Fetcher`" + ` with no download cache for every lock, the Debian index cache shared by the run except in the Debian scenario, git's cache warm) and ` + "`build.Build`" + ` into an OCI layout (as ` + "`vmbuild build --output oci:DIR`" + `, the layout reused within a sequence, as the CLI's default ` + "`out/NAME`" + ` is; no push, no signing). **Wall time** is from the call to its return.
- **Fetched**: every download goes through a counting reverse proxy on loopback: one in front of deb.debian.org (every recipe's ` + "`base.debian.mirror`" + `; the .debs and, for locks, the index), one in front of the npm registry or Yarn's (the layers' ` + "`deps.registry`" + `, or the package manager's registry setting in the baselines), and the gem source itself. *Packages fetched* are the package downloads the proxy served during the command (tarballs, .gem files; the pinned package manager counts as one), *bytes* every byte it served (package documents and indexes included). For a lock, *packages* are what vmbuild's fetcher downloaded to hash (Yarn Berry and Gemfile.lock have no sha256 of the download: trust on first use), and *.debs* the Debian index read. BuildKit's fetch vertices are not used to count: on a warm daemon they "run" in microseconds to compute their cache key (the checksum) and download nothing.
- **Steps re-run**: from BuildKit's status stream (` + "`build.Result`" + `): the native layer steps that ran (not cache hits) and BuildKit's time for them; the base's .deb unpack steps that ran; the per-gem ` + "`gem install`" + ` steps that ran and the cache hits. The JSON has each build's time split by part (` + "`breakdownNs`" + `).
- **Checks** (the run fails, exit 1, if one does not hold; no time is asserted): a cold build fetches the base and runs every layer; a no-op rebuild of the same lock makes no request to any proxy, runs no step and gives the same digest; a hermetic bump fetches only the packages the bump moved (Yarn: at most the resolutions it added; npm: dotenv 16.4.7; gems: the one bumped gem) and, per gem, re-runs exactly the bumped gem's install and its dependents'; the Debian lock pins the same packages cold and warm, and a warm base build fetches and unpacks nothing.

`)
	r.machine(&b)
	fmt.Fprintf(&b, "\n## Raw results\n\nEvery run's figures are in `%s` (times in nanoseconds).\n", jsonName)
	return b.String()
}

// yarnWhy explains the Yarn target's figure.
func (r *Results) yarnWhy(b *strings.Builder) {
	y := r.scenario("yarn")
	if y == nil {
		return
	}
	hb, bb := y.agg("hermetic", "bump"), y.agg("baseline", "bump")
	if hb.N == 0 || bb.N == 0 {
		return
	}
	fmt.Fprintf(b, "Why the bump costs what it does: the hermetic bump fetched %d packages (%s) and the baseline %d, but both re-run the whole node-modules layer: vmbuild pins and fetches per package, and BuildKit caches per package, but `yarn workspaces focus` still links every one of the %v packages into node_modules (offline from the loopback mirror, or from the registry). Where the hermetic bump's %s s went (medians): %s. The baseline's: %s. The package fetches are the part the pins make incremental; the rest is per layer.\n\n",
		hb.Packages, size(hb.Bytes), bb.Packages, y.Facts["pinnedPackages"], harness.Secs(hb.Wall), y.breakdown("hermetic", "bump"), y.breakdown("baseline", "bump"))
}

func (r *Results) yarnNotes(b *strings.Builder, s *Scenario) {
	if v, ok := s.Facts["pinnedPackages"]; ok {
		fmt.Fprintf(b, "- The lock pins %v packages for the streaming workspace's production dependencies, plus Yarn (`%v`), and %v Debian packages (sid's index of %v).\n", v, s.Facts["toolPin"], s.Facts["debianPackages"], s.Facts["debianInRelease"])
	}
	if a, ok := s.Facts["bumpAdded"]; ok {
		fmt.Fprintf(b, "- The bump (`yarn up %s@%s`, %.1f s on the host) added the resolutions %s and removed %s: `yarn up` moved pg's own dependencies within their ranges too.\n",
			bumpPackage, bumpTo, s.Facts["bumpYarnUpSeconds"], codeList(anyStrings(a)), codeList(anyStrings(s.Facts["bumpRemoved"])))
	}
	rl := s.agg("hermetic", "relock")
	if rl.N > 0 {
		fmt.Fprintf(b, "- The re-lock downloaded %d packages (%s) to hash them; the other pins were kept from the previous lock (same URL and lockfile checksum). It changed: %s.\n", rl.Packages, size(rl.Bytes), strings.Join(rl.First.Changes, "; "))
	}
	hb := s.agg("hermetic", "bump")
	if hb.N > 0 {
		fmt.Fprintf(b, "- The hermetic rebuild after the bump fetched %d packages (%s) from the registry proxy: %s; every other package and every .deb was a cache hit (no request).\n", hb.Packages, size(hb.Bytes), codeList(hb.First.Proxy.Paths))
	}
	r.buildNotes(b, s, []string{"hermetic", "baseline"}, []string{"cold", "bump"})
}

func (r *Results) buildNotes(b *strings.Builder, s *Scenario, contenders, phases []string) {
	for _, c := range contenders {
		for _, ph := range phases {
			if bd := s.breakdown(c, ph); bd != "" {
				fmt.Fprintf(b, "- %s, %s: %s (BuildKit's time per part, medians).\n", c, title(ph), bd)
			}
		}
	}
}

func (r *Results) gemNotes(b *strings.Builder, s *Scenario) {
	fmt.Fprintf(b, "- By vmbuild's design a gem's step runs on its dependencies' installs, so a bump re-runs the bumped gem's step and those of every gem that requires it, transitively: for %s that is %s; for %s, %s. Strictly, only the C extensions need their dependencies at install time (a pure-Ruby gem's `gem install --ignore-dependencies` does not read them): the minimum would be %s, and %s.\n",
		bumpPlain, codeList(dependents(bumpPlain)), bumpCExt, codeList(dependents(bumpCExt)),
		codeList([]string{bumpPlain}), codeList(append([]string{bumpCExt}, cextsOver(dependents(bumpCExt))...)))
	fmt.Fprintf(b, "- hermetic-all and baseline re-run the one `bundle install` step on any bump: every gem is installed again and all four C extensions compile again.\n")
	r.buildNotes(b, s, []string{"hermetic-pergem", "hermetic-all", "baseline"}, []string{"cold", "bump-plain", "bump-cext"})
}

func (r *Results) debianNotes(b *strings.Builder, s *Scenario) {
	fmt.Fprintf(b, "- The base is %v packages, %v of .debs; sid's index: %v.\n", s.Facts["debianPackages"], sizeAny(s.Facts["debBytes"]), s.Facts["debianInRelease"])
	r.buildNotes(b, s, []string{"hermetic"}, []string{"cold"})
}

// streaming is scenario 5 (#14): the streaming image's cold and bump
// figures, for the lead to quote in bench/RESULTS.md.
func (r *Results) streaming(b *strings.Builder, y *Scenario, heading string) {
	fmt.Fprintf(b, "%s Mastodon streaming image (issue #14)\n\n", heading)
	b.WriteString("The full `mastodon-streaming` image (recipes/mastodon/streaming-hermetic.yaml on the real Mastodon source; Debian sid base of pinned .debs, the streaming workspace's packages, the source), from the Yarn scenario's runs.\n\n")
	b.WriteString("| build | hermetic (the committed recipe) | baseline (Yarn with the network) |\n|---|---:|---:|\n")
	row := func(name string, f func(c string) string) {
		fmt.Fprintf(b, "| %s | %s | %s |\n", name, f("hermetic"), f("baseline"))
	}
	row("lock, first (s)", func(c string) string { return wallCell(y.agg(c, "lock")) })
	row("cold build, fresh buildkitd (s)", func(c string) string { return wallCell(y.agg(c, "cold")) })
	row("no-op rebuild (s)", func(c string) string { return wallCell(y.agg(c, "noop")) })
	row("one-package bump: re-lock (s)", func(c string) string { return wallCell(y.agg(c, "relock")) })
	row("one-package bump: rebuild (s)", func(c string) string { return wallCell(y.agg(c, "bump")) })
	row("one-package bump: re-lock + rebuild (s, sum of medians)", func(c string) string {
		a, bb := y.agg(c, "relock"), y.agg(c, "bump")
		if a.N == 0 || bb.N == 0 {
			return "—"
		}
		return harness.Secs(a.Wall + bb.Wall)
	})
	row("downloaded by the cold build", func(c string) string {
		a := y.agg(c, "cold")
		if a.N == 0 {
			return "—"
		}
		return fmt.Sprintf("%d packages (%s) + %d .debs (%s)", a.Packages, size(a.Bytes), a.Debs, size(a.DebBytes))
	})
	row("downloaded by the bump's rebuild", func(c string) string {
		a := y.agg(c, "bump")
		if a.N == 0 {
			return "—"
		}
		return fmt.Sprintf("%d packages (%s)", a.Packages, size(a.Bytes))
	})
	b.WriteString("\n")
}

func (r *Results) machine(b *strings.Builder) {
	m := r.Machine
	b.WriteString("## Machine\n\n")
	fmt.Fprintf(b, "- CPU: %s, %d cores; memory %.0f GB\n", m.CPU, m.Cores, m.MemoryGB)
	fmt.Fprintf(b, "- Kernel %s; %s; %s\n", m.Kernel, m.OS, m.Go)
	fmt.Fprintf(b, "- Contention: before the first build, with the benchmark idle, other work kept the CPUs %.0f%% busy; load average (1, 5, 15 min) %s at start, %s at end; during the run the CPUs were busy %.0f%% of the time (all processes, the benchmark's included) and some task was waiting for a CPU %.0f%% of the time (/proc/pressure/cpu). The machine is shared with other work: that adds noise to every time, which the medians only damp. Compare figures within one run.\n",
		m.BackgroundBusyCPU*100, m.LoadBefore, m.LoadAfter, m.BusyCPU*100, m.CPUPressure*100)
	fmt.Fprintf(b, "- vmbuild checkout %s\n", m.Checkout)
	var keys []string
	for k := range m.Versions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(b, "- %s: %s\n", k, m.Versions[k])
	}
}

func anyStrings(v any) []string {
	switch x := v.(type) {
	case []string:
		return x
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, fmt.Sprint(e))
		}
		return out
	}
	return nil
}

func sizeAny(v any) string {
	switch x := v.(type) {
	case int64:
		return size(x)
	case float64:
		return size(int64(x))
	case json.Number:
		n, _ := x.Int64()
		return size(n)
	}
	return fmt.Sprint(v)
}

// Section is the hermetic dependencies section of bench/RESULTS.md: the
// targets and the headline figures, pointing to the full report
// (detailsName, its JSON jsonName) for the rest.
func (r *Results) Section(detailsName, jsonName string) string {
	var b strings.Builder
	b.WriteString("## Hermetic dependencies (`bench/run-hermetic`)\n\n")
	fmt.Fprintf(&b, "Written by `%s`; figures measured on %s, %s to %s UTC. Medians over the repetitions of every sequence (%s); each sequence on a fresh buildkitd (a cold build is really cold). Full report, with every run, the setup and how each figure is measured: [%s](%s); raw figures: `%s`. Re-render both from the JSON with `bench/run-hermetic --render bench/%s`.\n\n",
		r.Command, r.Started.Format("2006-01-02"), r.Started.Format("15:04"), r.Finished.Format("15:04"), r.repsText(), detailsName, detailsName, jsonName, jsonName)
	m := r.Machine
	fmt.Fprintf(&b, "Machine: %s, %d cores, shared with other work; during the last run (load average %s at start, %s at end) the CPUs were busy %.0f%% of the time and a task was waiting for a CPU %.0f%% of the time. Times carry that noise; packages and bytes are exact.\n\n",
		m.CPU, m.Cores, m.LoadBefore, m.LoadAfter, m.BusyCPU*100, m.CPUPressure*100)
	if r.Quick {
		b.WriteString("**Quick run** (a harness check): not for quoting.\n\n")
	}
	if len(r.Errors) > 0 {
		b.WriteString("**The run had harness errors:**\n\n")
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "- %s\n", harness.FirstLine(e))
		}
		b.WriteString("\n")
	}
	b.WriteString("Commands that produced the figures:\n\n")
	for _, s := range r.Scenarios {
		if s != nil {
			fmt.Fprintf(&b, "- %s: %s\n", scenarioName[s.ID], s.measuredBy(r))
		}
	}
	b.WriteString("\n")
	b.WriteString("Contenders: **hermetic** = the layer with vmbuild `deps:` (every package pinned by sha256 at lock time, fetched by BuildKit, one cache entry per package, installed offline); **baseline** = today's layer: the same recipe with `network: host` and no `deps:`, the package manager installing from the registry (through the same counting proxy).\n\n")
	b.WriteString("### Targets\n\n| target | measured | status |\n|---|---|---|\n")
	for _, t := range r.Targets() {
		fmt.Fprintf(&b, "| %s | %s | **%s** |\n", t.Name, t.Figure, t.Status)
	}
	missed := 0
	for _, t := range r.Targets() {
		if t.Status == "missed" && strings.Contains(t.Name, "single-package bump") {
			missed++
		}
	}
	if missed > 0 {
		b.WriteString("\nWhere a bump misses the target on wall time, what the hermetic layer saves is the download (the bytes column), not the install: a changed lockfile is a changed input, so the layer's run installs every package again (offline, from the loopback mirror of the pinned files) as the baseline's does from the registry, and the rest of the build (BuildKit fetching the new commit, the layer's outputs, the export) costs both the same. Per gem (Bundler, `perGem`), only the bumped gem's step and its dependents' run again, but each in a BuildKit step of its own, one after another along the dependency chain: see the install time. The full report breaks each build's time down by part.\n")
	}
	b.WriteString("\n### Cold install, no-op rebuild and single-package bump: hermetic against the baseline\n\n")
	b.WriteString("Packages and bytes fetched are what the counting proxy in front of the registry (or the loopback gem source) served during the build; .debs are not included (the cold builds also fetch the Debian base: see the full report).\n\n")
	b.WriteString("| scenario | build | contender | wall (s): median <sub>range</sub> | packages fetched | bytes fetched |\n|---|---|---|---:|---:|---:|\n")
	for _, id := range []string{"yarn", "npm", "bundler"} {
		s := r.scenario(id)
		if s == nil {
			continue
		}
		for _, ph := range s.phases() {
			if isLock(ph) {
				continue
			}
			for _, c := range s.contenders() {
				a := s.agg(c, ph)
				if a.N == 0 {
					if s.hasRun(c, ph) {
						fmt.Fprintf(&b, "| %s | %s | %s | failed | | |\n", scenarioName[id], title(ph), c)
					}
					continue
				}
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %s |\n", scenarioName[id], title(ph), c, wallCell(a), a.Packages, size(a.Bytes))
			}
		}
	}
	b.WriteString("\n")
	if d := r.scenario("debian"); d != nil {
		b.WriteString("### Debian base: sid `nodejs` (issue #13)\n\n")
		fmt.Fprintf(&b, "The streaming recipe's base alone (%v packages, %v of .debs; sid's index %v), through a counting proxy to deb.debian.org.\n\n", d.Facts["debianPackages"], sizeAny(d.Facts["debBytes"]), inRelease(d.Facts["debianInRelease"]))
		b.WriteString("| run | wall (s): median <sub>range</sub> | fetched from the archive |\n|---|---:|---|\n")
		for _, ph := range []string{"cli-lock-cold", "cli-lock-warm", "lock-cold", "lock-warm", "cold", "warm"} {
			a := d.agg("hermetic", ph)
			if a.N == 0 {
				continue
			}
			var fetched string
			switch {
			case isLock(ph):
				fetched = "index: " + size(a.DebBytes)
			case a.Debs == 0:
				fetched = fmt.Sprintf("0 .debs, %d unpacked", a.First.Unpacked)
			default:
				fetched = fmt.Sprintf("%d .debs (%s), %d unpacked", a.Debs, size(a.DebBytes), a.First.Unpacked)
			}
			name := map[string]string{
				"cli-lock-cold": "`vmbuild lock` (the command), empty cache directory", "cli-lock-warm": "`vmbuild lock` (the command), warm cache directory",
				"lock-cold": "lock in-process (lock.Resolver), empty index cache", "lock-warm": "lock in-process, warm index cache",
				"cold": "build in-process (build.Build), fresh buildkitd", "warm": "build again, same daemon",
			}[ph]
			fmt.Fprintf(&b, "| %s | %s | %s |\n", name, wallCell(a), fetched)
		}
		b.WriteString("\n")
	}
	if y := r.scenario("yarn"); y != nil {
		r.streaming(&b, y, "###")
	}
	return b.String()
}

var scenarioName = map[string]string{"yarn": "Yarn (Mastodon streaming)", "npm": "npm (87 packages)", "bundler": "Bundler (36 gems)", "debian": "Debian base"}

// reps is how many repetitions the scenario ran (older results: the run's).
func (s *Scenario) reps(r *Results) int {
	if s.Reps > 0 {
		return s.Reps
	}
	return r.Reps
}

// repsText says how many repetitions each scenario ran.
func (r *Results) repsText() string {
	var parts []string
	for _, s := range r.Scenarios {
		if s != nil {
			parts = append(parts, fmt.Sprintf("%s %d", s.ID, s.reps(r)))
		}
	}
	if len(parts) == 0 {
		return fmt.Sprint(r.Reps)
	}
	return strings.Join(parts, ", ")
}

// measuredBy says which command measured the scenario, when, and how many
// repetitions.
func (s *Scenario) measuredBy(r *Results) string {
	cmd, start, end := s.Command, s.Started, s.Finished
	if cmd == "" {
		cmd, start, end = r.Command, r.Started, r.Finished
	}
	out := fmt.Sprintf("`%s` on %s, %s to %s UTC, %d repetition(s)", cmd, start.Format("2006-01-02"), start.Format("15:04"), end.Format("15:04"), s.reps(r))
	if s.Load != "" {
		out += "; load average " + s.Load
	}
	return out
}

// inRelease is the recorded InRelease fact without the proxy's URL (a
// loopback port of that run).
func inRelease(v any) string {
	s := fmt.Sprint(v)
	if i := strings.Index(s, ", http://127.0.0.1:"); i >= 0 {
		return s[:i] + ")"
	}
	return s
}
