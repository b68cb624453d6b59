package harness

import (
	"fmt"
	"html"
	"math"
	"sort"
	"strings"
	"time"
)

// Cell aggregates one contender's measurements of one run over the
// repetitions.
type Cell struct {
	N     int
	Walls []time.Duration
	// Wall is the median wall time.
	Wall time.Duration
	// Ran is the steps that ran (the most frequent set, with RanVaries
	// when the repetitions disagree).
	Ran       []string
	RanVaries bool
	// ToolTime is the median time in the exec steps that ran.
	ToolTime time.Duration
	// Pushed (blobs and manifests) and NewLayerBytes are medians.
	Pushed          int64
	PushedBlobs     int64
	PushedManifests int64
	NewLayerBytes   int64
	Digests         []string
	Signed          bool
}

// OK reports whether the cell has a measurement.
func (c Cell) OK() bool { return c.N > 0 }

// Cell aggregates the successful measurements of contender × run.
func (r *Results) Cell(contender, run string) Cell {
	var c Cell
	var pushed, pblobs, pmans, newb []int64
	var tools []time.Duration
	ranSets := map[string]int{}
	ranOf := map[string][]string{}
	for _, m := range r.Measurements {
		if m.Contender != contender || m.Run != run || m.Err != "" {
			continue
		}
		c.N++
		c.Walls = append(c.Walls, m.Wall)
		tools = append(tools, m.ToolTime)
		pushed = append(pushed, m.Pushed.Total())
		pblobs = append(pblobs, m.Pushed.Blobs)
		pmans = append(pmans, m.Pushed.Manifests)
		newb = append(newb, m.NewLayerBytes)
		c.Digests = append(c.Digests, m.Digest)
		k := strings.Join(m.Ran, ",")
		ranSets[k]++
		ranOf[k] = m.Ran
		c.Signed = c.Signed || (m.Signed && m.Attested)
	}
	if c.N == 0 {
		return c
	}
	c.Wall = Median(c.Walls)
	c.ToolTime = Median(tools)
	c.Pushed = MedianInt(pushed)
	c.PushedBlobs = MedianInt(pblobs)
	c.PushedManifests = MedianInt(pmans)
	c.NewLayerBytes = MedianInt(newb)
	best, bestN := "", -1
	keys := make([]string, 0, len(ranSets))
	for k := range ranSets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if ranSets[k] > bestN {
			best, bestN = k, ranSets[k]
		}
	}
	c.Ran = ranOf[best]
	c.RanVaries = len(ranSets) > 1
	return c
}

func (r *Results) hasContender(id string) bool {
	for _, c := range r.Contenders {
		if c.ID == id {
			return true
		}
	}
	return false
}

// commitRuns are the runs of the commit sequence (after cold and no-op).
func (r *Results) commitRuns() []RunInfo {
	var out []RunInfo
	for _, run := range r.Runs {
		if run.ID != "cold" && run.ID != "noop" {
			out = append(out, run)
		}
	}
	return out
}

// Target is one of issue 9's targets, evaluated.
type Target struct {
	Name   string
	Figure string
	// Status is "met", "missed" or "not measured".
	Status string
	Why    string
}

// Ratio is a/b (NaN if b is not positive).
func Ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

func fmtRatio(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", x)
}

func kib(n int64) string {
	if n < 10*1024 {
		return fmt.Sprintf("%.1f", float64(n)/1024)
	}
	return fmt.Sprintf("%.0f", float64(n)/1024)
}

