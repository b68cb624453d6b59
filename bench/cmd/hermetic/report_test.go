package main

import (
	"strings"
	"testing"
	"time"

	"github.com/vmbuild/vmbuild/bench/internal/harness"
)

func TestYarnLockDiff(t *testing.T) {
	before := "\"pg@npm:8.23.0\":\n  version: 8.23.0\n  resolution: \"pg@npm:8.23.0\"\n\n\"ws@npm:8.0.0\":\n  resolution: \"ws@npm:8.0.0\"\n"
	after := "\"pg@npm:8.23.1\":\n  version: 8.23.1\n  resolution: \"pg@npm:8.23.1\"\n\n\"ws@npm:8.0.0\":\n  resolution: \"ws@npm:8.0.0\"\n"
	added, removed := yarnLockDiff(before, after)
	if strings.Join(added, ",") != "pg@npm:8.23.1" || strings.Join(removed, ",") != "pg@npm:8.23.0" {
		t.Errorf("added %v, removed %v", added, removed)
	}
}

func TestDependents(t *testing.T) {
	// leaf08 ← mid02 ← mid04 ← mid09 ← top02, and mid02 ← top04 ← top06.
	got := strings.Join(dependents(bumpPlain), ",")
	if got != "leaf08,mid02,mid04,mid09,top02,top04,top06" {
		t.Errorf("dependents(%s) = %s", bumpPlain, got)
	}
	if cx := cextsOver(dependents(bumpCExt)); strings.Join(cx, ",") != "cext1,cext3" {
		t.Errorf("C extensions over %s: %v", bumpCExt, cx)
	}
}

func TestReplaceAll(t *testing.T) {
	if _, err := replaceAll("a b", "c", "d"); err == nil {
		t.Error("replaced a string that is not there")
	}
	if got, err := replaceAll("a b", "a", "x", "b", "y"); err != nil || got != "x y" {
		t.Errorf("got %q, %v", got, err)
	}
}

// TestTargets: the targets are judged from the runs (a bump against the
// baseline's reinstall, a no-op's requests), and the report renders.
func TestTargets(t *testing.T) {
	run := func(c, ph string, wall time.Duration, pkgs int, reqs int) Run {
		return Run{Contender: c, Phase: ph, Rep: 1, Wall: wall, Packages: pkgs, Bytes: int64(pkgs) * 1000, Digest: "sha256:x", Proxy: harness.Fetched{Requests: reqs}}
	}
	res := &Results{Reps: 1, Scenarios: []*Scenario{{ID: "npm", Runs: []Run{
		run("hermetic", "cold", 10*time.Second, 87, 88),
		run("hermetic", "noop", time.Second, 0, 0),
		run("hermetic", "bump", time.Second, 1, 1),
		run("baseline", "cold", 10*time.Second, 87, 200),
		run("baseline", "noop", time.Second, 0, 0),
		run("baseline", "bump", 8*time.Second, 87, 200),
	}}, {ID: "yarn", Runs: []Run{
		run("hermetic", "noop", time.Second, 0, 3),
		run("hermetic", "bump", 5*time.Second, 3, 3),
		run("baseline", "bump", 6*time.Second, 150, 300),
	}}}}
	status := map[string]string{}
	for _, tg := range res.Targets() {
		status[tg.Name] = tg.Status
	}
	for name, want := range map[string]string{
		"#12: a single-package bump costs ≤ 0.2× a full reinstall — package-lock.json: dotenv 16.4.7":                                   "met",
		"#12: a single-package bump costs ≤ 0.2× a full reinstall — yarn.lock: " + bumpPackage + " " + bumpTo + " (Mastodon streaming)": "missed",
		"#12: a warm rebuild of an unchanged lockfile fetches nothing — npm, hermetic":                                                  "met",
		"#12: a warm rebuild of an unchanged lockfile fetches nothing — yarn, hermetic":                                                 "missed",
	} {
		if status[name] != want {
			t.Errorf("%s: %q, want %q", name, status[name], want)
		}
	}
	md := res.Markdown("RESULTS-hermetic.json")
	sec := res.Section("RESULTS-hermetic.md", "RESULTS-hermetic.json")
	for _, s := range []string{md, sec} {
		if !strings.Contains(s, "package-lock.json: dotenv 16.4.7") {
			t.Errorf("the report has no npm target:\n%s", s)
		}
	}
}
