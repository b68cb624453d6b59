package deps

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmbuild/vmbuild/errs"
)

// HashError reports a download whose content is not what was expected:
// at lock time against the lockfile's own integrity, at build time against
// the lock's sha256. It names the package, the URL and both digests.
type HashError struct {
	Package  string // name@version
	URL      string // redacted
	Source   string // what the expectation came from
	Expected string
	Actual   string
}

func (e *HashError) Error() string {
	return fmt.Sprintf("package %s: download %s does not match %s: expected %s, got %s", e.Package, e.URL, e.Source, e.Expected, e.Actual)
}

// Is makes errors.Is(err, errs.ErrHashMismatch) hold.
func (e *HashError) Is(target error) bool { return target == errs.ErrHashMismatch }

// Request is one download to hash.
type Request struct {
	// ID names the package in errors (Package.ID()).
	ID  string
	URL string
	// Want is the lockfile's integrity, checked against the download.
	Want Integrity
}

// Sum is what hashing a download found.
type Sum struct {
	SHA256 string
	Size   int64
}

// Fetcher downloads packages at lock time to hash them, where a lockfile
// has no sha256 of its own (Yarn Berry, a Gemfile.lock without CHECKSUMS,
// npm's sha512). The build never uses it: BuildKit fetches, by checksum.
// The zero value is usable; fields are options.
type Fetcher struct {
	// Client makes the requests. Default: a client honouring the proxy
	// environment, with a 5-minute timeout per download.
	Client *http.Client
	// Header, if set, returns headers for a URL (credentials for a private
	// registry). Its values are never logged nor recorded.
	Header func(url string) http.Header
	// CacheDir, if set, keeps downloads by sha256 (CacheDir/sha256/<hex>),
	// and remembers URL → sha256, so re-locking does not download again.
	CacheDir string
	// Concurrency bounds parallel downloads. Default 8.
	Concurrency int
	// MaxSize bounds one download. Default 512 MiB.
	MaxSize int64
	// Logger receives one line per download. Default: discard.
	Logger *slog.Logger
	// Known are sums pinned before (a previous lock's), by URL: Hash
	// answers a request for one of them without downloading. The caller
	// puts only pins whose lockfile integrity is unchanged here.
	Known map[string]Sum

	downloads, bytes atomic.Int64
}

// Downloads reports how many packages, and bytes, Hash downloaded (not
// answered from Known or the cache).
func (f *Fetcher) Downloads() (packages, bytes int64) {
	return f.downloads.Load(), f.bytes.Load()
}

func (f *Fetcher) client() *http.Client {
	if f.Client != nil {
		return f.Client
	}
	return &http.Client{Timeout: 5 * time.Minute}
}