func status(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

// Targets evaluates the targets against the medians.
func (r *Results) Targets() []Target {
	var ts []Target
	all := func(ids ...string) bool {
		for _, id := range ids {
			if !r.hasContender(id) {
				return false
			}
		}
		return true
	}

	// 1. native ≤ 1.05× hand-tuned on every commit.
	if all("native", "tuned") {
		worst, worstRun, ok, parts := 0.0, "", true, []string{}
		for _, run := range r.commitRuns() {
			n, t := r.Cell("native", run.ID), r.Cell("tuned", run.ID)
			if !n.OK() || !t.OK() {
				ok = false
				continue
			}
			x := Ratio(n.Wall, t.Wall)
			parts = append(parts, fmt.Sprintf("%s %s", run.ID, fmtRatio(x)))
			if x > worst {
				worst, worstRun = x, run.ID
			}
		}
		st := status(ok && worst <= 1.05)
		if !ok {
			st = "not measured"
		}
		why := ""
		if sa := r.signAttest(); sa > 0 && ok {
			// What the same builds would take without signing, which
			// the hand-tuned builds do not do: an estimate, from a
			// median measured at another time.
			w2 := 0.0
			for _, run := range r.commitRuns() {
				n, t := r.Cell("native", run.ID), r.Cell("tuned", run.ID)
				w2 = math.Max(w2, Ratio(n.Wall-sa, t.Wall))
			}
			why = fmt.Sprintf("native builds also sign and attest, the hand-tuned ones do not: %s s (median, measured separately); subtracting it, the worst would be ≈%s", Secs(sa), fmtRatio(w2))
		}
		ts = append(ts, Target{Name: "vmbuild native ≤ 1.05× hand-tuned Dockerfile, every commit",
			Figure: fmt.Sprintf("worst %s (%s); %s", fmtRatio(worst), worstRun, strings.Join(parts, ", ")), Status: st, Why: why})
	}

	// 2. no-op ≤ 3% of cold, same digest.
	if all("native") {
		cold, noop := r.Cell("native", "cold"), r.Cell("native", "noop")
		if cold.OK() && noop.OK() {
			x := Ratio(noop.Wall, cold.Wall)
			same := sameDigests(r, "native", "cold", "noop")
			why := ""
			if s := r.Signing; s != nil && s.VMBuildSigns && s.VMBuildNoSign.OK() {
				why = fmt.Sprintf("a no-op signs and attests again (%s s, measured separately); the same no-op pushed with --no-sign took %s s (median, measured separately), %.1f%% of this cold build",
					Secs(s.SignAttest), Secs(s.VMBuildNoSign.Median), 100*Ratio(s.VMBuildNoSign.Median, cold.Wall))
			}
			ts = append(ts, Target{Name: "no-op rebuild ≤ 3% of a cold build, same digest (vmbuild native)",
				Figure: fmt.Sprintf("%.1f%% (%s s of %s s); digest %s", 100*x, Secs(noop.Wall), Secs(cold.Wall), map[bool]string{true: "identical", false: "DIFFERENT"}[same]),
				Status: status(x <= 0.03 && same), Why: why})
		} else {
			ts = append(ts, Target{Name: "no-op rebuild ≤ 3% of a cold build, same digest", Status: "not measured"})
		}
	}

	// 3. source-only commit: native ≤ 0.3× peer.
	if all("native") && (r.hasContender("peer") || r.hasContender("peer-epoch")) {
		n := r.Cell("native", "js")
		var parts []string
		ok, measured := true, n.OK()
		for _, p := range []string{"peer", "peer-epoch"} {
			if !r.hasContender(p) {
				continue
			}
			c := r.Cell(p, "js")
			if !c.OK() || !n.OK() {
				measured = false
				continue
			}
			x := Ratio(n.Wall, c.Wall)
			parts = append(parts, fmt.Sprintf("%s vs %s", fmtRatio(x), contenderTitle(p)))
			ok = ok && x <= 0.3
		}
		st := status(ok)
		if !measured {
			st = "not measured"
		}
		ts = append(ts, Target{Name: "source-only commit: vmbuild native ≤ 0.3× the peer", Figure: strings.Join(parts, "; "), Status: st})
	}

	// 4. bytes pushed for a source-only commit ≤ changed layers + 5%.
	if all("native") {
		n := r.Cell("native", "js")
		if n.OK() && n.NewLayerBytes > 0 {
			x := float64(n.Pushed) / float64(n.NewLayerBytes)
			ts = append(ts, Target{Name: "bytes pushed, source-only commit ≤ changed layers + 5% (vmbuild native)",
				Figure: fmt.Sprintf("%s KiB pushed for %s KiB of changed layers (%.3f×)", kib(n.Pushed), kib(n.NewLayerBytes), x),
				Status: status(x <= 1.05),
				Why: fmt.Sprintf("the %s KiB over the changed layers are %s KiB of manifests (image, signatures, attestations, tag) and %s KiB of other blobs (config, signature and attestation payloads)",
					kib(n.Pushed-n.NewLayerBytes), kib(n.PushedManifests), kib(n.PushedBlobs-n.NewLayerBytes))})
		} else {
			ts = append(ts, Target{Name: "bytes pushed, source-only commit ≤ changed layers + 5%", Status: "not measured"})
		}
	}

	// 5. dockerfile mode vs the peer on the same Dockerfile, incl.
	// provenance, signing and push ≤ 1.10×.
	if all("dockerfile") {
		for _, p := range []string{"peer-epoch", "peer"} {
			if !r.hasContender(p) {
				continue
			}
			worst, worstRun, ok, parts := 0.0, "", true, []string{}
			for _, run := range r.Runs {
				d, c := r.Cell("dockerfile", run.ID), r.Cell(p, run.ID)
				if !d.OK() || !c.OK() {
					ok = false
					continue
				}
				x := Ratio(d.Wall, c.Wall)
				parts = append(parts, fmt.Sprintf("%s %s", run.ID, fmtRatio(x)))
				if x > worst {
					worst, worstRun = x, run.ID
				}
			}
			st := status(ok && worst <= 1.10)
			if !ok {
				st = "not measured"
			}
			why := ""
			if !r.Capabilities.Signs {
				why = "vmbuild does not sign yet: these figures are build + push only, on both sides"
			}
			ts = append(ts, Target{Name: "vmbuild dockerfile mode ≤ 1.10× " + contenderTitle(p) + " (incl. provenance, signing, push)",
				Figure: fmt.Sprintf("worst %s (%s); %s", fmtRatio(worst), worstRun, strings.Join(parts, ", ")), Status: st, Why: why})
		}
		// Like for like: the peer followed by stock cosign signing and
		// attesting its image (medians measured once).
		if s := r.Signing; s != nil && r.Capabilities.Signs && s.CosignSign.OK() && s.CosignAttest.OK() && r.hasContender("peer-epoch") {
			extra := s.CosignSign.Median + s.CosignAttest.Median
			worst, worstRun, ok, parts := 0.0, "", true, []string{}
			for _, run := range r.Runs {
				d, c := r.Cell("dockerfile", run.ID), r.Cell("peer-epoch", run.ID)
				if !d.OK() || !c.OK() {
					ok = false
					continue
				}
				x := Ratio(d.Wall, c.Wall+extra)
				parts = append(parts, fmt.Sprintf("%s %s", run.ID, fmtRatio(x)))
				if x > worst {
					worst, worstRun = x, run.ID
				}
			}
			st := status(ok && worst <= 1.10)
			if !ok {
				st = "not measured"
			}
			ts = append(ts, Target{Name: "vmbuild dockerfile mode ≤ 1.10× (" + contenderTitle("peer-epoch") + " + stock cosign sign + attest)",
				Figure: fmt.Sprintf("worst %s (%s); %s", fmtRatio(worst), worstRun, strings.Join(parts, ", ")), Status: st,
				Why: fmt.Sprintf("cosign sign + attest add %s s to each peer build", Secs(extra))})
		}
	}

	// 6. vmbuild verify ≤ cosign verify + verify-attestation.
	if s := r.Signing; s != nil {
		cos := s.CosignVerify.Median + s.CosignVerifyAttestation.Median
		switch {
		case s.VMBuildVerify.OK() && s.CosignVerify.OK() && s.CosignVerifyAttestation.OK() && s.SignedBy == "vmbuild":
			x := Ratio(s.VMBuildVerify.Median, cos)
			fig := fmt.Sprintf("--no-policy %s s vs cosign %s s (%s)", Secs(s.VMBuildVerify.Median), Secs(cos), fmtRatio(x))
			st := status(x <= 1.0)
			if s.VMBuildVerifyPolicy.OK() {
				y := Ratio(s.VMBuildVerifyPolicy.Median, cos)
				fig += fmt.Sprintf("; --policy %s s (%s)", Secs(s.VMBuildVerifyPolicy.Median), fmtRatio(y))
				if (x <= 1.0) != (y <= 1.0) {
					st = fmt.Sprintf("%s without policy, %s with", status(x <= 1.0), status(y <= 1.0))
				}
			}
			why := ""
			if s.CosignSignedBy != s.SignedBy {
				why = "cosign timed on the cosign-signed copy of the same image, because it rejects vmbuild's signatures"
			} else if s.CosignExtraFlags != "" {
				why = "cosign needed " + s.CosignExtraFlags + " to accept vmbuild's signatures offline"
			}
			ts = append(ts, Target{Name: "vmbuild verify ≤ 1.0× cosign verify + cosign verify-attestation",
				Figure: fig, Status: st, Why: why})
		default:
			why := "vmbuild verify is not implemented in this vmbuild"
			if r.Capabilities.Verify && !r.Capabilities.Signs {
				why = "vmbuild does not sign yet, so there is no vmbuild-signed image to verify"
			}
			fig := "–"
			if s.CosignVerify.OK() && s.CosignVerifyAttestation.OK() {
				fig = fmt.Sprintf("cosign's two verifications: %s s (baseline, on a %s-signed image)", Secs(cos), s.CosignSignedBy)
			}
			ts = append(ts, Target{Name: "vmbuild verify ≤ 1.0× cosign verify + cosign verify-attestation", Figure: fig, Status: "not measured", Why: why})
		}
	}
	return ts
}

// signAttest is vmbuild's measured sign+attest time, 0 when unknown.
func (r *Results) signAttest() time.Duration {
	if r.Signing == nil || !r.Signing.VMBuildSigns {
		return 0
	}
	return r.Signing.SignAttest
}

func sameDigests(r *Results, contender, a, b string) bool {
	byRep := map[int]map[string]string{}
	for _, m := range r.Measurements {
		if m.Contender != contender || m.Err != "" {
			continue
		}
		if byRep[m.Rep] == nil {
			byRep[m.Rep] = map[string]string{}
		}
		byRep[m.Rep][m.Run] = m.Digest
	}
	n := 0
	for _, runs := range byRep {
		if runs[a] == "" || runs[b] == "" {
			continue
		}
		n++
		if runs[a] != runs[b] {
			return false
		}
	}
	return n > 0
}

// reproducibleAcrossReps reports whether every run gave the same digest in
// every repetition.
func reproducibleAcrossReps(r *Results, contender string) (bool, int) {
	by := map[string]map[string]bool{}
	for _, m := range r.Measurements {
		if m.Contender != contender || m.Err != "" {
			continue
		}
		if by[m.Run] == nil {
			by[m.Run] = map[string]bool{}
		}
		by[m.Run][m.Digest] = true
	}
	runs := 0
	for _, ds := range by {
		runs++
		if len(ds) > 1 {
			return false, runs
		}
	}
	return runs > 0, runs
}

func contenderTitle(id string) string {
	if c, ok := ContenderByID(id); ok {
		return c.Title
	}
	return id
}

// Markdown renders the results. svgName is the plot's file name (beside
// the markdown file); command is how to reproduce.
func (r *Results) Markdown(svgName, command string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	title := "vmbuild benchmark results"
	if r.Size.Name != "full" {
		title += " (" + r.Size.Name + " run: tiny tool costs, figures not meaningful)"
	}
	w("# %s\n\n", title)
	w("Generated by `bench/run` on %s (%s to %s UTC). Medians of %d repetition(s) of every sequence. Raw figures: the JSON file beside this one.\n\n",
		r.Started.Format("2006-01-02"), r.Started.Format("15:04"), r.Finished.Format("15:04"), r.Reps)
	if command == "" {
		command = r.Command
	}
	if command == "" {
		command = "bench/run"
	}
	w("Reproduce: `%s` (from the repository root, as root; needs `make tools build`).\n\n", command)

	w("## Targets\n\n| target | where we stand | status |\n|---|---|---|\n")
	for _, t := range r.Targets() {
		fig := t.Figure
		if t.Why != "" {
			fig += " — " + t.Why
		}
		w("| %s | %s | **%s** |\n", t.Name, fig, t.Status)
	}
	w("\n")

	ids := []string{}
	for _, c := range r.Contenders {
		ids = append(ids, c.ID)
	}
	w("## Wall time (s): median, and the range over the repetitions\n\n")
	w("Contenders: ")
	for i, c := range r.Contenders {
		if i > 0 {
			w("; ")
		}
		w("**%s** = %s", c.ID, describeContender(c))
	}
	w(".\n\n")
	w("| run | commit |")
	for _, id := range ids {
		w(" %s |", id)
	}
	type rc struct{ a, b string }
	var ratios []rc
	for _, p := range []rc{{"native", "tuned"}, {"native", "peer-epoch"}, {"native", "peer"}, {"dockerfile", "peer-epoch"}, {"dockerfile", "peer"}} {
		if r.hasContender(p.a) && r.hasContender(p.b) {
			ratios = append(ratios, p)
			w(" %s / %s |", p.a, p.b)
		}
	}
	w("\n|---|---|")
	for range ids {
		w("---:|")
	}
	for range ratios {
		w("---:|")
	}
	w("\n")
	for _, run := range r.Runs {
		w("| %s | `%s` |", run.Title, Short(run.Commit))
		for _, id := range ids {
			c := r.Cell(id, run.ID)
			if !c.OK() {
				w(" – |")
				continue
			}
			w(" %s |", wallCell(c))
		}
		for _, p := range ratios {
			a, bb := r.Cell(p.a, run.ID), r.Cell(p.b, run.ID)
			if !a.OK() || !bb.OK() {
				w(" – |")
				continue
			}
			w(" %s |", fmtRatio(Ratio(a.Wall, bb.Wall)))
		}
		w("\n")
	}
	w("\n")
	if svgName != "" {
		w("![Rebuild time per commit](%s)\n\n", svgName)
	}

	w("## Steps re-run (exec steps that were not cache hits)\n\n| run |")
	for _, id := range ids {
		w(" %s |", id)
	}
	w("\n|---|")
	for range ids {
		w("---|")
	}
	w("\n")
	for _, run := range r.Runs {
		w("| %s |", run.Title)
		for _, id := range ids {
			c := r.Cell(id, run.ID)
			if !c.OK() {
				w(" – |")
				continue
			}
			s := fmt.Sprintf("%d", len(c.Ran))
			if len(c.Ran) > 0 {
				s += " (" + strings.Join(c.Ran, ", ") + ")"
			}
			if c.RanVaries {
				s += " (varied)"
			}
			w(" %s |", s)
		}
		w("\n")
	}
	w("\n")

	w("## Time outside the tools (s, median): wall time minus the time of the steps that ran\n\n")
	w("What each contender spends besides running bin/bundle, bin/yarn and bin/rails (as BuildKit timed those steps): starting the client, fetching the source, copying inputs, merging and snapshotting, exporting, compressing, pushing, and for vmbuild signing and attesting. Cold builds are left out: there bundle and yarn run in parallel (native, hand-tuned), so the difference means nothing.\n\n| run |")
	for _, id := range ids {
		w(" %s |", id)
	}
	w("\n|---|")
	for range ids {
		w("---:|")
	}
	w("\n")
	for _, run := range r.Runs {
		if run.ID == "cold" {
			continue
		}
		w("| %s |", run.Title)
		for _, id := range ids {
			c := r.Cell(id, run.ID)
			if !c.OK() {
				w(" – |")
				continue
			}
			w(" %s |", Secs(c.Wall-c.ToolTime))
		}
		w("\n")
	}
	w("\n")

	w("## Bytes pushed (KiB, median): pushed / changed layers\n\n")
	w("*Pushed* is every byte uploaded to the registry during the build (blobs, manifests, and for vmbuild any signature and attestation), counted by the proxy; *changed layers* is the compressed size of the image's layers that the previous image of the sequence did not have (for the cold build: that the base image did not have).\n\n| run |")
	for _, id := range ids {
		w(" %s |", id)
	}
	w("\n|---|")
	for range ids {
		w("---:|")
	}
	w("\n")
	for _, run := range r.Runs {
		w("| %s |", run.Title)
		for _, id := range ids {
			c := r.Cell(id, run.ID)
			if !c.OK() {
				w(" – |")
				continue
			}
			w(" %s / %s |", kib(c.Pushed), kib(c.NewLayerBytes))
		}
		w("\n")
	}
	w("\nPushed beyond the changed layers on the source-only commit (manifests, image config, and for vmbuild its signatures and attestations):")
	for _, id := range ids {
		if c := r.Cell(id, "js"); c.OK() {
			w(" %s %s KiB (%s KiB manifests);", id, kib(c.Pushed-c.NewLayerBytes), kib(c.PushedManifests))
		}
	}
	w("\n\n")

	w("## Digests\n\n| contender | no-op rebuild gives the cold build's digest | every run's digest identical across repetitions |\n|---|---|---|\n")
	for _, id := range ids {
		same := sameDigests(r, id, "cold", "noop")
		rep, _ := reproducibleAcrossReps(r, id)
		repS := map[bool]string{true: "yes", false: "no"}[rep]
		if r.Reps < 2 {
			repS = "(one repetition)"
		}
		w("| %s | %s | %s |\n", id, map[bool]string{true: "yes", false: "no"}[same], repS)
	}
	w("\n")

	if s := r.Signing; s != nil {
		w("## Signing and verification (measured once, apart from the sequences)\n\n")
		w("Image: vmbuild native, last commit, digest `%s`.\n\n| figure | median (s) | runs |\n|---|---:|---|\n", s.Digest)
		row := func(name string, t Timing) {
			if !t.OK() {
				e := t.Err
				if e == "" {
					e = "not run"
				}
				w("| %s | – | %s |\n", name, html.EscapeString(FirstLine(e)))
				return
			}
			var rs []string
			for _, d := range t.Runs {
				rs = append(rs, Secs(d))
			}
			w("| %s | %s | %s |\n", name, Secs(t.Median), strings.Join(rs, ", "))
		}
		row("vmbuild build, no-op, `--push --no-sign`", s.VMBuildNoSign)
		row("vmbuild build, no-op, `--push --key`", s.VMBuildKey)
		if s.VMBuildSigns {
			w("| vmbuild sign + attest (difference of the two) | %s | |\n", Secs(s.SignAttest))
		} else {
			w("| vmbuild sign + attest | – | not implemented in this vmbuild (no signature reported) |\n")
		}
		row("stock `cosign sign` (same image, another repository)", s.CosignSign)
		row("stock `cosign attest --type slsaprovenance1`", s.CosignAttest)
		flags := ""
		if s.CosignExtraFlags != "" {
			flags = " " + s.CosignExtraFlags
		}
		row(fmt.Sprintf("`cosign verify%s` (%s-signed image)", flags, s.CosignSignedBy), s.CosignVerify)
		row(fmt.Sprintf("`cosign verify-attestation%s` (%s-signed image)", flags, s.CosignSignedBy), s.CosignVerifyAttestation)
		if s.CosignVerify.OK() && s.CosignVerifyAttestation.OK() {
			w("| cosign's two verifications together | %s | |\n", Secs(s.CosignVerify.Median+s.CosignVerifyAttestation.Median))
		}
		row(fmt.Sprintf("`vmbuild verify --no-policy` (%s-signed image)", s.SignedBy), s.VMBuildVerify)
		row(fmt.Sprintf("`vmbuild verify --policy` (source, commit, patches, base pinned; %s-signed image)", s.SignedBy), s.VMBuildVerifyPolicy)
		w("\n")
		if s.CosignAcceptsVMBuild != nil {
			if *s.CosignAcceptsVMBuild {
				w("Stock cosign verified vmbuild's signature and attestation with the standard offline key-based commands.\n\n")
			} else {
				w("**Stock cosign rejected vmbuild's signature and attestation** with the standard offline key-based commands: `%s`", s.CosignRejection)
				if s.CosignExtraFlags != "" {
					w(" (it accepts them with `%s`, see the notes below)", s.CosignExtraFlags)
				}
				w(".\n\n")
			}
		}
		for _, n := range s.Notes {
			w("- %s\n", n)
		}
		w("\n")
	}

	w("## How each figure is measured\n\n")
	w(methodText)
	w("\n")

	w("## Machine\n\n")
	m := r.Machine
	w("- CPU: %s, %d cores; memory %.0f GB\n", m.CPU, m.Cores, m.MemoryGB)
	w("- Kernel %s; %s; %s\n", m.Kernel, m.OS, m.Go)
	w("- Contention: before the first build, with the benchmark idle, other work kept the CPUs %.0f%% busy; load average (1, 5, 15 min) %s at start, %s at end; during the run the CPUs were busy %.0f%% of the time (all processes, the benchmark's included) and some task was waiting for a CPU %.0f%% of the time (/proc/pressure/cpu). The machine is shared with other work: that adds noise to every time, which the medians only damp.\n",
		100*m.BackgroundBusyCPU, m.LoadBefore, m.LoadAfter, 100*m.BusyCPU, 100*m.CPUPressure)
	w("- vmbuild checkout %s\n", m.Checkout)
	keys := make([]string, 0, len(m.Versions))
	for k := range m.Versions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w("- %s: %s\n", k, m.Versions[k])
	}
	w("- Tool costs (%s): bin/bundle %d rounds per gem, bin/yarn %d per package, bin/rails %d per KiB of sources\n",
		r.Size.Name, r.Size.BundleRounds, r.Size.YarnRounds, r.Size.AssetRoundsPerKB)
	w("- Base image: `%s`\n", r.Base)
	w("\n")

	if len(r.Notes) > 0 {
		w("## Notes\n\n")
		for _, n := range r.Notes {
			w("- %s\n", n)
		}
		w("\n")
	}
	if len(r.Errors) > 0 {
		w("## Errors\n\n")
		for _, e := range r.Errors {
			w("- %s\n", strings.ReplaceAll(FirstLine(e), "|", "\\|"))
		}
		w("\n")
	}
	return b.String()
}

