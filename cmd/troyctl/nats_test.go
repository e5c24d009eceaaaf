package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/internal/natsauth"
)

// A command with --nats and no credential uses serve's admin credential: in --data-dir
// where the command has one, else in $TROY_DATA_DIR, else in .troy.
func TestResolveCredsFindsServesAdminCredential(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(natsauth.Dir(dir), natsauth.AdminCreds)
	if err := os.MkdirAll(filepath.Dir(creds), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(creds, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		dataDir bool   // the command has --data-dir, given dir
		env     string // $TROY_DATA_DIR
		want    string
	}{
		{"--data-dir", true, "", creds},
		{"$TROY_DATA_DIR, no --data-dir flag", false, dir, creds},
		{"neither", false, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Chdir(t.TempDir()) // no .troy here
			t.Setenv("TROY_DATA_DIR", tc.env)
			cmd := &cobra.Command{Use: "x"}
			f := &natsFlags{}
			f.register(cmd)
			if tc.dataDir {
				cmd.Flags().String("data-dir", dir, "")
			}
			f.opts.URL = "nats://127.0.0.1:4222"
			f.resolveCreds()
			if f.opts.Auth.CredsFile != tc.want {
				t.Fatalf("credentials %q, want %q", f.opts.Auth.CredsFile, tc.want)
			}
		})
	}
}

// An authorization violation says what the server wants.
func TestAuthorizationViolationSaysWhatToGive(t *testing.T) {
	got := withHint("connect to NATS: nats: Authorization Violation")
	if !strings.Contains(got, "--creds FILE") || !strings.Contains(got, "--data-dir of the serve") {
		t.Fatalf("%q", got)
	}
	if other := "connect to NATS: nats: no servers available for connection"; withHint(other) != other {
		t.Fatalf("a hint on another error: %q", withHint(other))
	}
}
