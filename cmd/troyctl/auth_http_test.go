package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/internal/gateway"
	"github.com/troy-audit/troy/internal/tlstest"
	"github.com/troy-audit/troy/sdk/servetest"
)

// troyctl auth … --http prints a token once and keeps only its hash, with its role.
func TestAuthHTTP(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	r := troyctl(t, "auth", "agent", "support bot", "--http", "--data-dir", data)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "troy_agent_") || strings.Count(r.stdout, "\n") != 1 || !strings.Contains(r.stderr, `for "support bot"`) {
		t.Fatalf("agent: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	agentToken := strings.TrimSpace(r.stdout)
	r = troyctl(t, "auth", "reader", "--http", "--data-dir", data, "--json")
	var issued struct{ ID, Role, Token, Tokens_File string }
	if err := json.Unmarshal([]byte(r.stdout), &issued); r.code != 0 || err != nil || issued.Role != "reader" || issued.Token == "" || issued.Tokens_File != filepath.Join(data, "http-tokens") {
		t.Fatalf("reader --json: exit %d %s %v", r.code, r.stdout, err)
	}
	out := filepath.Join(dir, "admin.token")
	if r = troyctl(t, "auth", "admin", "--http", "--data-dir", data, "-o", out); r.code != 0 || !strings.Contains(r.stdout, "written to "+out) || strings.Contains(r.stdout, "troy_admin_") {
		t.Fatalf("admin -o: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	adminToken, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o600 {
		t.Errorf("the token file is %v, want owner only", st.Mode().Perm())
	}

	file := filepath.Join(data, "http-tokens")
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
		t.Errorf("the tokens file is %v, want owner only", st.Mode().Perm())
	}
	for _, secret := range []string{agentToken, issued.Token, strings.TrimSpace(string(adminToken))} {
		if strings.Contains(string(text), secret) || strings.Contains(string(text), strings.SplitN(secret, "_", 3)[2]) {
			t.Errorf("the tokens file holds a token:\n%s", text)
		}
	}
	toks, err := gateway.ParseTokens(file, string(text))
	if err != nil || len(toks) != 3 {
		t.Fatalf("%v %+v", err, toks)
	}
	want := []gateway.Token{
		{Hash: gateway.HashToken(agentToken), Role: gateway.RoleAgent, Agent: "support bot"},
		{Hash: gateway.HashToken(issued.Token), Role: gateway.RoleReader},
		{Hash: gateway.HashToken(strings.TrimSpace(string(adminToken))), Role: gateway.RoleAdmin},
	}
	for i := range want {
		if toks[i] != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, toks[i], want[i])
		}
	}

	for _, tt := range []struct {
		args []string
		err  string
	}{
		{[]string{"auth", "agent", "--http"}, "troyctl: auth agent: expected one argument, the agent's name; got 0\n"},
		{[]string{"auth", "reader", "x", "--http"}, "troyctl: auth reader: 1 arguments given, expected no arguments, such as troyctl auth reader --http\n"},
		{[]string{"auth", "agent", "a\x1b[2J", "--http", "--data-dir", data}, "troyctl: agent name: "},
		{[]string{"auth", "admin", "--http", "--data-dir", data, "-o", out}, "troyctl: -o " + out + ": the file exists; choose a new file, or remove it first\n"},
	} {
		if r := troyctl(t, tt.args...); r.code != exitError || !strings.HasPrefix(r.stderr, tt.err) {
			t.Errorf("%q: exit %d %q, want %q", tt.args, r.code, r.stderr, tt.err)
		}
	}
	// Refused commands added nothing.
	if after, _ := os.ReadFile(file); string(after) != string(text) {
		t.Errorf("the tokens file changed:\n%s", after)
	}
}

// serve --http with tokens issued into its data directory: roles enforced over a real
// process, HTTPS with --http-cert, NATS over TLS with --nats-cert, and a token issued
// while it runs accepted without a restart.
func TestServeGatewayRolesAndTLS(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	certs := tlstest.New(t, "troy")
	issue := func(args ...string) string {
		t.Helper()
		r := troyctl(t, append(append([]string{"auth"}, args...), "--http", "--data-dir", data)...)
		if r.code != 0 {
			t.Fatalf("auth %q: exit %d %s", args, r.code, r.stderr)
		}
		return strings.TrimSpace(r.stdout)
	}
	agentA := issue("agent", "a")
	port, httpPort := servetest.FreePort(t), servetest.FreePort(t)
	p := startServe(t, "--data-dir", data, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--policy", "minimal",
		"--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--http-cert", certs.Cert, "--http-key", certs.Key,
		"--nats-cert", certs.Cert, "--nats-key", certs.Key)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.Pool}}}
	call := func(method, path, tok, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, fmt.Sprintf("https://127.0.0.1:%d%s", httpPort, path), strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	step := func(agent string) string {
		return fmt.Sprintf(`{"trace_id": "t", "agent": %q, "run": "r", "seq": 0, "step": {"step_id": "s0", "type": "tool_call", "description": "search"}}`, agent)
	}
	if status, body := call("POST", "/v1/steps", agentA, step("a")); status != 202 {
		t.Fatalf("a's own step: %d %s", status, body)
	}
	if status, body := call("POST", "/v1/steps", agentA, step("b")); status != 403 || !strings.Contains(body, `"role":"agent"`) {
		t.Fatalf("a writing b's step: %d %s", status, body)
	}
	if status, body := call("POST", "/v1/guard/check", agentA, `{"session": "s", "agent": "b", "step": {"action": "read"}}`); status != 403 {
		t.Fatalf("a checking b's session: %d %s", status, body)
	}
	// Issued while serve runs: accepted once serve has re-read the file (within a second;
	// the wait is bounded).
	reader := issue("reader")
	deadline := time.Now().Add(15 * time.Second)
	for {
		status, body := call("POST", "/v1/steps", reader, step("a"))
		if status == 403 && strings.Contains(body, `"role":"reader"`) {
			break
		}
		if status != 401 || time.Now().After(deadline) {
			t.Fatalf("a reader token issued while serving: %d %s\n%s", status, body, p.log())
		}
		time.Sleep(50 * time.Millisecond) // polling for the reload, bounded by the deadline
	}
	if !strings.Contains(p.log(), "http gateway tokens reloaded") {
		t.Errorf("no reload logged:\n%s", p.log())
	}

	// The embedded NATS server speaks TLS: a client trusting the CA connects, one without
	// it does not.
	nc, err := nats.Connect(fmt.Sprintf("tls://127.0.0.1:%d", port), nats.RootCAs(certs.CA), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatalf("NATS over TLS: %v", err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := nc.RequestWithContext(ctx, event.GuardCheckSubject("a"), []byte(`{"session": "n", "agent": "a", "step": {"action": "read"}}`)); err != nil {
		t.Fatalf("a guard check over TLS: %v", err)
	}
	if _, err := nats.Connect(fmt.Sprintf("tls://127.0.0.1:%d", port), nats.Timeout(10*time.Second), nats.NoReconnect()); err == nil {
		t.Fatal("a NATS client that does not trust the CA connected")
	}
}