// wallCell is "median (min–max)", or the median alone for one repetition.
func wallCell(c Cell) string {
	if len(c.Walls) < 2 {
		return Secs(c.Wall)
	}
	lo, hi := c.Walls[0], c.Walls[0]
	for _, d := range c.Walls {
		lo, hi = min(lo, d), max(hi, d)
	}
	return fmt.Sprintf("%s <sub>%s–%s</sub>", Secs(c.Wall), Secs(lo), Secs(hi))
}

func describeContender(c Contender) string {
	switch c.ID {
	case "native":
		return "`vmbuild build` of the native recipe (precise inputs per layer), epoch at the exporter"
	case "dockerfile":
		return "`vmbuild build` of the dockerfile-mode recipe (upstream's Dockerfile), epoch at the exporter"
	case "peer-epoch":
		return "`buildctl build`, upstream's Dockerfile, `SOURCE_DATE_EPOCH` build arg + `rewrite-timestamp=true` (vmbuild's reproducibility settings, the usual way)"
	case "peer":
		return "`buildctl build`, upstream's Dockerfile, no epoch"
	case "tuned":
		return "`buildctl build`, hand-tuned Dockerfile, `rewrite-timestamp=true,source-date-epoch=` on the exporter"
	}
	return c.Title
}

const methodText = `- **One buildkitd** started by the harness (own state directory, ` + "`gc = false`" + `, the registry configured for http); every contender is given its socket (` + "`vmbuild build --addr`, `buildctl --addr`" + `). Before each contender's sequence the cache is emptied with ` + "`buildctl prune --all`" + `. The order of contenders rotates between repetitions.
- **Sequence**: a cold build of the import commit, a no-op rebuild of the same commit, then each commit in turn. Each repetition pushes to fresh repositories (` + "`bench/CONTENDER-rN`" + `), so no blob of an earlier repetition is already in the registry.
- **Wall time**: from starting the client process (` + "`vmbuild build …`" + ` or ` + "`buildctl build …`" + `) to its exit, push (and, for vmbuild, signing) included. ` + "`vmbuild lock --commit`" + `, which pins each commit before its build, is not included (it is a separate step; its times are in the JSON).
- **Steps re-run**: exec steps (Dockerfile RUNs, vmbuild native layers) that were reported and were not cache hits. For ` + "`buildctl`" + ` from its ` + "`--progress rawjson`" + ` status stream (a vertex named ` + "`[stage n/m] RUN …`" + ` that completed without ` + "`cached`" + `); for vmbuild native from the metadata file's ` + "`steps[]`" + ` of kind ` + "`layer`" + ` (` + "`ran`" + `); for vmbuild dockerfile mode from its ` + "`vertices[]`" + ` (RUN vertices not ` + "`cached`" + `).
- **Bytes pushed**: every client reaches the registry through a reverse proxy in the harness that counts the request bodies of PUT, PATCH and POST under ` + "`/v2/REPO/`" + ` (blob uploads and manifests) per repository. Blobs the registry already has are not uploaded (clients check with HEAD first) and so are not counted; reads are not counted. This is what went over the wire, unlike storage growth (the registry de-duplicates across repositories) or the registry's access log (which has no request sizes). vmbuild's own ` + "`bytesPushed`" + ` (from BuildKit's push status) is kept in the JSON for comparison.
- **Changed layers**: the harness reads the pushed manifest and sums the sizes of layers whose digests were not in the previous image of the sequence.
- **Digests**: ` + "`containerimage.digest`" + ` from each tool's metadata file.
- **Sign and attest**: vmbuild's cost is the difference between median no-op rebuilds pushed with ` + "`--key`" + ` and with ` + "`--no-sign`" + `. Stock cosign signs and attests a copy of the same image (` + "`cosign sign|attest --key cosign.key --tlog-upload=false`" + `). Verification: ` + "`vmbuild verify REF@DIGEST --key cosign.pub`" + ` against ` + "`cosign verify --key cosign.pub --insecure-ignore-tlog --allow-insecure-registry --allow-http-registry REF@DIGEST`" + ` plus ` + "`cosign verify-attestation … --type slsaprovenance1`" + ` on the same image.
- **Upstream**: generated by ` + "`bench/internal/gen`" + ` (same bytes and commit hashes everywhere), served by ` + "`git daemon`" + `; every contender fetches it from there (` + "`buildctl`" + ` with the git context ` + "`git://…/mastodon.git#COMMIT`" + `; the hand-tuned Dockerfile comes from a local directory). The stand-in tools' costs are deterministic CPU work in busybox awk, proportional to their inputs.
`

