package signing

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The key is made once, owner-only, and every later or concurrent caller gets the same.
func TestLoadOrCreate(t *testing.T) {
	path := DataDirKey(t.TempDir())
	keys := make([]ed25519.PrivateKey, 8)
	made := make([]bool, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			var err error
			if keys[i], made[i], err = LoadOrCreate(path); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	n := 0
	for i, k := range keys {
		if !k.Equal(keys[0]) {
			t.Fatalf("caller %d got another key", i)
		}
		if made[i] {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d callers say they created the key, want 1", n)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", info.Mode(), err)
	}
	if dir, _ := os.Stat(filepath.Dir(path)); dir.Mode().Perm() != 0o700 {
		t.Errorf("key directory mode %v", dir.Mode())
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	again, made2, err := LoadOrCreate(path)
	if err != nil || made2 || !again.Equal(keys[0]) {
		t.Errorf("reloaded: %v %v", made2, err)
	}
}

func TestParsePublic(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "signing.key")
	key, _, err := LoadOrCreate(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	text := FormatPublic(pub)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	files := map[string]string{
		"pub.txt": text + "\n",
		"pub.pem": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		"bad.txt": "ed25519:short\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		arg, err string
	}{
		{arg: text},
		{arg: strings.TrimPrefix(text, PublicKeyPrefix)},
		{arg: filepath.Join(dir, "pub.txt")},
		{arg: filepath.Join(dir, "pub.pem")},
		{arg: keyPath},
		{arg: filepath.Join(dir, "bad.txt"), err: "expected ed25519:BASE64"},
		{arg: filepath.Join(dir, "none"), err: "expected ed25519:BASE64 or a file holding it"},
	} {
		got, err := ParsePublic(tc.arg)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want %q", tc.arg, err, tc.err)
			}
			continue
		}
		if err != nil || !got.Equal(pub) {
			t.Errorf("%s: %v", tc.arg, err)
		}
	}
	if _, err := Load(filepath.Join(dir, "pub.pem")); err == nil || !strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Errorf("a public key is no signing key: %v", err)
	}
}
