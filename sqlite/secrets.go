package sqlite

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/edgeorch/edge/core"
	"github.com/edgeorch/edge/internal/fsutil"
)

// Secrets are encrypted at rest, as k3s' --secrets-encryption does: each
// Secret's row holds AES-256-GCM ciphertext under a key kept beside the
// database (DATA_DIR/secrets.key, 0600). A copy of state.db alone (a
// backup, a lost SD card) does not give the secrets away. Other kinds stay
// plain JSON.

// encPrefix marks an encrypted row; rows without it are plain JSON (from
// a version before encryption) and are encrypted when next written.
var encPrefix = []byte("edge-aesgcm-v1:")

// LoadOrCreateKey returns the key in path, making a new random one (0600)
// when there is none.
func LoadOrCreateKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := fsutil.WriteFileAtomic(path, key, 0o600); err != nil {
			return nil, fmt.Errorf("secrets key %s: %w", path, err)
		}
		return key, nil
	} else if err != nil {
		return nil, fmt.Errorf("secrets key %s: %w", path, err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("secrets key %s: %d bytes, want 32 (restore it from a backup; a new key cannot read the secrets stored under the old one)", path, len(key))
	}
	return key, nil
}

func (db *DB) aead() (cipher.AEAD, error) {
	block, err := aes.NewCipher(db.SecretsKey)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts a Secret's JSON; other kinds, and everything when the DB
// has no key, pass through.
func (db *DB) seal(kind core.Kind, data []byte) ([]byte, error) {
	if kind != core.KindSecret || db.SecretsKey == nil {
		return data, nil
	}
	g, err := db.aead()
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := append(append([]byte(nil), encPrefix...), nonce...)
	return g.Seal(out, nonce, data, []byte(kind)), nil
}

// open decrypts a row sealed by seal.
func (db *DB) open(kind core.Kind, what string, data []byte) ([]byte, error) {
	if !bytes.HasPrefix(data, encPrefix) {
		return data, nil
	}
	if db.SecretsKey == nil {
		return nil, fmt.Errorf("%s is encrypted and no secrets key is configured", what)
	}
	g, err := db.aead()
	if err != nil {
		return nil, err
	}
	rest := data[len(encPrefix):]
	if len(rest) < g.NonceSize() {
		return nil, fmt.Errorf("%s: encrypted row too short", what)
	}
	plain, err := g.Open(nil, rest[:g.NonceSize()], rest[g.NonceSize():], []byte(kind))
	if err != nil {
		return nil, fmt.Errorf("%s: cannot decrypt it with the secrets key (was secrets.key replaced?): %v", what, err)
	}
	return plain, nil
}
