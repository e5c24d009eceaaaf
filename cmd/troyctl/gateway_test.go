package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// serve --http runs the gateway next to NATS, with the tokens of a file.
func TestServeHTTPGateway(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("first\nsecond-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port, httpPort := freePort(t), freePort(t)
	startServe(t, "--data-dir", filepath.Join(dir, "data"), "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--policy", "minimal",
		"--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--http-tokens", tokens)
	check := func(token string) int {
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/v1/guard/check", httpPort), strings.NewReader(`{"session": "s", "agent": "a", "step": {"action": "bash", "metadata": {"permission_level": "admin"}}}`))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := check("second-token"); got != 200 {
		t.Fatalf("check with a token: %d", got)
	}
	if got := check("third"); got != 401 {
		t.Fatalf("check with a wrong token: %d", got)
	}
	r := troyctl(t, "serve", "--data-dir", filepath.Join(dir, "d2"), "--listen", "", "--metrics", "", "--http", "127.0.0.1:0")
	if r.code != exitError || !strings.Contains(r.stderr, "the HTTP gateway needs at least one token") {
		t.Fatalf("serve --http without tokens: exit %d %s", r.code, r.stderr)
	}
}
