package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/testenv"
	"github.com/vmbuild/vmbuild/registry"
	"github.com/vmbuild/vmbuild/sign"
)

// liar is a registry that lies: an httptest server in front of a real
// registry that answers some requests itself (lie returns true) and
// passes the others through.
type liar struct {
	real  *testenv.Registry
	host  string // the liar's "127.0.0.1:PORT"
	c     *registry.Client
	s     *sign.Signer
	image Target // an image signed and attested for real, as seen through the liar
}

func newLiar(t *testing.T, lie func(w http.ResponseWriter, r *http.Request, l *liar) bool) *liar {
	t.Helper()
	l := &liar{real: testenv.StartRegistry(t), c: registry.New(), s: newSigner(t)}
	u, _ := url.Parse(l.real.URL)
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if lie(w, r, l) {
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	l.host = strings.TrimPrefix(srv.URL, "http://")
	// Publish for real, then look at it through the liar.
	tg := pushTinyImage(t, l.c, l.real.Ref("acme/app"), "v1")
	signAndAttest(t, l.c, tg, l.s, stmtOf(t, provInput(tg.Repository, tg.Digest)))
	l.image = Target{Repository: l.host + "/acme/app", Digest: tg.Digest}
	return l
}

// sigTag is the path suffix of a cosign tag of the liar's image.
func (l *liar) sigTag(suffix string) string {
	return "/manifests/" + string(l.image.Digest.Algorithm()) + "-" + l.image.Digest.Encoded() + "." + suffix
}

// measure runs f and returns the bytes it (and everything else in the
// process meanwhile) allocated, and the time it took.
func measure(f func()) (uint64, time.Duration) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	f()
	el := time.Since(start)
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, el
}

const memBound = 64 << 20

// verifyHostile verifies the liar's image and checks that the result is
// an error that is not a verification (transport class, exit 2), never
// "verified", within the memory bound and the deadline.
func verifyHostile(t *testing.T, l *liar, timeout time.Duration, opts ...Option) error {
	t.Helper()
	v := mustVerifier(t, append([]Option{WithPublicKeys(l.s.Public()), WithTimeout(timeout),
		WithRegistryOptions(registry.WithRetry(2, time.Millisecond))}, opts...)...)
	var rep *Report
	var err error
	alloc, el := measure(func() { rep, err = v.Verify(context.Background(), l.image, testPolicy()) })
	t.Logf("allocated %s in %s: %v", registry.FormatBytes(int64(alloc)), el.Round(time.Millisecond), err)
	if err == nil || (rep != nil && rep.Verified) {
		t.Fatal("a lying registry produced a verified result")
	}
	if errs.IsVerification(err) {
		t.Fatalf("a lying registry's answer is a verification failure, want a transport-class error: %v", err)
	}
	if alloc > memScale*memBound {
		t.Fatalf("allocated %s, more than %s", registry.FormatBytes(int64(alloc)), registry.FormatBytes(memBound))
	}
	if el > timeout+2*time.Second {
		t.Fatalf("took %s, deadline %s", el, timeout)
	}
	if rep != nil {
		failed := 0
		for _, c := range rep.Checks {
			if c.Status() == "FAIL" {
				failed++
				if !strings.Contains(c.Reason, "could not decide") {
					t.Fatalf("check %s: %s", c.Name, c.Reason)
				}
			}
		}
		if failed != 1 {
			t.Fatalf("%d failed checks, want 1", failed)
		}
	}
	return err
}

func wantLimit(t *testing.T, err error, name string) {
	t.Helper()
	var le *errs.LimitError
	if !errors.As(err, &le) || !errors.Is(err, errs.ErrLimitExceeded) {
		t.Fatalf("want *errs.LimitError %q, got %T %v", name, err, err)
	}
	if le.Limit != name {
		t.Fatalf("limit named %q, want %q (%v)", le.Limit, name, err)
	}
	if !strings.Contains(err.Error(), "limit exceeded: "+name) {
		t.Fatalf("message does not say which limit: %v", err)
	}
}

// TestLiarHonest: the proxy itself works (the image verifies through it).
func TestLiarHonest(t *testing.T) {
	l := newLiar(t, func(http.ResponseWriter, *http.Request, *liar) bool { return false })
	v := mustVerifier(t, WithPublicKeys(l.s.Public()))
	rep, err := v.Verify(context.Background(), l.image, testPolicy())
	wantVerified(t, rep, err)
}

