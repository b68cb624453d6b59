package sign

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// Decrypting a cosign private key runs scrypt, a few hundred milliseconds
// of CPU by design. A rebuild whose image is already signed and attested
// by the key needs only its public key, to recognise its own signatures.
// The key cache remembers the public key of an encrypted private key file,
// by the sha256 of the file's bytes, once the key has been decrypted.
//
// A public key is no secret. A wrong entry (the cache directory is the
// user's own) can only make a publish believe that an image is signed
// when it is not, which verification then refuses; it can never make
// anything accept a signature. An entry is written only after a
// successful decryption of exactly those bytes.

func keyCachePath(dir string, keyFile []byte) string {
	sum := sha256.Sum256(keyFile)
	return filepath.Join(dir, hex.EncodeToString(sum[:])+".pub")
}

// CachedPublicKey returns the public key remembered in dir for the
// encrypted private key file keyFile, if any.
func CachedPublicKey(dir string, keyFile []byte) (crypto.PublicKey, bool) {
	if dir == "" {
		return nil, false
	}
	b, err := os.ReadFile(keyCachePath(dir, keyFile))
	if err != nil {
		return nil, false
	}
	pub, err := LoadPublicKey(b)
	if err != nil {
		return nil, false
	}
	return pub, true
}

// CachePublicKey remembers s's public key in dir for the private key file
// keyFile that s was decrypted from.
func CachePublicKey(dir string, keyFile []byte, s *Signer) error {
	if dir == "" || s == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("caching public key: %w", err)
	}
	p := keyCachePath(dir, keyFile)
	if b, err := os.ReadFile(p); err == nil && string(b) == string(s.PublicKeyPEM()) {
		return nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("caching public key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return fmt.Errorf("caching public key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(s.PublicKeyPEM()); err != nil {
		tmp.Close()
		return fmt.Errorf("caching public key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("caching public key: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("caching public key: %w", err)
	}
	return nil
}

// PendingKey is a signing key being decrypted: Load returns the signer
// (decrypting at most once), Public its public key when the key cache
// remembered it, nil otherwise.
type PendingKey struct {
	Public crypto.PublicKey
	Load   func() (*Signer, error)
}

// LoadKeyAsync decrypts the cosign private key keyFile (named name in
// errors) with password, as publishing needs it. A key whose public key
// the cache in cacheDir remembers is decrypted only when Load is called:
// a rebuild of an image already signed and attested by it never pays
// scrypt's few hundred milliseconds, nor competes with the build for the
// CPU. Any other key is decrypted now, in the background, and its public
// key remembered. logf, if not nil, is told when remembering fails.
func LoadKeyAsync(name string, keyFile, password []byte, cacheDir string, logf func(msg string, args ...any)) *PendingKey {
	decrypt := func() (*Signer, error) {
		s, err := LoadPrivateKey(keyFile, password)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if cerr := CachePublicKey(cacheDir, keyFile, s); cerr != nil && logf != nil {
			logf("remembering the public key", "err", cerr)
		}
		return s, nil
	}
	var (
		once sync.Once
		s    *Signer
		err  error
	)
	if pub, _ := CachedPublicKey(cacheDir, keyFile); pub != nil {
		return &PendingKey{Public: pub, Load: func() (*Signer, error) {
			once.Do(func() { s, err = decrypt() })
			return s, err
		}}
	}
	type result struct {
		s   *Signer
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := decrypt()
		ch <- result{s, err}
	}()
	return &PendingKey{Load: func() (*Signer, error) {
		once.Do(func() { r := <-ch; s, err = r.s, r.err })
		return s, err
	}}
}

// FailedKey is a PendingKey whose Load returns err: a key file or password
// that could not be read.
func FailedKey(err error) *PendingKey {
	return &PendingKey{Load: func() (*Signer, error) { return nil, err }}
}
