package deb

import (
	"context"
	"github.com/ProtonMail/go-crypto/openpgp"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"
)

// The facts these tests rely on (checked 2026-12-01): trixie's InRelease
// has no Valid-Until; sid's is dated 2026-10-30 with Valid-Until
// 2026-11-06. Tests that need the archive skip without the network, and
// fail instead under VMBUILD_INTEGRATION=1.

var testCacheDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vmbuild-deb-test-")
	if err != nil {
		panic(err)
	}
	testCacheDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var netOnce struct {
	sync.Once
	err error
}

// requireArchive skips (or fails under VMBUILD_INTEGRATION=1) when
// Debian's archive cannot be reached.
func requireArchive(t testing.TB) {
	t.Helper()
	netOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodHead, DefaultMirror+"/dists/trixie/InRelease", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = &net.AddrError{Err: resp.Status, Addr: DefaultMirror}
			}
		}
		netOnce.err = err
	})
	if netOnce.err != nil {
		if os.Getenv("VMBUILD_INTEGRATION") == "1" {
			t.Fatalf("Debian's archive is not reachable: %v", netOnce.err)
		}
		t.Skipf("Debian's archive is not reachable (set VMBUILD_INTEGRATION=1 to make this a failure): %v", netOnce.err)
	}
	if _, err := os.Stat(DefaultKeyring); err != nil {
		if os.Getenv("VMBUILD_INTEGRATION") == "1" {
			t.Fatalf("no Debian archive keyring: %v (apt-get install debian-archive-keyring)", err)
		}
		t.Skipf("no Debian archive keyring: %v (apt-get install debian-archive-keyring)", err)
	}
}

var indexes struct {
	sync.Mutex
	m map[string]*Index
}

// openIndex opens (once per test binary) suite main for amd64, with an
// expired index allowed.
func openIndex(t testing.TB, suite string) *Index {
	t.Helper()
	requireArchive(t)
	indexes.Lock()
	defer indexes.Unlock()
	if ix := indexes.m[suite]; ix != nil {
		return ix
	}
	ix, err := Open(context.Background(), Source{Suite: suite, Arch: "amd64", AllowExpired: true}, WithCacheDir(testCacheDir))
	if err != nil {
		t.Fatalf("opening %s: %v", suite, err)
	}
	if indexes.m == nil {
		indexes.m = map[string]*Index{}
	}
	indexes.m[suite] = ix
	return ix
}

type openpgpKeyRing = interface {
	KeysById(id uint64) []openpgp.Key
	KeysByIdUsage(id uint64, requiredUsage byte) []openpgp.Key
	DecryptionKeys() []openpgp.Key
}
