package harness

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"

	"github.com/vmbuild/vmbuild/bench/internal/gen"
)

func TestParseRawJSON(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 := t0.Add(2 * time.Second)
	d := func(s string) digest.Digest { return digest.FromString(s) }
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// As buildctl reports them: a vertex first without, then with, its
	// completion; warnings between the JSON lines.
	for _, s := range []client.SolveStatus{
		{Vertexes: []*client.Vertex{
			{Digest: d("bundle"), Name: "[bundler 3/3] RUN sh bin/bundle install", Cached: true},
			{Digest: d("yarn"), Name: "[precompiler 3/4] RUN sh bin/yarn install", Started: &t0},
			{Digest: d("copy"), Name: "[precompiler 1/4] COPY . .", Started: &t0, Completed: &t1},
		}},
		{Vertexes: []*client.Vertex{
			{Digest: d("yarn"), Name: "[precompiler 3/4] RUN sh bin/yarn install", Started: &t0, Completed: &t1},
			{Digest: d("assets"), Name: "[precompiler 4/4] RUN sh bin/rails assets:precompile", Started: &t0, Completed: &t1, Error: "exit code: 1"},
		}},
	} {
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		buf.WriteString("WARNING: something\n")
	}
	steps, err := ParseRawJSON(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 3 {
		t.Fatalf("%d exec steps, want 3 (COPY is not one): %+v", len(steps), steps)
	}
	if got := RanNames(steps); strings.Join(got, ",") != "yarn" {
		t.Errorf("ran %v, want [yarn] (bundle cached, assets failed)", got)
	}
	if steps[1].Duration != 2*time.Second {
		t.Errorf("yarn took %s, want 2s", steps[1].Duration)
	}
	if _, err := ParseRawJSON(strings.NewReader("error: no such host\n")); err == nil {
		t.Error("output without any status parsed without error")
	}
}

func TestExecStepNames(t *testing.T) {
	for name, want := range map[string]bool{
		"[vmbuild] layer bundle: sh bin/bundle install":                true,
		"[vmbuild] layer bundle inputs: Gemfile Gemfile.lock":          false,
		"[vmbuild] layer bundle outputs: /usr/local/bundle":            false,
		"[vmbuild] layer assets rootfs":                                false,
		"[stage-2 4/5] RUN sh bin/rails assets:precompile":             true,
		"[precompiler 2/4] COPY --from=bundler /usr/local/bundle/ ...": false,
		"[internal] load git source git://127.0.0.1/x.git#abc":         false,
	} {
		if got := IsExecStep(name); got != want {
			t.Errorf("IsExecStep(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestRepoOf(t *testing.T) {
	for path, want := range map[string][2]string{
		"/v2/bench/native-r1/blobs/uploads/5e1b":   {"bench/native-r1", "blobs"},
		"/v2/bench/native-r1/manifests/sha256:abc": {"bench/native-r1", "manifests"},
		"/v2/a/blobs/x/manifests/latest":           {"a/blobs/x", "manifests"},
		"/v2/":                                     {"", ""},
		"/other":                                   {"", ""},
	} {
		repo, kind := repoOf(path)
		if repo != want[0] || kind != want[1] {
			t.Errorf("repoOf(%q) = %q, %q; want %q, %q", path, repo, kind, want[0], want[1])
		}
	}
}

// TestReport renders results with every contender and checks the targets
// and tables come out of the medians.
func TestReport(t *testing.T) {
	r := &Results{Size: gen.Full(), Reps: 3, Contenders: Contenders}
	r.Runs = []RunInfo{{ID: "cold", Title: "cold"}, {ID: "noop", Title: "no-op"}, {ID: "js", Title: "one JS file"}}
	wall := map[string][3]float64{ // cold, noop, js seconds
		"native": {10, 0.2, 3}, "dockerfile": {11, 0.5, 6.5}, "peer-epoch": {10, 0.1, 10}, "peer": {10, 0.1, 6}, "tuned": {9.8, 0.1, 2.9},
	}
	for id, ws := range wall {
		for rep := 1; rep <= 3; rep++ {
			for i, run := range r.Runs {
				m := Measurement{Contender: id, Run: run.ID, Rep: rep, Digest: "sha256:" + id + "-" + map[string]string{"cold": "a", "noop": "a", "js": "b"}[run.ID],
					Wall: time.Duration((ws[i] + float64(rep-2)*0.01) * float64(time.Second)), ExecSteps: 3}
				if run.ID == "js" {
					m.Ran = []string{"assets"}
					m.Pushed = Upload{Blobs: 100 << 10, Manifests: 2 << 10}
					m.NewLayerBytes = 99 << 10
				}
				r.Measurements = append(r.Measurements, m)
			}
		}
	}
	md := r.Markdown("plot.svg", "bench/run")
	for _, want := range []string{
		"| vmbuild native ≤ 1.05× hand-tuned Dockerfile, every commit | worst 1.03× (js); js 1.03× | **met** |",
		"no-op rebuild ≤ 3% of a cold build, same digest (vmbuild native) | 2.0% (0.20 s of 10.00 s); digest identical | **met**",
		"0.50× vs peer, upstream Dockerfile, no epoch; 0.30× vs peer, upstream Dockerfile, epoch build-arg | **missed**",
		"102 KiB pushed for 99 KiB of changed layers (1.030×)",
		"| one JS file | `` | 3.00 <sub>2.99–3.01</sub> | 6.50 <sub>6.49–6.51</sub> | 10.00 <sub>9.99–10.01</sub> | 6.00 <sub>5.99–6.01</sub> | 2.90 <sub>2.89–2.91</sub> | 1.03× | 0.30× | 0.50× | 0.65× | 1.08× |",
		"![Rebuild time per commit](plot.svg)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	svg := r.SVG()
	if !strings.HasPrefix(svg, "<svg") || strings.Count(svg, "<rect") < 1+4*3 {
		t.Errorf("svg has %d rects, want a bar per contender and run", strings.Count(svg, "<rect"))
	}
}

func TestSection(t *testing.T) {
	md := "# results\n\nbody\n"
	s := SectionBegin + "\nhermetic v1\n" + SectionEnd
	got := WithSection(md, s)
	if Section(got) != s || !strings.HasPrefix(got, md) {
		t.Fatalf("appended: %q", got)
	}
	s2 := SectionBegin + "\nhermetic v2\n" + SectionEnd
	got2 := WithSection(got, s2)
	if Section(got2) != s2 || strings.Contains(got2, "v1") || !strings.HasPrefix(got2, md) {
		t.Fatalf("replaced: %q", got2)
	}
	if Section(md) != "" {
		t.Fatal("found a section in a file with none")
	}
}