func (f *Fetcher) log() *slog.Logger {
	if f.Logger != nil {
		return f.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Hash downloads each request once, checks it against its integrity, and
// returns the sums in request order. Errors name the package and URL; all
// failures are reported, joined.
func (f *Fetcher) Hash(ctx context.Context, reqs []Request) ([]Sum, error) {
	n := f.Concurrency
	if n <= 0 {
		n = 8
	}
	sums := make([]Sum, len(reqs))
	errList := make([]error, len(reqs))
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errList[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			sums[i], errList[i] = f.hashOne(ctx, reqs[i])
		}(i)
	}
	wg.Wait()
	if err := errors.Join(errList...); err != nil {
		return nil, err
	}
	return sums, nil
}

func (f *Fetcher) hashOne(ctx context.Context, r Request) (Sum, error) {
	if s, ok := f.Known[r.URL]; ok {
		return s, nil
	}
	if s, ok := f.cached(r); ok {
		return s, nil
	}
	max := f.MaxSize
	if max <= 0 {
		max = 512 << 20
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL, nil)
	if err != nil {
		return Sum{}, fmt.Errorf("fetching package %s: %w: bad URL %s", r.ID, errs.ErrDependency, RedactURL(r.URL))
	}
	if f.Header != nil {
		for k, vs := range f.Header(r.URL) {
			req.Header[k] = vs
		}
	}
	start := time.Now()
	resp, err := f.client().Do(req)
	if err != nil {
		return Sum{}, fmt.Errorf("fetching package %s from %s: %w", r.ID, RedactURL(r.URL), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Sum{}, fmt.Errorf("fetching package %s: %w: %s answered %s", r.ID, errs.ErrDependency, RedactURL(r.URL), resp.Status)
	}
	hs := r.Want.hashers()
	var w io.Writer
	ws := []io.Writer{}
	for _, h := range hs {
		ws = append(ws, h)
	}
	var tmp *os.File
	if f.CacheDir != "" {
		dir := filepath.Join(f.CacheDir, "sha256")
		if err := os.MkdirAll(dir, 0o755); err == nil {
			if tmp, err = os.CreateTemp(dir, ".dl-*"); err == nil {
				defer os.Remove(tmp.Name())
				defer tmp.Close()
				ws = append(ws, tmp)
			}
		}
	}
	w = io.MultiWriter(ws...)
	n, err := io.Copy(w, io.LimitReader(resp.Body, max+1))
	if err != nil {
		return Sum{}, fmt.Errorf("fetching package %s from %s: %w", r.ID, RedactURL(r.URL), err)
	}
	if n > max {
		return Sum{}, fmt.Errorf("fetching package %s from %s: %w", r.ID, RedactURL(r.URL), &errs.LimitError{Limit: fmt.Sprintf("download size (%d bytes)", max)})
	}
	sums := map[string][]byte{}
	for a, h := range hs {
		sums[a] = h.Sum(nil)
	}
	if alg, want, got, ok := r.Want.check(sums); !ok {
		return Sum{}, &HashError{Package: r.ID, URL: RedactURL(r.URL), Source: r.Want.Source + " (" + alg + ")", Expected: want, Actual: got}
	}
	s := Sum{SHA256: hex.EncodeToString(sums["sha256"]), Size: n}
	f.downloads.Add(1)
	f.bytes.Add(n)
	f.log().Info("fetched", "package", r.ID, "bytes", n, "took", time.Since(start).Round(time.Millisecond))
	if tmp != nil {
		f.store(r.URL, s, tmp)
	}
	return s, nil
}

// cached answers from CacheDir: a URL seen before, whose content is still
// there and still checks against the request's integrity.
func (f *Fetcher) cached(r Request) (Sum, bool) {
	if f.CacheDir == "" {
		return Sum{}, false
	}
	b, err := os.ReadFile(filepath.Join(f.CacheDir, "url", urlKey(r.URL)))
	if err != nil || !IsSHA256(string(b)) {
		return Sum{}, false
	}
	blob, err := os.Open(filepath.Join(f.CacheDir, "sha256", string(b)))
	if err != nil {
		return Sum{}, false
	}
	defer blob.Close()
	hs := r.Want.hashers()
	ws := []io.Writer{}
	for _, h := range hs {
		ws = append(ws, h)
	}
	n, err := io.Copy(io.MultiWriter(ws...), blob)
	if err != nil {
		return Sum{}, false
	}
	sums := map[string][]byte{}
	for a, h := range hs {
		sums[a] = h.Sum(nil)
	}
	if hex.EncodeToString(sums["sha256"]) != string(b) {
		return Sum{}, false
	}
	if _, _, _, ok := r.Want.check(sums); !ok {
		return Sum{}, false
	}
	return Sum{SHA256: string(b), Size: n}, true
}

func (f *Fetcher) store(url string, s Sum, tmp *os.File) {
	if err := tmp.Sync(); err != nil {
		return
	}
	dst := filepath.Join(f.CacheDir, "sha256", s.SHA256)
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return
	}
	dir := filepath.Join(f.CacheDir, "url")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	_ = os.WriteFile(filepath.Join(dir, urlKey(url)), []byte(s.SHA256), 0o644)
}

func urlKey(url string) string {
	return hex.EncodeToString(sha256Sum([]byte(url)))
}
