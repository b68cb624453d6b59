package sign

import (
	"os"
	"path/filepath"
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
