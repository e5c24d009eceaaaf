package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/troy-audit/troy/sdk/servetest"
)

// serve --http runs the gateway next to NATS, with the tokens of a file: its comments and
// blank lines are not tokens, and the Bearer scheme is case-insensitive. Plain tokens, as
// such files held before tokens had roles, are admin tokens, with a warning saying how to
// move to tokens with roles.
func TestServeHTTPGateway(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("# agents of the support team\nfirst\n\nsecond-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port, httpPort := servetest.FreePort(t), servetest.FreePort(t)
	p := startServe(t, "--data-dir", filepath.Join(dir, "data"), "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--policy", "minimal",
		"--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--http-tokens", tokens)
	check := func(auth string) int {
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/v1/guard/check", httpPort), strings.NewReader(`{"session": "s", "agent": "a", "step": {"action": "bash", "metadata": {"permission_level": "admin"}}}`))
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tt := range []struct {
		auth string
		want int
	}{
		{"Bearer second-token", 200},
		{"bearer first", 200},
		{"Bearer third", 401},
		{"Bearer # agents of the support team", 401},
		{"Bearer #", 401},
	} {
		if got := check(tt.auth); got != tt.want {
			t.Errorf("Authorization: %s: %d, want %d", tt.auth, got, tt.want)
		}
	}
	if log := p.log(); !strings.Contains(log, "level=WARN") || !strings.Contains(log, "plain_tokens=2") || !strings.Contains(log, "troyctl auth agent NAME --http --tokens "+tokens) {
		t.Errorf("no warning about the plain tokens:\n%s", log)
	}
	bad := filepath.Join(dir, "bad-tokens")
	if err := os.WriteFile(bad, []byte("first\nsecond,third\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := troyctl(t, "serve", "--data-dir", filepath.Join(dir, "d3"), "--listen", "", "--metrics", "", "--http", "127.0.0.1:0", "--http-tokens", bad)
	if r.code != exitError || !strings.Contains(r.stderr, bad+":2: a token may hold only") {
		t.Fatalf("serve with a comma in a token: exit %d %s", r.code, r.stderr)
	}
	r = troyctl(t, "serve", "--data-dir", filepath.Join(dir, "d2"), "--listen", "", "--metrics", "", "--http", "127.0.0.1:0")
	if r.code != exitError || !strings.Contains(r.stderr, "the HTTP gateway needs at least one token") {
		t.Fatalf("serve --http without tokens: exit %d %s", r.code, r.stderr)
	}
}
