package track

import (
	"fmt"
	"html"
	"io"
	"strings"
	"time"

	"github.com/vmbuild/vmbuild/track/history"
)

// Report renders a history as a Markdown table (format "md") or an HTML
// page with the same table and a chart of build time and layer reuse per
// commit (format "html").
func Report(w io.Writer, name string, entries []history.Entry, format string) error {
	switch format {
	case "md", "":
		return reportMarkdown(w, name, entries)
	case "html":
		return reportHTML(w, name, entries)
	}
	return fmt.Errorf("report format %q: want md or html", format)
}

type row struct {
	commit, when, subject, outcome, duration, reuse, pushed, patches, digest, note string
}

func rows(entries []history.Entry) []row {
	var out []row
	for _, e := range entries {
		cached, total := e.Reused()
		reuse := "-"
		if total > 0 {
			reuse = fmt.Sprintf("%d/%d", cached, total)
		}
		var ps []string
		for _, p := range e.Patches {
			s := fmt.Sprintf("%s %s", p.Name, p.Status)
			if p.Status == "applied" {
				s += fmt.Sprintf(" (%df +%d -%d)", p.Files, p.Added, p.Removed)
			}
			ps = append(ps, s)
		}
		digest := e.Digest
		if len(digest) > 19 {
			digest = digest[:19]
		}
		note := ""
		if e.Outcome != history.Published && e.Outcome != history.Built {
			note = e.FailedStep
			if note == "" {
				note = firstLine(e.Error)
			}
			if len(note) > 80 {
				note = note[:77] + "..."
			}
		}
		out = append(out, row{
			commit: short(e.Commit), when: e.CommitTime.UTC().Format("2006-01-02 15:04"), subject: e.Subject,
			outcome: string(e.Outcome), duration: e.Duration().Round(100 * time.Millisecond).String(), reuse: reuse,
			pushed: formatBytes(e.BytesPushed), patches: strings.Join(ps, "; "), digest: digest, note: note,
		})
	}
	return out
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func reportMarkdown(w io.Writer, name string, entries []history.Entry) error {
	fmt.Fprintf(w, "# vmbuild track: %s\n\n", name)
	if len(entries) == 0 {
		_, err := fmt.Fprintln(w, "No builds recorded yet.")
		return err
	}
	pub, fail := 0, 0
	for _, e := range entries {
		if e.Outcome == history.Published || e.Outcome == history.Built {
			pub++
		} else {
			fail++
		}
	}
	fmt.Fprintf(w, "%d builds: %d good, %d failed (nothing published for those).\n\n", len(entries), pub, fail)
	fmt.Fprintln(w, "| commit | date | outcome | build time | steps cached | pushed | patches | image | note |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows(entries) {
		fmt.Fprintf(w, "| `%s` | %s | %s | %s | %s | %s | %s | `%s` | %s |\n",
			r.commit, r.when, r.outcome, r.duration, r.reuse, r.pushed, mdEscape(r.patches), r.digest, mdEscape(r.note))
	}
	return nil
}

func reportHTML(w io.Writer, name string, entries []history.Entry) error {
	esc := html.EscapeString
	fmt.Fprintf(w, `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vmbuild track: %s</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}.published,.built{color:#0a6b2d}.failed{color:#b00020}code{font-size:13px}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
</style></head><body>
<h1>vmbuild track: %s</h1>
`, esc(name), esc(name))
	if len(entries) == 0 {
		fmt.Fprintln(w, "<p>No builds recorded yet.</p></body></html>")
		return nil
	}
	fmt.Fprintln(w, chartSVG(entries))
	fmt.Fprintln(w, `<p class="legend"><span style="background:#4a78c2"></span>build time<span style="background:#e0923a"></span>steps served from cache (% of steps)<span style="background:#b00020"></span>failed (not published)</p>`)
	fmt.Fprintln(w, "<table><tr><th>commit</th><th>date</th><th>subject</th><th>outcome</th><th>build time</th><th>steps cached</th><th>pushed</th><th>patches</th><th>image</th><th>note</th></tr>")
	for _, r := range rows(entries) {
		cls := "failed"
		if r.outcome == string(history.Published) || r.outcome == string(history.Built) {
			cls = r.outcome
		}
		fmt.Fprintf(w, "<tr><td><code>%s</code></td><td>%s</td><td>%s</td><td class=%q>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td><code>%s</code></td><td>%s</td></tr>\n",
			esc(r.commit), esc(r.when), esc(r.subject), cls, esc(r.outcome), esc(r.duration), esc(r.reuse), esc(r.pushed), esc(r.patches), esc(r.digest), esc(r.note))
	}
	_, err := fmt.Fprintln(w, "</table></body></html>")
	return err
}

// chartSVG draws, per commit, a bar for the build time and a dot for the
// share of steps served from cache.
func chartSVG(entries []history.Entry) string {
	const W, H, left, bottom, top = 760.0, 260.0, 50.0, 40.0, 20.0
	n := len(entries)
	maxD := 1.0
	for _, e := range entries {
		if d := e.Duration().Seconds(); d > maxD {
			maxD = d
		}
	}
	plotW, plotH := W-left-20, H-bottom-top
	step := plotW / float64(n)
	bw := step * 0.6
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" role="img" aria-label="build time and cache reuse per commit">`, W, H, W, H)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#888"/>`, left, top+plotH, left+plotW, top+plotH)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#888"/>`, left, top, left, top+plotH)
	for i := 0; i <= 4; i++ {
		y := top + plotH - plotH*float64(i)/4
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="10" text-anchor="end">%.1fs</text>`, left-4, y+3, maxD*float64(i)/4)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="10" fill="#e0923a">%d%%</text>`, left+plotW+2, y+3, 25*i)
	}
	var pts []string
	for i, e := range entries {
		x := left + step*float64(i) + (step-bw)/2
		h := plotH * e.Duration().Seconds() / maxD
		color := "#4a78c2"
		if e.Outcome != history.Published && e.Outcome != history.Built {
			color = "#b00020"
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %s, %s</title></rect>`,
			x, top+plotH-h, bw, h, color, short(e.Commit), e.Outcome, e.Duration().Round(100*time.Millisecond))
		cached, total := e.Reused()
		if total > 0 {
			cx := x + bw/2
			cy := top + plotH - plotH*float64(cached)/float64(total)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", cx, cy))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="#e0923a"><title>%d of %d steps cached</title></circle>`, cx, cy, cached, total)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" font-size="9" text-anchor="middle" transform="rotate(30 %.1f %.0f)">%s</text>`,
			x+bw/2, top+plotH+12, x+bw/2, top+plotH+12, short(e.Commit)[:7])
	}
	if len(pts) > 1 {
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="#e0923a" stroke-width="1.5"/>`, strings.Join(pts, " "))
	}
	b.WriteString("</svg>")
	return b.String()
}
