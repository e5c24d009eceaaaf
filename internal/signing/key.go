// Package signing keeps the Ed25519 key that signs troy's reports: created on first use in
// a file only its owner may read, loaded after, and public keys read from flags and files.
package signing

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// EnvKey names the environment variable that gives one-shot commands their key file.
const EnvKey = "TROY_SIGNING_KEY"

// DataDirKey is where serve keeps its key: <data-dir>/auth/signing.key.
func DataDirKey(dataDir string) string {
	return filepath.Join(dataDir, "auth", "signing.key")
}

// UserKey is where one-shot commands keep theirs: <user config dir>/troy/signing.key.
func UserKey() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no user config directory for the signing key (set --signing-key or %s): %w", EnvKey, err)
	}
	return filepath.Join(dir, "troy", "signing.key"), nil
}

// LoadOrCreate loads the private key in path (PKCS #8, PEM), creating it (mode 0600, its
// directory 0700) when there is none. created says it was made now. Two processes that
// start at once end with the same key: the file appears whole or not at all.
func LoadOrCreate(path string) (key ed25519.PrivateKey, created bool, err error) {
	key, err = Load(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("signing key %s: %w", path, err)
	}
	_, key, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("signing key %s: %w", path, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, false, fmt.Errorf("signing key %s: %w", path, err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	tmp, err := os.CreateTemp(filepath.Dir(path), ".signing.key.*")
	if err != nil {
		return nil, false, fmt.Errorf("signing key %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err = tmp.Write(data); err == nil {
		err = tmp.Chmod(0o600)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, false, fmt.Errorf("signing key %s: %w", path, err)
	}
	// A hard link never replaces a file: whoever links first made the key everyone uses.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			key, err = Load(path)
			return key, false, err
		}
		return nil, false, fmt.Errorf("signing key %s: %w", path, err)
	}
	return key, true, nil
}

// Load reads a private key file written by LoadOrCreate (or openssl genpkey -algorithm
// ed25519).
func Load(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signing key %s: expected a PEM \"PRIVATE KEY\" block (PKCS #8, Ed25519)", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: expected an Ed25519 key, found %T", path, k)
	}
	return key, nil
}

// PublicKeyPrefix starts the text form of a public key: ed25519:BASE64.
const PublicKeyPrefix = "ed25519:"

// FormatPublic is the text form of a public key, as `troyctl auth public-key` prints it.
func FormatPublic(pub ed25519.PublicKey) string {
	return PublicKeyPrefix + base64.StdEncoding.EncodeToString(pub)
}

// ParsePublic reads a public key given as text (ed25519:BASE64, or the base64 alone) or as
// the name of a file holding that text, a PEM "PUBLIC KEY", or a private key file.
func ParsePublic(arg string) (ed25519.PublicKey, error) {
	if pub, ok := parseText(arg); ok {
		return pub, nil
	}
	data, err := os.ReadFile(arg)
	if err != nil {
		return nil, fmt.Errorf("public key %q: expected ed25519:BASE64 or a file holding it: %w", arg, err)
	}
	if pub, ok := parseText(strings.TrimSpace(string(data))); ok {
		return pub, nil
	}
	if block, _ := pem.Decode(data); block != nil {
		switch block.Type {
		case "PUBLIC KEY":
			if k, err := x509.ParsePKIXPublicKey(block.Bytes); err == nil {
				if pub, ok := k.(ed25519.PublicKey); ok {
					return pub, nil
				}
			}
		case "PRIVATE KEY":
			if key, err := Load(arg); err == nil {
				return key.Public().(ed25519.PublicKey), nil
			}
		}
	}
	return nil, fmt.Errorf("public key file %s: expected ed25519:BASE64 (troyctl auth public-key), a PEM Ed25519 public key or a signing key", arg)
}

func parseText(s string) (ed25519.PublicKey, bool) {
	s = strings.TrimPrefix(s, PublicKeyPrefix)
	if strings.HasPrefix(s, `"`) {
		if u, err := strconv.Unquote(s); err == nil {
			s = strings.TrimPrefix(u, PublicKeyPrefix)
		}
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, false
	}
	return ed25519.PublicKey(b), true
}
