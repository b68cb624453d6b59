package registry

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
)

// hostile serves handler on loopback and returns "127.0.0.1:PORT".
func hostile(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func fastClient(opts ...Option) *Client {
	return New(append([]Option{WithRetry(4, time.Millisecond)}, opts...)...)
}

const goodManifest = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`

func TestLyingRegistryManifestDigest(t *testing.T) {
	asked := digest.FromString(goodManifest)
	other := strings.Replace(goodManifest, `"layers":[]`, `"layers":[],"annotations":{"evil":"yes"}`, 1)
	host := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
		switch {
		case strings.HasSuffix(r.URL.Path, "/manifests/latest"):
			// Claims the good digest, serves other bytes.
			w.Header().Set("Docker-Content-Digest", asked.String())
		case strings.HasSuffix(r.URL.Path, "/manifests/"+asked.String()):
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(other)))
		if r.Method == http.MethodHead {
			return
		}
		fmt.Fprint(w, other)
	})
	c := fastClient()
	ctx := context.Background()
	_, _, err := c.FetchManifest(ctx, host+"/x@"+asked.String())
	if !errors.Is(err, errs.ErrRegistry) || !strings.Contains(err.Error(), "content has digest") {
		t.Fatalf("FetchManifest by digest from a lying registry: %v", err)
	}
	_, _, err = c.FetchManifest(ctx, host+"/x:latest")
	if !errors.Is(err, errs.ErrRegistry) || !strings.Contains(err.Error(), "registry says digest") {
		t.Fatalf("FetchManifest by tag from a lying registry: %v", err)
	}
}

func TestLyingRegistryResolveDigest(t *testing.T) {
	asked := digest.FromString("a")
	host := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Docker-Content-Digest", digest.FromString("b").String())
		w.Header().Set("Content-Length", "10")
		w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
	})
	_, err := fastClient().Resolve(context.Background(), host+"/x@"+asked.String())
	if !errors.Is(err, errs.ErrRegistry) {
		t.Fatalf("Resolve with lying digest header: %v", err)
	}
}

func TestLyingRegistryBlob(t *testing.T) {
	content := []byte("the real thing")
	host := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		if r.Method == http.MethodGet {
			w.Write(bytes.ToUpper(content))
		}
	})
	desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(content), Size: int64(len(content))}
	_, err := fastClient().FetchBlob(context.Background(), host+"/x", desc, 1<<10)
	if !errors.Is(err, errs.ErrRegistry) || !strings.Contains(err.Error(), "content has digest") {
		t.Fatalf("FetchBlob from lying registry: %v", err)
	}
}

func wantManifestLimit(t *testing.T, err error) {
	t.Helper()
	var le *errs.LimitError
	if !errors.As(err, &le) {
		t.Fatalf("want *errs.LimitError, got %T %v", err, err)
	}
	if le.Limit != "manifest size (4 MiB)" {
		t.Fatalf("limit named %q, want %q", le.Limit, "manifest size (4 MiB)")
	}
	if !errors.Is(err, errs.ErrLimitExceeded) {
		t.Fatal("LimitError does not match errs.ErrLimitExceeded")
	}
}

func TestHugeManifest(t *testing.T) {
	const size = 50 << 20
	var sent atomic.Int64
	host := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
		if r.URL.Query().Get("chunked") == "" && !strings.Contains(r.URL.Path, "chunked") {
			w.Header().Set("Content-Length", strconv.Itoa(size))
		}
		if r.Method == http.MethodHead {
			return
		}
		chunk := bytes.Repeat([]byte(" "), 1<<20)
		for i := 0; i < size>>20; i++ {
			n, err := w.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	c := fastClient()
	ctx := context.Background()
	d := digest.FromString("whatever")
	// Declared size: refused before reading.
	_, _, err := c.FetchManifest(ctx, host+"/x@"+d.String())
	wantManifestLimit(t, err)
	_, err = c.Resolve(ctx, host+"/x:big")
	wantManifestLimit(t, err)
	// Undeclared size (chunked): refused after reading just over the limit.
	sent.Store(0)
	_, _, err = c.FetchManifest(ctx, host+"/chunked:big")
	wantManifestLimit(t, err)
	if s := sent.Load(); s > 20<<20 {
		t.Fatalf("server managed to send %d bytes; the client read too much", s)
	}
}

func TestEndlessBody(t *testing.T) {
	var stopped atomic.Bool
	host := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
		chunk := bytes.Repeat([]byte("{"), 64<<10)
		deadline := time.Now().Add(20 * time.Second) // the loop is bounded
		for time.Now().Before(deadline) {
			if _, err := w.Write(chunk); err != nil {
				stopped.Store(true)
				return
			}
		}
	})
	start := time.Now()
	_, _, err := fastClient().FetchManifest(context.Background(), host+"/x:endless")
	wantManifestLimit(t, err)
	if time.Since(start) > 10*time.Second {
		t.Fatalf("endless body took %s", time.Since(start))
	}
	// Same for a referrers index.
	_, err = fastClient().Referrers(context.Background(), host+"/x", digest.FromString("s"), "")
	var le *errs.LimitError
	if !errors.As(err, &le) || le.Limit != "referrers index size (4 MiB)" {
		t.Fatalf("endless referrers index: %v", err)
	}
}

func TestRetryTransient(t *testing.T) {
	var calls atomic.Int32
	host := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		case 2:
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
		w.Header().Set("Docker-Content-Digest", digest.FromString(goodManifest).String())
		fmt.Fprint(w, goodManifest)
	})
	b, desc, err := fastClient().FetchManifest(context.Background(), host+"/x:latest")
	if err != nil {
		t.Fatalf("FetchManifest after 503, 429: %v", err)
	}
	if string(b) != goodManifest || desc.Digest != digest.FromString(goodManifest) || calls.Load() != 3 {
		t.Fatalf("got %d calls, desc %v", calls.Load(), desc)
	}
}

func TestRetryGivesUp(t *testing.T) {
	var calls atomic.Int32
	host := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	})
	_, _, err := fastClient().FetchManifest(context.Background(), host+"/x:latest")
	if !errors.Is(err, errs.ErrRegistry) || !strings.Contains(err.Error(), "502") {
		t.Fatalf("FetchManifest against constant 502: %v", err)
	}
	if calls.Load() != 4 {
		t.Fatalf("made %d attempts, want the default 4", calls.Load())
	}
	calls.Store(0)
	_, _, _ = New(WithRetry(2, time.Millisecond)).FetchManifest(context.Background(), host+"/x:latest")
	if calls.Load() != 2 {
		t.Fatalf("made %d attempts, want 2", calls.Load())
	}
	// 404 is not retried.
	calls.Store(0)
	nf := hostile(t, func(w http.ResponseWriter, r *http.Request) { calls.Add(1); http.NotFound(w, r) })
	if _, _, err := fastClient().FetchManifest(context.Background(), nf+"/x:latest"); !errors.Is(err, errs.ErrNotFound) || calls.Load() != 1 {
		t.Fatalf("404: %v after %d calls", err, calls.Load())
	}
}

func TestRetryConnectionReset(t *testing.T) {
	var calls atomic.Int32
	host := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			// Drop the connection mid-response.
			hj, ok := w.(http.Hijacker)
			if !ok {
				t.Error("no hijacker")
				return
			}
			conn, _, _ := hj.Hijack()
			conn.Close()
			return
		}
		w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
		fmt.Fprint(w, goodManifest)
	})
	_, _, err := fastClient().FetchManifest(context.Background(), host+"/x@"+digest.FromString(goodManifest).String())
	if err != nil || calls.Load() != 2 {
		t.Fatalf("after a dropped connection: %v, %d calls", err, calls.Load())
	}
}

func TestConnectionRefusedNotRetried(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	host := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()
	start := time.Now()
	_, err := New(WithRetry(4, time.Second)).Resolve(context.Background(), host+"/x:latest")
	if !errors.Is(err, errs.ErrRegistry) {
		t.Fatalf("Resolve against a closed port: %v", err)
	}
	if time.Since(start) > 900*time.Millisecond {
		t.Fatalf("a registry that never answered was retried (%s)", time.Since(start))
	}
}

func TestDockerConfigBasicAuth(t *testing.T) {
	var authed atomic.Int32
	host := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != "alice" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		authed.Add(1)
		w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
		fmt.Fprint(w, goodManifest)
	})
	dir := t.TempDir()
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, base64.StdEncoding.EncodeToString([]byte("alice:s3cret")))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := fastClient(WithDockerConfigDir(dir)).FetchManifest(context.Background(), host+"/x:latest")
	if err != nil || authed.Load() != 1 {
		t.Fatalf("with credentials: %v (%d authorized requests)", err, authed.Load())
	}
	_, _, err = fastClient(WithDockerConfigDir(t.TempDir())).FetchManifest(context.Background(), host+"/x:latest")
	if !errors.Is(err, errs.ErrRegistry) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("without credentials: %v", err)
	}
}

func TestReferrersAPIPagination(t *testing.T) {
	subject := digest.FromString("subject")
	d1, d2 := digest.FromString("1"), digest.FromString("2")
	host := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/referrers/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
		if r.URL.Query().Get("page") == "" {
			w.Header().Set("Link", `<`+r.URL.Path+`?page=2>; rel="next"`)
			fmt.Fprintf(w, `{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":1,"artifactType":"a"}]}`, ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest, d1)
			return
		}
		fmt.Fprintf(w, `{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":1,"artifactType":"b"},{"mediaType":%q,"digest":"bogus","size":1,"artifactType":"b"}]}`, ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest, d2, ocispec.MediaTypeImageManifest)
	})
	c := fastClient()
	refs, err := c.Referrers(context.Background(), host+"/x", subject, "")
	if err != nil || len(refs) != 2 || refs[0].Digest != d1 || refs[1].Digest != d2 {
		t.Fatalf("Referrers = %v, %v", refs, err)
	}
	refs, err = c.Referrers(context.Background(), host+"/x", subject, "b")
	if err != nil || len(refs) != 1 || refs[0].Digest != d2 {
		t.Fatalf("Referrers(b) = %v, %v", refs, err)
	}
	_, err = fastClient(WithLimits(Limits{MaxReferrers: 1})).Referrers(context.Background(), host+"/x", subject, "")
	var le *errs.LimitError
	if !errors.As(err, &le) || le.Limit != "referrers count (1)" {
		t.Fatalf("MaxReferrers: %v", err)
	}
}

