// Package history reads and writes `vmbuild track`'s history: one JSON
// object per line (NAME.history.jsonl beside the recipe), one line per
// upstream commit tracked, appended as each build ends. Verifiers read it
// too: a policy can allow any commit the history records as published.
package history

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Outcome of tracking one commit.
type Outcome string

const (
	// Published: built, pushed, signed, attested and tagged.
	Published Outcome = "published"
	// Built: built (e.g. to an OCI layout) without publishing.
	Built Outcome = "built"
	// PatchFailed: a patch did not apply; nothing was published.
	PatchFailed Outcome = "patch-failed"
	// BuildFailed: a build step failed; nothing was published.
	BuildFailed Outcome = "build-failed"
	// PublishFailed: the image was pushed by digest but signing, attesting
	// or tagging did not complete; no tag moved.
	PublishFailed Outcome = "publish-failed"
	// Error: the commit could not be built for another reason (daemon
	// lost, deadline); the next run retries it.
	Error Outcome = "error"
)

// Step is one build step's cache outcome.
type Step struct {
	ID          string `json:"id"`
	Cached      bool   `json:"cached"`
	LayerDigest string `json:"layerDigest,omitempty"`
	DurationMS  int64  `json:"durationMs,omitempty"`
}

// Patch is one patch's effect at the commit.
type Patch struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Files   int    `json:"files"`
	Added   int    `json:"added"`
	Removed int    `json:"removed"`
	Error   string `json:"error,omitempty"`
}

// Entry is one line of the history.
type Entry struct {
	Commit      string    `json:"commit"`
	CommitTime  time.Time `json:"commitTime"`
	Subject     string    `json:"subject,omitempty"`
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
	Outcome     Outcome   `json:"outcome"`
	Digest      string    `json:"digest,omitempty"`
	Image       string    `json:"image,omitempty"` // repo@digest when pushed
	Tags        []string  `json:"tags,omitempty"`
	Steps       []Step    `json:"steps,omitempty"`
	BytesPushed int64     `json:"bytesPushed"`
	Patches     []Patch   `json:"patches,omitempty"`
	// FailedStep names the step that failed, Error says why.
	FailedStep string `json:"failedStep,omitempty"`
	Error      string `json:"error,omitempty"`
	Builder    string `json:"builder,omitempty"`
	// RecipeSHA256 identifies the recipe and patches the commit was built
	// with: a failure is only retried once one of them changed.
	RecipeSHA256 string `json:"recipeSha256,omitempty"`
}

// Duration is the build's wall time.
func (e Entry) Duration() time.Duration { return e.End.Sub(e.Start) }

// Reused counts the steps served from cache, of all steps.
func (e Entry) Reused() (cached, total int) {
	for _, s := range e.Steps {
		total++
		if s.Cached {
			cached++
		}
	}
	return cached, total
}

// MaxLine bounds one history line (a history is read by verifiers too).
const MaxLine = 1 << 20

// Read parses a history file. A missing file is an empty history.
func Read(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading history: %w", err)
	}
	defer f.Close()
	return Parse(path, f)
}

// Parse reads history lines from r; name is used in errors.
func Parse(name string, r io.Reader) ([]Entry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxLine)
	var out []Entry
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var e Entry
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("reading history %s:%d: %w", name, line, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading history %s:%d: %w", name, line+1, err)
	}
	return out, nil
}

// Append adds one entry as a line, with O_APPEND and a single write so
// concurrent readers never see half a line.
func Append(path string, e Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("writing history: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("writing history: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("writing history: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("writing history: %w", err)
	}
	return f.Close()
}

// PublishedCommits returns the commits the history records as published,
// with their image digests.
func PublishedCommits(entries []Entry) map[string][]string {
	out := map[string][]string{}
	for _, e := range entries {
		if e.Outcome == Published {
			out[e.Commit] = append(out[e.Commit], e.Digest)
		}
	}
	return out
}

// LastGood returns the newest entry with outcome Published or Built.
func LastGood(entries []Entry) (Entry, bool) {
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].Outcome == Published || entries[i].Outcome == Built {
			return entries[i], true
		}
	}
	return Entry{}, false
}
