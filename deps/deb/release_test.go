package deb

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/errs"
)

func fetchRaw(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("fetching %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("fetching %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTrixieInReleaseVerifies(t *testing.T) {
	requireArchive(t)
	rel, err := FetchRelease(context.Background(), Source{Suite: "trixie", Arch: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if rel.Codename != "trixie" || rel.Suite != "stable" {
		t.Errorf("suite %q codename %q", rel.Suite, rel.Codename)
	}
	if !rel.ValidUntil.IsZero() || rel.Expired {
		t.Errorf("trixie has no Valid-Until, got %v (expired %v)", rel.ValidUntil, rel.Expired)
	}
	if !rel.NoArchAllPackages || !rel.AcquireByHash {
		t.Errorf("NoArchAllPackages %v AcquireByHash %v, want both", rel.NoArchAllPackages, rel.AcquireByHash)
	}
	if len(rel.Signer) != 40 || !deps.IsSHA256(rel.SHA256) || rel.Date.IsZero() || rel.SignedAt.IsZero() {
		t.Errorf("signer %q sha256 %q date %v signed %v", rel.Signer, rel.SHA256, rel.Date, rel.SignedAt)
	}
	if f, ok := rel.Files["main/binary-amd64/Packages.xz"]; !ok || f.Size == 0 {
		t.Errorf("no main/binary-amd64/Packages.xz in the SHA256 list")
	}
	t.Logf("trixie: dated %s, signed by %s (%s) key %s", rel.Date, rel.Signer, rel.SignerName, rel.SigningKey)

	// Pinning the signer: the fingerprint just seen passes, another fails.
	if _, err := FetchRelease(context.Background(), Source{Suite: "trixie", Arch: "amd64", SignedBy: []string{rel.SigningKey}}); err != nil {
		t.Errorf("SignedBy the signing key: %v", err)
	}
	_, err = FetchRelease(context.Background(), Source{Suite: "trixie", Arch: "amd64", SignedBy: []string{strings.Repeat("AB", 20)}})
	if !errs.IsVerification(err) || !strings.Contains(err.Error(), "not by one of") {
		t.Errorf("SignedBy another key: %v", err)
	}
}

func TestSidInReleaseExpiry(t *testing.T) {
	requireArchive(t)
	raw := fetchRaw(t, DefaultMirror+"/dists/sid/InRelease")
	kr, err := LoadKeyring(DefaultKeyring)
	if err != nil {
		t.Fatal(err)
	}
	src := Source{Suite: "sid", Arch: "amd64"}
	// Learn the window from the file itself, then check both sides of it.
	rel, err := VerifyRelease(raw, "sid", Source{Suite: "sid", Arch: "amd64", AllowExpired: true}, kr, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if rel.ValidUntil.IsZero() {
		t.Fatal("sid's InRelease has no Valid-Until")
	}
	t.Logf("sid: dated %s, valid until %s", rel.Date, rel.ValidUntil)
	if r, err := VerifyRelease(raw, "sid", src, kr, rel.ValidUntil.Add(-time.Minute)); err != nil || r.Expired {
		t.Errorf("inside the window: %v (expired %v)", err, r != nil && r.Expired)
	}
	_, err = VerifyRelease(raw, "sid", src, kr, rel.ValidUntil.Add(time.Second))
	var ve *errs.VerificationError
	if !errors.As(err, &ve) || ve.Check != "valid-until" || !strings.Contains(err.Error(), "allow-expired") || !strings.Contains(err.Error(), "freeze attack") {
		t.Fatalf("expired index: got %v, want a valid-until verification error that says how to opt out", err)
	}
	r, err := VerifyRelease(raw, "sid", Source{Suite: "sid", Arch: "amd64", AllowExpired: true}, kr, rel.ValidUntil.Add(time.Second))
	if err != nil || !r.Expired {
		t.Fatalf("with AllowExpired: %v (expired %v)", err, r != nil && r.Expired)
	}
	// A Release from the future is refused (its signature, made after
	// Date, is from the future too, and go-crypto says so first).
	if _, err := VerifyRelease(raw, "sid", src, kr, rel.Date.Add(-time.Hour)); !errors.As(err, &ve) || (ve.Check != "date" && ve.Check != "signature") {
		t.Errorf("not yet valid: %v", err)
	}
	// And today, through the network path: refused by default (the fact
	// noted on 2026-12-01), accepted and reported with the opt-out.
	if time.Now().After(rel.ValidUntil) {
		if _, err := FetchRelease(context.Background(), src); !errors.As(err, &ve) || ve.Check != "valid-until" {
			t.Errorf("FetchRelease(sid) today: %v, want refused as expired", err)
		}
		r, err := FetchRelease(context.Background(), Source{Suite: "sid", Arch: "amd64", AllowExpired: true})
		if err != nil || !r.Expired {
			t.Errorf("FetchRelease(sid, AllowExpired): %v", err)
		}
	}
}

func TestTamperedInReleaseRefused(t *testing.T) {
	requireArchive(t)
	raw := fetchRaw(t, DefaultMirror+"/dists/trixie/InRelease")
	kr, err := LoadKeyring(DefaultKeyring)
	if err != nil {
		t.Fatal(err)
	}
	src := Source{Suite: "trixie", Arch: "amd64"}
	if _, err := VerifyRelease(raw, "trixie", src, kr, time.Now()); err != nil {
		t.Fatalf("untampered: %v", err)
	}
	// One byte of the signed text: a digit of the Packages.xz sha256.
	i := bytes.Index(raw, []byte("main/binary-amd64/Packages.xz"))
	j := bytes.LastIndex(raw[:i], []byte("\n ")) + 2
	bad := bytes.Clone(raw)
	if bad[j] == '0' {
		bad[j] = '1'
	} else {
		bad[j] = '0'
	}
	_, err = VerifyRelease(bad, "trixie", src, kr, time.Now())
	var ve *errs.VerificationError
	if !errors.As(err, &ve) || ve.Check != "signature" {
		t.Errorf("one byte changed: %v, want a signature verification error", err)
	}
	// Text outside the signed message.
	if _, err := VerifyRelease(append(bytes.Clone(raw), []byte("Codename: evil\n")...), "trixie", src, kr, time.Now()); !errors.As(err, &ve) {
		t.Errorf("text after the signature: %v", err)
	}
	if _, err := VerifyRelease(append([]byte("Codename: evil\n\n"), raw...), "trixie", src, kr, time.Now()); !errors.As(err, &ve) {
		t.Errorf("text before the message: %v", err)
	}
	// A keyring without the archive's keys.
	other, err := LoadKeyring("/usr/share/keyrings/debian-archive-bullseye-stable.gpg")
	if err == nil {
		if _, err := VerifyRelease(raw, "trixie", src, other, time.Now()); !errors.As(err, &ve) || ve.Check != "signature" {
			t.Errorf("foreign keyring: %v", err)
		}
	}
	// The right Release served under another suite's name.
	if _, err := VerifyRelease(raw, "sid", Source{Suite: "sid", Arch: "amd64"}, kr, time.Now()); !errors.As(err, &ve) || ve.Check != "suite" {
		t.Errorf("trixie's Release as sid: %v", err)
	}
}

// mirror serves a copy of trixie's InRelease and main/binary-amd64
// Packages.xz from memory, with by-hash paths missing (so the fallback to
// the plain name is exercised), and counts requests.
func mirror(t *testing.T, inRelease, packagesXZ []byte) (*httptest.Server, *int) {
	return mirrorFiles(t, map[string][]byte{"InRelease": inRelease, "main/binary-amd64/Packages.xz": packagesXZ})
}

// mirrorFiles serves files under /debian/dists/trixie/.
func mirrorFiles(t *testing.T, files map[string][]byte) (*httptest.Server, *int) {
	n := new(int)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*n++
		b, ok := files[strings.TrimPrefix(r.URL.Path, "/debian/dists/trixie/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv, n
}

func TestTamperedPackagesRefused(t *testing.T) {
	requireArchive(t)
	inRelease := fetchRaw(t, DefaultMirror+"/dists/trixie/InRelease")
	xzBytes := fetchRaw(t, DefaultMirror+"/dists/trixie/main/binary-amd64/Packages.xz")

	// The faithful copy works, and a second Open reads the cache.
	srv, hits := mirror(t, inRelease, xzBytes)
	cache := t.TempDir()
	src := Source{Mirror: srv.URL + "/debian", Suite: "trixie", Arch: "amd64"}
	ix, err := Open(context.Background(), src, WithCacheDir(cache))
	if err != nil {
		t.Fatalf("faithful mirror: %v", err)
	}
	if ix.Len() < 50000 || len(ix.Lookup("libc6")) == 0 {
		t.Fatalf("index has %d entries", ix.Len())
	}
	first := *hits
	ix2, err := Open(context.Background(), src, WithCacheDir(cache))
	if err != nil {
		t.Fatalf("from cache: %v", err)
	}
	if !reflect.DeepEqual(ix.Record(), ix2.Record()) || ix2.Len() != ix.Len() {
		t.Errorf("the cache changed the record:\n%+v\n%+v", ix.Record(), ix2.Record())
	}
	if *hits != first+1 {
		t.Errorf("second Open made %d requests, want 1 (InRelease only)", *hits-first)
	}

	bad := bytes.Clone(xzBytes)
	bad[len(bad)/2] ^= 0x01
	srv2, _ := mirror(t, inRelease, bad)
	_, err = Open(context.Background(), Source{Mirror: srv2.URL + "/debian", Suite: "trixie", Arch: "amd64"}, WithCacheDir(t.TempDir()))
	var he *deps.HashError
	if !errors.As(err, &he) || !errors.Is(err, errs.ErrHashMismatch) {
		t.Fatalf("tampered Packages.xz: %v, want a HashError", err)
	}
	rel, _ := VerifyRelease(inRelease, "trixie", src, mustKeyring(t), time.Now())
	want := rel.Files["main/binary-amd64/Packages.xz"].SHA256
	msg := err.Error()
	for _, s := range []string{"main/binary-amd64/Packages.xz", want, "got sha256:"} {
		if !strings.Contains(msg, s) {
			t.Errorf("error %q does not name %q", msg, s)
		}
	}
	if strings.Count(msg, "sha256:") < 2 {
		t.Errorf("error %q does not give both hashes", msg)
	}
	t.Log(msg)
}

func mustKeyring(t *testing.T) openpgpKeyRing {
	kr, err := LoadKeyring(DefaultKeyring)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestArmoredKeyring(t *testing.T) {
	requireArchive(t)
	kr, err := LoadKeyring(DefaultKeyring)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range kr {
		if err := e.Serialize(w); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	path := filepath.Join(t.TempDir(), "debian.asc")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	rel, err := FetchRelease(context.Background(), Source{Suite: "trixie", Arch: "amd64", Keyring: path})
	if err != nil {
		t.Fatalf("with an armored keyring: %v", err)
	}
	if rel.Signer == "" {
		t.Error("no signer")
	}
	if _, err := LoadKeyring(filepath.Join(t.TempDir(), "missing.gpg")); !errors.Is(err, errs.ErrKey) {
		t.Errorf("missing keyring: %v", err)
	}
}

func TestPackagesGzFallback(t *testing.T) {
	requireArchive(t)
	inRelease := fetchRaw(t, DefaultMirror+"/dists/trixie/InRelease")
	gz := fetchRaw(t, DefaultMirror+"/dists/trixie/main/binary-amd64/Packages.gz")
	srv, _ := mirrorFiles(t, map[string][]byte{"InRelease": inRelease, "main/binary-amd64/Packages.gz": gz})
	ix, err := Open(context.Background(), Source{Mirror: srv.URL + "/debian", Suite: "trixie", Arch: "amd64"})
	if err != nil {
		t.Fatalf("with only Packages.gz on the mirror: %v", err)
	}
	if ix.Files[0].Path != "main/binary-amd64/Packages.gz" || ix.Len() < 50000 {
		t.Errorf("files %+v, %d entries", ix.Files, ix.Len())
	}
	// Neither: the error names what was tried.
	srv2, _ := mirrorFiles(t, map[string][]byte{"InRelease": inRelease})
	_, err = Open(context.Background(), Source{Mirror: srv2.URL + "/debian", Suite: "trixie", Arch: "amd64"})
	if err == nil || !strings.Contains(err.Error(), "Packages.xz, main/binary-amd64/Packages.gz") || !errors.Is(err, errs.ErrDependency) {
		t.Errorf("no Packages file: %v", err)
	}
}