// A registry's error body, status line and headers are remote text: what
// reaches an error message must not carry terminal controls (ESC, the
// one-byte CSI U+009B, other C1 controls, bidi overrides).
func TestHostileErrorTextEscaped(t *testing.T) {
	evil := "\x1b]0;pwned\x07\x1b[2J \u009b31m \u0085 \u202eevil\u202c \u2066x\u2069 \u200f\u061c"
	host := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.Contains(r.URL.Path, "/tags/list"):
			w.Header().Set("Link", "<http://evil\u202e.example/v2/x/tags/list?n=1>; rel=\"next\"")
			fmt.Fprint(w, `{"tags":["a"]}`)
		case strings.Contains(r.URL.Path, "/manifests/json"):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			m, _ := json.Marshal(evil)
			fmt.Fprintf(w, `{"errors":[{"code":"DENIED","message":%s}]}`, m)
		default:
			w.WriteHeader(http.StatusTeapot)
			fmt.Fprint(w, evil)
		}
	})
	c := fastClient()
	ctx := context.Background()
	var got []error
	_, _, err := c.FetchManifest(ctx, host+"/x:raw")
	got = append(got, err)
	_, _, err = c.FetchManifest(ctx, host+"/x:json")
	got = append(got, err)
	_, err = c.ListTags(ctx, host+"/x")
	got = append(got, err)
	for i, err := range got {
		if err == nil {
			t.Fatalf("case %d: no error", i)
		}
		msg := err.Error()
		for _, r := range msg {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f || r == 0x061c {
				t.Errorf("case %d: error carries %U raw: %q", i, r, msg)
				break
			}
		}
	}
	if !strings.Contains(got[0].Error(), `\x1b`) || !strings.Contains(got[0].Error(), `\u009b`) {
		t.Errorf("escaped body not shown: %v", got[0])
	}
}
