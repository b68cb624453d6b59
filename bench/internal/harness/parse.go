package harness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"
)

// Step is one exec step of a build as its status stream reported it.
type Step struct {
	Name     string        `json:"name"`
	Cached   bool          `json:"cached"`
	Ran      bool          `json:"ran"`
	Duration time.Duration `json:"durationNs,omitempty"`
}

// dockerfileRun matches the names the dockerfile frontend gives RUN
// steps: "[stage 3/4] RUN sh bin/yarn install".
var dockerfileRun = regexp.MustCompile(`^\[[^\]]+\] RUN `)

// vmbuildLayer matches vmbuild's native layer exec steps: "[vmbuild] layer
// NAME: COMMAND" (not "layer NAME inputs:", "outputs:" or "rootfs").
var vmbuildLayer = regexp.MustCompile(`^\[vmbuild\] layer [a-z0-9._-]+: `)

// IsExecStep reports whether a vertex name is an exec step: a Dockerfile
// RUN or a vmbuild native layer.
func IsExecStep(name string) bool {
	return dockerfileRun.MatchString(name) || vmbuildLayer.MatchString(name)
}

type vtx struct {
	name      string
	cached    bool
	started   *time.Time
	completed *time.Time
	errText   string
}

// ParseRawJSON reads buildctl's `--progress rawjson` output (one
// client.SolveStatus per line; other lines, such as warnings, are
// skipped) and returns its exec steps, in the order first reported. A step
// ran when it completed without being a cache hit.
func ParseRawJSON(r io.Reader) ([]Step, error) {
	vs := map[digest.Digest]*vtx{}
	var order []digest.Digest
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	n := 0
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var s client.SolveStatus
		if err := json.Unmarshal(line, &s); err != nil {
			continue
		}
		n++
		for _, v := range s.Vertexes {
			cur := vs[v.Digest]
			if cur == nil {
				cur = &vtx{}
				vs[v.Digest] = cur
				order = append(order, v.Digest)
			}
			if v.Name != "" {
				cur.name = v.Name
			}
			cur.cached = cur.cached || v.Cached
			if v.Started != nil && cur.started == nil {
				cur.started = v.Started
			}
			if v.Completed != nil {
				cur.completed = v.Completed
			}
			if v.Error != "" {
				cur.errText = v.Error
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("no rawjson status in the progress output")
	}
	var out []Step
	for _, d := range order {
		v := vs[d]
		if !IsExecStep(v.name) {
			continue
		}
		s := Step{Name: v.name, Cached: v.cached, Ran: !v.cached && v.completed != nil && v.errText == ""}
		if v.started != nil && v.completed != nil {
			s.Duration = v.completed.Sub(*v.started)
		}
		out = append(out, s)
	}
	return out, nil
}

// VMBuildMetadata is the part of `vmbuild build --metadata-file` the
// benchmark reads.
type VMBuildMetadata struct {
	Digest string `json:"containerimage.digest"`
	Epoch  int64  `json:"sourceDateEpoch"`
	Steps  []struct {
		ID          string        `json:"id"`
		Kind        string        `json:"kind"`
		Title       string        `json:"title"`
		Cached      bool          `json:"cached"`
		Ran         bool          `json:"ran"`
		LayerDigest string        `json:"layerDigest"`
		Duration    time.Duration `json:"durationNs"`
	} `json:"steps"`
	Vertices []struct {
		Digest   string        `json:"digest"`
		Name     string        `json:"name"`
		Cached   bool          `json:"cached"`
		Error    string        `json:"error"`
		Duration time.Duration `json:"durationNs"`
	} `json:"vertices"`
	BytesPushed int64 `json:"bytesPushed"`
	Published   *struct {
		Image        string   `json:"image"`
		Signed       bool     `json:"signed"`
		Attested     bool     `json:"attested"`
		Tags         []string `json:"tags"`
		Signatures   []string `json:"signatures"`
		Attestations []string `json:"attestations"`
	} `json:"published"`
}

// ReadVMBuildMetadata reads a metadata file.
func ReadVMBuildMetadata(path string) (*VMBuildMetadata, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading vmbuild metadata: %w", err)
	}
	var m VMBuildMetadata
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("reading vmbuild metadata %s: %w", path, err)
	}
	return &m, nil
}

// ExecSteps returns the build's exec steps. Native builds: the steps of
// kind "layer" (vmbuild's own account, which knows which layer vertex is
// which). Dockerfile builds: the RUN vertices the frontend reported. A
// vertex ran when it was reported and not a cache hit.
func (m *VMBuildMetadata) ExecSteps() []Step {
	var out []Step
	native := false
	for _, s := range m.Steps {
		if s.Kind == "layer" {
			native = true
			out = append(out, Step{Name: s.Title, Cached: s.Cached, Ran: s.Ran, Duration: s.Duration})
		}
	}
	if native {
		return out
	}
	for _, v := range m.Vertices {
		if IsExecStep(v.Name) {
			out = append(out, Step{Name: v.Name, Cached: v.Cached, Ran: !v.Cached && v.Error == "", Duration: v.Duration})
		}
	}
	return out
}

// BuildctlMetadata is buildctl's --metadata-file.
type BuildctlMetadata struct {
	Digest string `json:"containerimage.digest"`
}

// ReadBuildctlMetadata reads buildctl's metadata file.
func ReadBuildctlMetadata(path string) (*BuildctlMetadata, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading buildctl metadata: %w", err)
	}
	var m BuildctlMetadata
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("reading buildctl metadata %s: %w", path, err)
	}
	return &m, nil
}

// RanNames returns the short names of the steps that ran, sorted.
func RanNames(steps []Step) []string {
	var out []string
	for _, s := range steps {
		if s.Ran {
			out = append(out, shortStep(s.Name))
		}
	}
	sort.Strings(out)
	return out
}

// ranTime sums the durations of the steps that ran.
func ranTime(steps []Step) time.Duration {
	var d time.Duration
	for _, s := range steps {
		if s.Ran {
			d += s.Duration
		}
	}
	return d
}

// shortStep names a step by its tool: bundle, yarn, assets.
func shortStep(name string) string {
	switch {
	case strings.Contains(name, "bin/bundle"):
		return "bundle"
	case strings.Contains(name, "bin/yarn"):
		return "yarn"
	case strings.Contains(name, "bin/rails"):
		return "assets"
	}
	return name
}