// SVG draws rebuild time per run as grouped bars for native, the peers and
// the hand-tuned Dockerfile.
func (r *Results) SVG() string {
	series := []struct{ id, label, color string }{
		{"native", "vmbuild native", "#1f77b4"},
		{"peer-epoch", "peer, upstream Dockerfile (epoch build-arg)", "#d62728"},
		{"peer", "peer, upstream Dockerfile (no epoch)", "#ff9896"},
		{"tuned", "hand-tuned Dockerfile", "#2ca02c"},
	}
	var ss []struct{ id, label, color string }
	for _, s := range series {
		if r.hasContender(s.id) {
			ss = append(ss, s)
		}
	}
	runs := r.Runs
	const W, H = 960.0, 460.0
	const left, right, top, bottom = 64.0, 20.0, 48.0, 110.0
	pw, ph := W-left-right, H-top-bottom
	maxV := 0.0
	for _, run := range runs {
		for _, s := range ss {
			if c := r.Cell(s.id, run.ID); c.OK() {
				maxV = math.Max(maxV, c.Wall.Seconds())
			}
		}
	}
	if maxV <= 0 {
		maxV = 1
	}
	step := niceStep(maxV / 5)
	maxY := math.Ceil(maxV/step) * step
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	w(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	w(`<text x="%.0f" y="22" font-size="15" font-weight="bold">Rebuild time per run (median of %d, seconds) — %s size</text>`+"\n", left, r.Reps, html.EscapeString(r.Size.Name))
	for y := 0.0; y <= maxY+1e-9; y += step {
		py := top + ph - y/maxY*ph
		w(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, py, left+pw, py)
		w(`<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, py+4, trimFloat(y))
	}
	w(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", left, top+ph, left+pw, top+ph)
	w(`<text x="16" y="%.1f" transform="rotate(-90 16 %.1f)" text-anchor="middle">seconds</text>`+"\n", top+ph/2, top+ph/2)
	gw := pw / float64(len(runs))
	bw := gw * 0.8 / float64(max(1, len(ss)))
	for i, run := range runs {
		gx := left + float64(i)*gw + gw*0.1
		for j, s := range ss {
			c := r.Cell(s.id, run.ID)
			if !c.OK() {
				continue
			}
			v := c.Wall.Seconds()
			h := v / maxY * ph
			x := gx + float64(j)*bw
			w(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s, %s: %.2f s</title></rect>`+"\n",
				x, top+ph-h, bw-1, h, s.color, html.EscapeString(s.label), html.EscapeString(run.Title), v)
			w(`<text x="%.1f" y="%.1f" font-size="9" text-anchor="middle">%.1f</text>`+"\n", x+bw/2, top+ph-h-3, v)
		}
		label := map[string]string{"cold": "cold", "noop": "no-op", "js": "one JS file", "i18n": "translation",
			"models": "models only", "gemfile.lock": "Gemfile.lock bump", "yarn.lock": "yarn.lock bump"}[run.ID]
		if label == "" {
			label = run.Title
		}
		w(`<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle">%s</text>`+"\n", gx+gw*0.4, top+ph+16, html.EscapeString(label))
	}
	ly := top + ph + 40
	for j, s := range ss {
		x := left + float64(j%2)*pw/2
		y := ly + float64(j/2)*20
		w(`<rect x="%.1f" y="%.1f" width="12" height="12" fill="%s"/>`+"\n", x, y-10, s.color)
		w(`<text x="%.1f" y="%.1f">%s</text>`+"\n", x+18, y, html.EscapeString(s.label))
	}
	w("</svg>\n")
	return b.String()
}

func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(x float64) string {
	s := fmt.Sprintf("%.2f", x)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}
