package harness

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// Counter is a loopback HTTP server that counts what its clients fetch:
// every request, and the response bytes written to the client. It serves
// a handler: a reverse proxy in front of a remote registry (NewProxyCounter)
// or anything else (a gem source's files). The hermetic benchmark points
// BuildKit, vmbuild's lock and the package managers at it, so that the
// count is what each of them fetched over the wire.
type Counter struct {
	// URL is "http://127.0.0.1:PORT".
	URL string

	srv *http.Server
	h   http.Handler

	mu    sync.Mutex
	cur   Fetched
	paths map[string]int
}

// Fetched is what a Counter served between two Takes.
type Fetched struct {
	Requests int   `json:"requests"`
	Bytes    int64 `json:"bytes"`
	// Errors counts responses with a status of 400 or more.
	Errors int `json:"errors,omitempty"`
	// Paths are the distinct paths requested, sorted.
	Paths []string `json:"paths,omitempty"`
}

// Matching counts the requested paths for which keep is true.
func (f Fetched) Matching(keep func(path string) bool) int {
	n := 0
	for _, p := range f.Paths {
		if keep(p) {
			n++
		}
	}
	return n
}

// StartCounter serves h on a loopback port.
func StartCounter(h http.Handler) (*Counter, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &Counter{URL: "http://" + l.Addr().String(), h: h, paths: map[string]int{}}
	c.srv = &http.Server{Handler: http.HandlerFunc(c.serve), ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = c.srv.Serve(l) }()
	return c, nil
}

// NewProxyCounter serves a reverse proxy to upstream (e.g.
// https://registry.yarnpkg.com) on a loopback port, plain http.
func NewProxyCounter(upstream string) (*Counter, error) {
	target, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = target.Host
		},
		// Registries answer tarball requests with redirects to their CDN
		// on the same host at most; hand them on as they are.
		FlushInterval: -1,
	}
	return StartCounter(rp)
}

func (c *Counter) serve(w http.ResponseWriter, r *http.Request) {
	cw := &countingWriter{ResponseWriter: w, status: http.StatusOK}
	c.h.ServeHTTP(cw, r)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur.Requests++
	c.cur.Bytes += cw.n
	if cw.status >= 400 {
		c.cur.Errors++
	}
	c.paths[r.URL.Path]++
}

type countingWriter struct {
	http.ResponseWriter
	n      int64
	status int
}

func (w *countingWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Take returns what was served since the last Take (or the start) and
// starts counting afresh.
func (c *Counter) Take() Fetched {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.cur
	for p := range c.paths {
		f.Paths = append(f.Paths, p)
	}
	sort.Strings(f.Paths)
	c.cur = Fetched{}
	c.paths = map[string]int{}
	return f
}

// Close stops the server.
func (c *Counter) Close() {
	if c == nil || c.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.srv.Shutdown(ctx)
}

// String is "N requests, B bytes".
func (f Fetched) String() string {
	s := fmt.Sprintf("%d requests, %d bytes", f.Requests, f.Bytes)
	if f.Errors > 0 {
		s += fmt.Sprintf(" (%d errors)", f.Errors)
	}
	return s
}

// IsTarball reports whether a registry path is a package tarball
// (/NAME/-/NAME-VERSION.tgz, /@SCOPE/NAME/-/NAME-VERSION.tgz).
func IsTarball(path string) bool {
	return strings.Contains(path, "/-/") && strings.HasSuffix(path, ".tgz")
}