func TestLiarManifestDigest(t *testing.T) {
	// The image manifest served has another sha256 than asked for.
	l := newLiar(t, func(w http.ResponseWriter, r *http.Request, l *liar) bool {
		if !strings.HasSuffix(r.URL.Path, "/manifests/"+l.image.Digest.String()) {
			return false
		}
		_, other, _, _, _, _ := tinyImage("evil")
		w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
		w.Header().Set("Docker-Content-Digest", l.image.Digest.String())
		w.Header().Set("Content-Length", strconv.Itoa(len(other)))
		if r.Method == http.MethodGet {
			w.Write(other)
		}
		return true
	})
	err := verifyHostile(t, l, 10*time.Second)
	if !errors.Is(err, errs.ErrRegistry) || !strings.Contains(err.Error(), "content has digest") {
		t.Fatalf("want a digest mismatch, got %v", err)
	}
}

func TestLiarSignatureBlob(t *testing.T) {
	// The signature payload blob is swapped for another one (same size):
	// caught by the blob digest check.
	var payload digest.Digest
	l := newLiar(t, func(w http.ResponseWriter, r *http.Request, l *liar) bool {
		if payload == "" || !strings.HasSuffix(r.URL.Path, "/blobs/"+payload.String()) {
			return false
		}
		w.Header().Set("Content-Length", "10")
		w.Write([]byte("0123456789"))
		return true
	})
	sigs, err := sign.FetchSignatures(context.Background(), regStore(t, l.c, l.real.Ref("acme/app")), l.image.Digest)
	if err != nil {
		t.Fatal(err)
	}
	payload = digest.FromBytes(sigs[0].Payload)
	err = verifyHostile(t, l, 10*time.Second)
	if !errors.Is(err, errs.ErrRegistry) {
		t.Fatalf("want a registry error, got %v", err)
	}
}

// manyLayers is a .sig/.att manifest with n layers (no blobs behind them).
func manyLayers(n int, mediaType string) []byte {
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromString("{}"), Size: 2}}
	for i := 0; i < n; i++ {
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromString(strconv.Itoa(i)), Size: 200,
			Annotations: map[string]string{sign.SignatureAnnotation: "MEUCIQDx" + strings.Repeat("A", 88)}})
	}
	b, _ := json.Marshal(m)
	return b
}

func serveJSON(w http.ResponseWriter, r *http.Request, mediaType string, b []byte) {
	w.Header().Set("Content-Type", mediaType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	if r.Method == http.MethodGet {
		w.Write(b)
	}
}

func TestLiar10000Signatures(t *testing.T) {
	sig := manyLayers(10000, sign.SimpleSigningMediaType)
	t.Logf(".sig manifest: %s", registry.FormatBytes(int64(len(sig))))
	l := newLiar(t, func(w http.ResponseWriter, r *http.Request, l *liar) bool {
		if !strings.HasSuffix(r.URL.Path, l.sigTag("sig")) {
			return false
		}
		serveJSON(w, r, ocispec.MediaTypeImageManifest, sig)
		return true
	})
	wantLimit(t, verifyHostile(t, l, 30*time.Second), "signatures per image (100)")
}

func TestLiar10000Attestations(t *testing.T) {
	att := manyLayers(10000, sign.DSSEMediaType)
	l := newLiar(t, func(w http.ResponseWriter, r *http.Request, l *liar) bool {
		if !strings.HasSuffix(r.URL.Path, l.sigTag("att")) {
			return false
		}
		serveJSON(w, r, ocispec.MediaTypeImageManifest, att)
		return true
	})
	wantLimit(t, verifyHostile(t, l, 30*time.Second), "attestations per image (100)")
}

func TestLiar10000Referrers(t *testing.T) {
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	for i := 0; i < 10000; i++ {
		idx.Manifests = append(idx.Manifests, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: sign.BundleMediaType,
			Digest: digest.FromString(strconv.Itoa(i)), Size: 500})
	}
	body, _ := json.Marshal(idx)
	t.Logf("referrers index: %s", registry.FormatBytes(int64(len(body))))
	l := newLiar(t, func(w http.ResponseWriter, r *http.Request, l *liar) bool {
		if !strings.Contains(r.URL.Path, "/referrers/") {
			return false
		}
		serveJSON(w, r, ocispec.MediaTypeImageIndex, body)
		return true
	})
	wantLimit(t, verifyHostile(t, l, 30*time.Second), "referrers count (200)")
}

// endless writes chunk until the client goes away, or n bytes when n > 0.
func endless(w http.ResponseWriter, r *http.Request, n int64, pause time.Duration) {
	chunk := bytes.Repeat([]byte(`{"a":"`), 64<<10/6)
	fl, _ := w.(http.Flusher)
	var sent int64
	for n <= 0 || sent < n {
		c := chunk
		if pause > 0 {
			c = c[:1]
		}
		if _, err := w.Write(c); err != nil {
			return
		}
		sent += int64(len(c))
		if pause > 0 {
			fl.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(pause):
			}
		}
	}
}

