package build

import (
	"bytes"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"
)

// Vertex is what BuildKit reported about one LLB vertex.
type Vertex struct {
	Digest   digest.Digest `json:"digest"`
	Name     string        `json:"name"`
	Cached   bool          `json:"cached"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"durationNs,omitempty"`
	started  *time.Time
	done     *time.Time
	logs     []byte
}

const logTail = 16 << 10

// collector tees BuildKit's status stream: it records every vertex (cache
// hits, errors, the tail of each one's output) and forwards the events to
// the progress display.
type collector struct {
	mu       sync.Mutex
	vertices map[digest.Digest]*Vertex
	order    []digest.Digest
	pushed   map[string]int64 // push status id (blob digest) → bytes
	pushIDs  map[string]bool
}

func newCollector() *collector {
	return &collector{vertices: map[digest.Digest]*Vertex{}, pushed: map[string]int64{}, pushIDs: map[string]bool{}}
}

// run consumes in until it closes, forwarding to out (which it closes).
func (c *collector) run(in <-chan *client.SolveStatus, out chan<- *client.SolveStatus) {
	defer func() {
		if out != nil {
			close(out)
		}
	}()
	for s := range in {
		c.record(s)
		if out != nil {
			out <- s
		}
	}
}

func (c *collector) record(s *client.SolveStatus) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range s.Vertexes {
		cur, ok := c.vertices[v.Digest]
		if !ok {
			cur = &Vertex{Digest: v.Digest}
			c.vertices[v.Digest] = cur
			c.order = append(c.order, v.Digest)
		}
		if v.Name != "" {
			cur.Name = v.Name
		}
		cur.Cached = cur.Cached || v.Cached
		if v.Error != "" {
			cur.Error = v.Error
		}
		if v.Started != nil && cur.started == nil {
			cur.started = v.Started
		}
		if v.Completed != nil {
			cur.done = v.Completed
		}
		if cur.started != nil && cur.done != nil {
			cur.Duration = cur.done.Sub(*cur.started)
		}
	}
	for _, l := range s.Logs {
		cur, ok := c.vertices[l.Vertex]
		if !ok {
			cur = &Vertex{Digest: l.Vertex}
			c.vertices[l.Vertex] = cur
			c.order = append(c.order, l.Vertex)
		}
		cur.logs = append(cur.logs, l.Data...)
		if len(cur.logs) > 2*logTail {
			cur.logs = append([]byte(nil), cur.logs[len(cur.logs)-logTail:]...)
		}
	}
	for _, st := range s.Statuses {
		// Image pushes report one status per blob, named by its digest.
		if strings.HasPrefix(st.ID, "sha256:") || strings.HasPrefix(st.ID, "pushing sha256:") {
			v := c.vertices[st.Vertex]
			if v != nil && strings.Contains(v.Name, "push") {
				id := strings.TrimPrefix(st.ID, "pushing ")
				c.pushIDs[id] = true
				if st.Total > c.pushed[id] {
					c.pushed[id] = st.Total
				}
			}
		}
	}
}

// get returns a copy of the vertex record.
func (c *collector) get(d digest.Digest) (Vertex, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.vertices[d]
	if !ok {
		return Vertex{}, false
	}
	return *v, true
}

// all returns every vertex in the order BuildKit first reported them.
func (c *collector) all() []Vertex {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Vertex, 0, len(c.order))
	for _, d := range c.order {
		v := *c.vertices[d]
		v.logs = nil
		if v.Name == "" {
			continue
		}
		out = append(out, v)
	}
	return out
}

// failed returns the vertices that reported an error other than a
// cancellation caused by another failure.
func (c *collector) failed() []Vertex {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Vertex
	for _, d := range c.order {
		v := c.vertices[d]
		if v.Error == "" || strings.Contains(v.Error, "context canceled") {
			continue
		}
		out = append(out, *v)
	}
	return out
}

// tail returns the last n lines a vertex printed.
func (v Vertex) tail(n int) string {
	lines := strings.Split(strings.TrimRight(string(bytes.ToValidUTF8(v.logs, []byte("?"))), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// bytesPushed sums the sizes of the blobs BuildKit uploaded.
func (c *collector) bytesPushed() (int64, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	ids := make([]string, 0, len(c.pushed))
	for id, b := range c.pushed {
		n += b
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return n, len(ids)
}
