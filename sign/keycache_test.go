package sign

import (
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyCache(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	priv, _, err := GenerateKeyPair([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := CachedPublicKey(dir, priv); ok {
		t.Fatal("a key never decrypted is cached")
	}
	s, err := LoadPrivateKey(priv, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if err := CachePublicKey(dir, priv, s); err != nil {
		t.Fatal(err)
	}
	pub, ok := CachedPublicKey(dir, priv)
	if !ok || KeyHint(pub) != s.Hint() {
		t.Fatalf("cached public key %v, %v", pub, ok)
	}
	// Another key file (even one byte) has no entry.
	other := append([]byte(nil), priv...)
	other[len(other)-2] ^= 1
	if _, ok := CachedPublicKey(dir, other); ok {
		t.Fatal("a different key file hit the cache")
	}
	// Idempotent, and nothing but the entry is left.
	if err := CachePublicKey(dir, priv, s); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("cache holds %d files", len(ents))
	}
	if _, ok := CachedPublicKey("", priv); ok {
		t.Fatal("no directory, no cache")
	}
}

// TestLoadKeyAsync: a key never decrypted is decrypted in the background
// and its public key remembered; the next load of the same file knows the
// public key without decrypting; a wrong password fails Load, naming the
// file, and remembers nothing.
func TestLoadKeyAsync(t *testing.T) {
	priv, _, err := GenerateKeyPair([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bad := LoadKeyAsync("cosign.key", priv, []byte("wrong"), dir, nil)
	if _, err := bad.Load(); err == nil || !strings.Contains(err.Error(), "cosign.key") {
		t.Fatalf("wrong password: %v", err)
	}
	first := LoadKeyAsync("cosign.key", priv, []byte("pw"), dir, nil)
	if first.Public != nil {
		t.Fatal("a key never decrypted has a remembered public key")
	}
	s, err := first.Load()
	if err != nil {
		t.Fatal(err)
	}
	if again, err := first.Load(); err != nil || again != s {
		t.Fatal("Load decrypted twice")
	}
	second := LoadKeyAsync("cosign.key", priv, []byte("pw"), dir, nil)
	if second.Public == nil || !s.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(second.Public) {
		t.Fatalf("the second load does not know the public key: %v", second.Public)
	}
	if _, err := FailedKey(errors.New("boom")).Load(); err == nil || err.Error() != "boom" {
		t.Fatalf("FailedKey: %v", err)
	}
}