func TestLiarHugeManifest(t *testing.T) {
	for _, withLength := range []bool{true, false} {
		t.Run(fmt.Sprintf("content-length=%v", withLength), func(t *testing.T) {
			l := newLiar(t, func(w http.ResponseWriter, r *http.Request, l *liar) bool {
				if !strings.HasSuffix(r.URL.Path, "/manifests/"+l.image.Digest.String()) {
					return false
				}
				w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
				if withLength {
					w.Header().Set("Content-Length", strconv.Itoa(50<<20))
				}
				if r.Method == http.MethodGet {
					endless(w, r, 50<<20, 0)
				}
				return true
			})
			wantLimit(t, verifyHostile(t, l, 30*time.Second), "manifest size (4 MiB)")
		})
	}
	// The same on the .sig manifest.
	l := newLiar(t, func(w http.ResponseWriter, r *http.Request, l *liar) bool {
		if !strings.HasSuffix(r.URL.Path, l.sigTag("sig")) {
			return false
		}
		w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
		if r.Method == http.MethodGet {
			endless(w, r, 50<<20, 0)
		}
		return true
	})
	wantLimit(t, verifyHostile(t, l, 30*time.Second), "manifest size (4 MiB)")
}

func TestLiarEndlessBody(t *testing.T) {
	// An endless manifest body: cut at the manifest limit.
	l := newLiar(t, func(w http.ResponseWriter, r *http.Request, l *liar) bool {
		if !strings.HasSuffix(r.URL.Path, l.sigTag("att")) {
			return false
		}
		w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
		if r.Method == http.MethodGet {
			endless(w, r, 0, 0)
		}
		return true
	})
	wantLimit(t, verifyHostile(t, l, 30*time.Second), "manifest size (4 MiB)")

	// An endless attestation blob: cut at its size or the attestation limit.
	var att digest.Digest
	l = newLiar(t, func(w http.ResponseWriter, r *http.Request, l *liar) bool {
		if att == "" || !strings.HasSuffix(r.URL.Path, "/blobs/"+att.String()) {
			return false
		}
		if r.Method == http.MethodGet {
			endless(w, r, 0, 0)
		}
		return true
	})
	atts, err := sign.FetchAttestations(context.Background(), regStore(t, l.c, l.real.Ref("acme/app")), l.image.Digest)
	if err != nil {
		t.Fatal(err)
	}
	att = digest.FromBytes(atts[0].Envelope)
	verifyHostile(t, l, 30*time.Second)

	// A body that trickles forever: the total deadline ends it.
	l = newLiar(t, func(w http.ResponseWriter, r *http.Request, l *liar) bool {
		if !strings.HasSuffix(r.URL.Path, "/manifests/"+l.image.Digest.String()) {
			return false
		}
		w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
		if r.Method == http.MethodGet {
			endless(w, r, 0, 20*time.Millisecond)
		}
		return true
	})
	wantLimit(t, verifyHostile(t, l, 2*time.Second), "total deadline (2s)")

	// A registry that never answers.
	l = newLiar(t, func(w http.ResponseWriter, r *http.Request, l *liar) bool {
		if !strings.Contains(r.URL.Path, "/referrers/") {
			return false
		}
		<-r.Context().Done()
		return true
	})
	wantLimit(t, verifyHostile(t, l, 2*time.Second), "total deadline (2s)")
}

func TestTotalByteBudget(t *testing.T) {
	// Three 7 MiB attestations (each within the 16 MiB limit, all signed
	// for real) against a 16 MiB budget.
	reg := testenv.StartRegistry(t)
	c := registry.New()
	s := newSigner(t)
	tg := pushTinyImage(t, c, reg.Ref("acme/app"), "big")
	signAndAttest(t, c, tg, s, nil)
	var envs [][]byte
	for i := 0; i < 3; i++ {
		payload := []byte(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", 5<<20)))
		envs = append(envs, envelopeFor(t, s, sign.InTotoPayloadType, payload))
	}
	pushAttestations(t, c, tg, envs...)
	v := mustVerifier(t, WithPublicKeys(s.Public()), WithMaxTotalBytes(16<<20))
	var err error
	alloc, _ := measure(func() { _, err = v.Verify(context.Background(), tg, testPolicy()) })
	wantLimit(t, err, "total bytes read (16 MiB)")
	t.Logf("allocated %s", registry.FormatBytes(int64(alloc)))
	if alloc > memScale*memBound {
		t.Fatalf("allocated %s", registry.FormatBytes(int64(alloc)))
	}
	// The default budget reads them (and refuses them as non-statements).
	v = mustVerifier(t, WithPublicKeys(s.Public()))
	rep, err := v.Verify(context.Background(), tg, testPolicy())
	wantRefused(t, rep, err, CheckStatement)
}
