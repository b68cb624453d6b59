package main

import (
	"strconv"
	"time"

	"github.com/vmbuild/vmbuild/bench/internal/harness"
)

// Results is everything one run of bench/run-hermetic measured; it is
// written as RESULTS-hermetic.json and rendered as the markdown.
type Results struct {
	Command  string          `json:"command"`
	Quick    bool            `json:"quick"`
	Reps     int             `json:"reps"`
	Started  time.Time       `json:"started"`
	Finished time.Time       `json:"finished"`
	Machine  harness.Machine `json:"machine"`
	// Scenarios, in the order they ran.
	Scenarios []*Scenario `json:"scenarios"`
	// Errors are harness errors: a failed build or lock, a figure that
	// could not be measured, a check that failed. Any makes the run fail.
	Errors []string `json:"errors,omitempty"`
}

// Scenario is one of the scenarios.
type Scenario struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	// Reps is how many repetitions of each sequence the scenario ran.
	Reps int `json:"reps,omitempty"`
	// Command is the command line that measured it, from Started to
	// Finished (a merged run's scenarios keep theirs).
	Command  string    `json:"command,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Load is the load average (1, 5, 15 min) when it started → ended.
	Load string `json:"load,omitempty"`
	// Setup says what was built and how (not timed).
	Setup []string `json:"setup,omitempty"`
	// Facts are figures measured once (e.g. which packages a bump moved).
	Facts map[string]any `json:"facts,omitempty"`
	// Notes are observations the harness made (checks that held, or not).
	Notes []string `json:"notes,omitempty"`
	Runs  []Run    `json:"runs"`
	// Skipped, if set, says why the scenario did not run.
	Skipped string `json:"skipped,omitempty"`
}

// Run is one measured command: a lock or a build.
type Run struct {
	Contender string `json:"contender"`
	Phase     string `json:"phase"`
	Rep       int    `json:"rep"`
	Err       string `json:"error,omitempty"`
	// Wall is the wall time of the lock or build (in-process, from the
	// call to its return).
	Wall time.Duration `json:"wallNs"`
	// Commit built or locked.
	Commit string `json:"commit,omitempty"`
	Digest string `json:"digest,omitempty"`

	// Dependency packages (npm tarballs, .gem files, the pinned package
	// manager) fetched, and every byte served, by the scenario's package
	// source (a counting proxy to the registry, or the gem source) during
	// a build: by BuildKit (hermetic) or the package manager (baseline).
	// For a lock: what vmbuild's fetcher downloaded to hash.
	Packages int   `json:"packages"`
	Bytes    int64 `json:"bytes"`
	// Debs and DebBytes: the .debs, and every byte, served by the counting
	// archive proxy (the Debian index too, for a lock).
	Debs     int   `json:"debs"`
	DebBytes int64 `json:"debBytes"`
	// Proxy and Archive are the two counters' raw figures.
	Proxy   harness.Fetched `json:"proxy"`
	Archive harness.Fetched `json:"archive"`
	// Layer steps (native layers) that ran, and the time BuildKit gave the
	// ones that ran.
	LayerSteps    []string      `json:"layerSteps,omitempty"`
	LayerStepTime time.Duration `json:"layerStepNs,omitempty"`
	// Unpacked: Debian packages unpacked (base steps that ran).
	Unpacked int `json:"unpacked,omitempty"`
	// Per-gem install steps (Bundler, perGem): ran and cache hits.
	GemStepsRan    []string `json:"gemStepsRan,omitempty"`
	GemStepsCached int      `json:"gemStepsCached,omitempty"`
	// Breakdown is the time BuildKit gave the build's parts that ran
	// (source, mirror, layer, gem-installs, outputs, export), from the
	// status stream; parallel steps add up.
	Breakdown map[string]time.Duration `json:"breakdownNs,omitempty"`
	// ReusedDaemon: --quick only, the sequence ran on the scenario's
	// daemon after another one (a "cold" build is not cold).
	ReusedDaemon bool `json:"reusedDaemon,omitempty"`
	// Pinned counts the packages the lock pins for the layer (locks).
	Pinned int `json:"pinned,omitempty"`
	// Changes are the lock's dependency changes (re-locks).
	Changes []string `json:"changes,omitempty"`
}

// recorded reports whether err is already a run's error.
func (s *Scenario) recorded(err error) bool {
	for _, r := range s.Runs {
		if r.Err == err.Error() {
			return true
		}
	}
	return false
}

// OK reports whether the run succeeded.
func (r Run) OK() bool { return r.Err == "" }

// Agg aggregates one contender × phase over the repetitions.
type Agg struct {
	N          int
	Wall       time.Duration // median
	Min, Max   time.Duration
	Packages   int64 // median
	Bytes      int64 // median
	Debs       int64
	DebBytes   int64
	Requests   int64
	ProxyBytes int64
	StepTime   time.Duration
	// InstallTime is the layer's step and, per gem, the gem installs
	// that ran (summed: some ran in parallel): the install's whole cost.
	InstallTime time.Duration
	First       Run // the first successful run (for the exact figures)
	Differing   []string
	AllWalls    []time.Duration
}

func (s *Scenario) agg(contender, phase string) Agg {
	var rs []Run
	for _, r := range s.Runs {
		if r.Contender == contender && r.Phase == phase && r.OK() {
			rs = append(rs, r)
		}
	}
	a := Agg{N: len(rs)}
	if len(rs) == 0 {
		return a
	}
	a.First = rs[0]
	var walls, steps, installs []time.Duration
	var pk, by, db, dbb, rq, pb []int64
	for _, r := range rs {
		walls = append(walls, r.Wall)
		steps = append(steps, r.LayerStepTime)
		installs = append(installs, r.LayerStepTime+r.Breakdown["gem-installs"])
		pk = append(pk, int64(r.Packages))
		by = append(by, r.Bytes)
		db = append(db, int64(r.Debs))
		dbb = append(dbb, r.DebBytes)
		rq = append(rq, int64(r.Proxy.Requests))
		pb = append(pb, r.Proxy.Bytes)
	}
	a.AllWalls = walls
	a.Wall = harness.Median(walls)
	a.StepTime = harness.Median(steps)
	a.InstallTime = harness.Median(installs)
	a.Min, a.Max = walls[0], walls[0]
	for _, w := range walls {
		a.Min = min(a.Min, w)
		a.Max = max(a.Max, w)
	}
	a.Packages, a.Bytes, a.Debs, a.DebBytes = harness.MedianInt(pk), harness.MedianInt(by), harness.MedianInt(db), harness.MedianInt(dbb)
	a.Requests, a.ProxyBytes = harness.MedianInt(rq), harness.MedianInt(pb)
	for _, r := range rs[1:] {
		if r.Packages != a.First.Packages || r.Debs != a.First.Debs || len(r.LayerSteps) != len(a.First.LayerSteps) || len(r.GemStepsRan) != len(a.First.GemStepsRan) {
			a.Differing = append(a.Differing, "rep "+strconv.Itoa(r.Rep))
		}
	}
	return a
}
