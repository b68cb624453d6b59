package gem

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/errs"
)

// gemServer serves files as a gem source (/gems/NAME.gem) and counts
// requests.
type gemServer struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
}

func newGemServer(t *testing.T, files map[string][]byte) *gemServer {
	s := &gemServer{hits: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		s.mu.Unlock()
		name, ok := strings.CutPrefix(r.URL.Path, "/gems/")
		b, found := files[name]
		if !ok || !found {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestPin(t *testing.T) {
	ctx := context.Background()
	files := map[string][]byte{
		"rack-3.1.8.gem":    []byte("rack gem bytes"),
		"puma-6.4.0.gem":    []byte("puma gem bytes"),
		"nio4r-2.7.4.gem":   []byte("nio4r gem bytes"),
		"sidekiq-7.3.0.gem": []byte("sidekiq gem bytes"),
	}
	srv := newGemServer(t, files)
	gemfile := "source 'https://rubygems.org'\ngem 'puma'\ngem 'rack'\n"
	lock := `GEM
  remote: https://rubygems.org/
  specs:
    nio4r (2.7.4)
    puma (6.4.0)
      nio4r (~> 2.0)
    rack (3.1.8)

PLATFORMS
  ruby

DEPENDENCIES
  puma
  rack

CHECKSUMS
  nio4r (2.7.4)
  puma (6.4.0) sha256=` + sha(files["puma-6.4.0.gem"]) + `
  rack (3.1.8) sha256=` + sha(files["rack-3.1.8.gem"]) + `

BUNDLED WITH
   2.6.2
`
	fsys := tree("Gemfile", gemfile, "Gemfile.lock", lock)
	s, err := Resolve(ctx, fsys, "Gemfile.lock", WithMirror("https://rubygems.org/", srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.Unhashed(), " "); got != "nio4r-2.7.4" {
		t.Fatalf("unhashed = %s", got)
	}
	if err := s.Validate(); err == nil || !errors.Is(err, errs.ErrDependency) || !strings.Contains(err.Error(), "nio4r") {
		t.Errorf("Validate before Pin: %v", err)
	}
	if err := s.Pin(ctx, &deps.Fetcher{}, PinUnhashed); err != nil {
		t.Fatal(err)
	}
	if srv.hits["/gems/nio4r-2.7.4.gem"] != 1 || srv.hits["/gems/puma-6.4.0.gem"] != 0 {
		t.Errorf("PinUnhashed fetched %v", srv.hits)
	}
	for _, g := range s.Gems {
		if g.SHA256 != sha(files[g.Path]) {
			t.Errorf("%s sha256 = %s", g.Path, g.SHA256)
		}
	}
	if err := s.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if err := s.Pin(ctx, nil, PinAll); err != nil {
		t.Fatal(err)
	}
	if srv.hits["/gems/puma-6.4.0.gem"] != 1 || srv.hits["/gems/rack-3.1.8.gem"] != 1 {
		t.Errorf("PinAll fetched %v", srv.hits)
	}
	if pu, _ := s.Gem("puma"); pu.Integrity == "" || pu.Checksum != sha(files["puma-6.4.0.gem"]) {
		t.Errorf("puma = %+v", pu)
	} else if in, err := deps.ParseSRI(pu.Integrity, "test"); err != nil || func() string { h, _ := in.SHA256(); return h }() != pu.Checksum {
		t.Errorf("puma integrity %q does not spell its checksum: %v", pu.Integrity, err)
	}
	if n, _ := s.Gem("nio4r"); n.Size != int64(len(files["nio4r-2.7.4.gem"])) {
		t.Errorf("nio4r size = %d", n.Size)
	}

	// CHECKSUMS that the download does not match: a *deps.HashError
	// naming the gem
	bad := strings.Replace(lock, sha(files["puma-6.4.0.gem"]), sha([]byte("something else")), 1)
	s, err = Resolve(ctx, tree("Gemfile", gemfile, "Gemfile.lock", bad), "Gemfile.lock", WithMirror("https://rubygems.org/", srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	before := s.Gems[1]
	err = s.Pin(ctx, &deps.Fetcher{}, PinAll)
	var he *deps.HashError
	if !errors.As(err, &he) || !errors.Is(err, errs.ErrHashMismatch) {
		t.Fatalf("checksum mismatch: %v", err)
	}
	if he.Package != "puma@6.4.0" || he.Source != "Gemfile.lock CHECKSUMS (sha256)" || he.Actual != "sha256:"+sha(files["puma-6.4.0.gem"]) || !strings.Contains(err.Error(), srv.URL+"/gems/puma-6.4.0.gem") {
		t.Errorf("hash error = %+v", he)
	}
	if s.Gems[1].SHA256 != before.SHA256 || s.Gems[0].SHA256 != "" {
		t.Error("a failed Pin changed the set")
	}

	// a gem the source does not have: ErrDependency naming gem and URL
	delete(files, "nio4r-2.7.4.gem")
	s, err = Resolve(ctx, fsys, "Gemfile.lock", WithMirror("https://rubygems.org/", srv.URL+"/"))
	if err != nil {
		t.Fatal(err)
	}
	err = s.Pin(ctx, &deps.Fetcher{}, PinUnhashed)
	if !errors.Is(err, errs.ErrDependency) || !strings.Contains(err.Error(), "package nio4r@2.7.4") || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "/gems/nio4r-2.7.4.gem") {
		t.Errorf("404: %v", err)
	}
}
