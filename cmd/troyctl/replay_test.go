package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// EnvRequireTmux, set to 1, turns a missing tmux into a failure instead of a skip; the test
// script sets it after installing tmux.
const envRequireTmux = "TROY_REQUIRE_TMUX"

// terminal is a real terminal (a tmux pane) running one command.
type terminal struct {
	t      *testing.T
	socket string
}

func newTerminal(t *testing.T, width, height int, command string) *terminal {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv(envRequireTmux) == "1" {
			t.Fatal("tmux is not installed")
		}
		t.Skip("tmux is not installed; ./scripts/test installs it")
	}
	term := &terminal{t: t, socket: fmt.Sprintf("troy-test-%d-%d", os.Getpid(), time.Now().UnixNano())}
	term.tmux("new-session", "-d", "-x", fmt.Sprint(width), "-y", fmt.Sprint(height), command)
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", term.socket, "kill-server").Run() })
	return term
}

func (term *terminal) tmux(args ...string) string {
	term.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", term.socket}, args...)...).CombinedOutput()
	if err != nil {
		term.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (term *terminal) keys(keys ...string) {
	term.tmux(append([]string{"send-keys", "-t", "0"}, keys...)...)
}

// waitFor polls the screen until it shows every text, for at most ten seconds.
func (term *terminal) waitFor(texts ...string) string {
	term.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		screen := term.tmux("capture-pane", "-p", "-t", "0")
		ok := true
		for _, text := range texts {
			ok = ok && strings.Contains(screen, text)
		}
		if ok {
			return screen
		}
		if time.Now().After(deadline) {
			term.t.Fatalf("the screen does not show %q:\n%s", texts, screen)
		}
		time.Sleep(50 * time.Millisecond) // polling the terminal, bounded by the deadline
	}
}

// The real binary in a real terminal: keys move through the audit and the views.
func TestReplayInATerminal(t *testing.T) {
	dir := t.TempDir()
	audit := filepath.Join(dir, "audit.json")
	if r := troyctl(t, "audit", example(t, "traces", "pii-exfiltration.json"), example(t, "policy.json"), "-o", filepath.Join(dir, "report.md"), "-j", audit); r.code != 0 {
		t.Fatal(r.stderr)
	}
	term := newTerminal(t, 100, 30, troyctlBinary(t)+" replay "+audit+" --policy agent_safety")
	term.waitFor("step 1/6", "risk 50/100 → 50 with agent_safety", ".C....", "Plan how to answer")
	term.keys("j")
	term.waitFor("step 2/6", "[CRITICAL] pii-exfiltration-protection", "- with agent_safety")
	term.keys("j")
	term.waitFor("step 5/6", "+ with agent_safety: [CRITICAL] safety-sensitive-data-egress")
	term.keys("s")
	term.waitFor("Trace support-7f3a (agent support-assistant): 6 steps", "Re-evaluated with agent_safety")
	term.keys("v")
	term.waitFor("Violations (1)")
	term.keys("g", "/", "refund_status", "Enter")
	term.waitFor("step 3/6", `found "refund_status" at step 3`)
	term.keys("Right", "d")
	term.waitFor("step 4/6", "(detail)")
	term.keys("?")
	term.waitFor("next violation")
	term.keys("q")
	deadline := time.Now().Add(10 * time.Second)
	for exec.Command("tmux", "-L", term.socket, "has-session").Run() == nil {
		if time.Now().After(deadline) {
			t.Fatal("q did not quit")
		}
		time.Sleep(50 * time.Millisecond) // polling tmux, bounded by the deadline
	}
}

// Without a terminal, replay prints the whole audit and the re-evaluation.
func TestReplayPrints(t *testing.T) {
	dir := t.TempDir()
	audit := filepath.Join(dir, "audit.json")
	troyctl(t, "audit", example(t, "traces", "pii-exfiltration.json"), example(t, "policy.json"), "-o", filepath.Join(dir, "report.md"), "-j", audit)
	r := troyctl(t, "replay", audit, "--policy", "agent_safety", "--no-interactive")
	if r.code != 0 || !strings.Contains(r.stdout, "Re-evaluated with agent_safety: risk 50 → 50 (+0); 1 violation(s) added, 1 removed") ||
		!strings.Contains(r.stdout, "Step 6/6") || strings.Contains(r.stdout, "\x1b") {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = troyctl(t, "replay", filepath.Join(dir, "missing.json"))
	if r.code != exitError || !strings.Contains(r.stderr, "missing.json") {
		t.Fatalf("missing file: exit %d %s", r.code, r.stderr)
	}
}

// diff compares two runs, and its exit code says whether the risk rose.
func TestDiffCommand(t *testing.T) {
	clean, leaky := example(t, "traces", "clean-run.json"), example(t, "traces", "pii-exfiltration.json")
	policy := example(t, "policy.json")
	tests := []struct {
		args   []string
		code   int
		stdout string
	}{
		{[]string{"diff", clean, leaky, "--policy", policy}, exitFound, "Risk: 0 → 50 (+50): ROSE"},
		{[]string{"diff", leaky, clean, "--policy", policy}, 0, "Risk: 50 → 0 (-50): fell"},
		{[]string{"diff", clean, leaky}, 0, "not compared (give --policy"},
		{[]string{"diff", clean, leaky, "--policy", policy, "--json"}, exitFound, `"risk_delta": 50`},
		{[]string{"diff", clean, "nope.json"}, exitError, ""},
	}
	for _, tt := range tests {
		r := troyctl(t, tt.args...)
		if r.code != tt.code || !strings.Contains(r.stdout, tt.stdout) {
			t.Errorf("%v: exit %d, want %d\n%s%s", tt.args[1:], r.code, tt.code, r.stdout, r.stderr)
		}
	}
}

// A policy written for the Python tool converts, and loads as it is with a notice.
func TestPythonPolicy(t *testing.T) {
	t.Chdir(t.TempDir())
	py := example(t, "python_policy.json")
	r := troyctl(t, "policies", "convert", py, "-o", "converted.json")
	if r.code != 0 || strings.Count(r.stderr, "  converted  ") != 6 || !strings.Contains(r.stderr, "6 rules written to converted.json") {
		t.Fatalf("convert: exit %d\n%s", r.code, r.stderr)
	}
	raw, err := os.ReadFile("converted.json")
	if err != nil || !strings.Contains(string(raw), `"mitigation": "block external calls after PII"`) || !strings.Contains(string(raw), `"global_config"`) || strings.Contains(string(raw), "lambda") {
		t.Fatalf("converted policy: %v\n%s", err, raw)
	}
	for _, policy := range []string{py, "converted.json"} {
		r = troyctl(t, "audit", example(t, "traces", "pii-exfiltration.json"), policy, "--json")
		if r.code != 0 || !strings.Contains(r.stdout, `"risk_score": 50`) || !strings.Contains(r.stdout, `"rule_id": "pii-exfiltration"`) {
			t.Fatalf("audit with %s: exit %d\n%s%s", policy, r.code, r.stdout, r.stderr)
		}
		notice := strings.Contains(r.stderr, "6 conditions converted from Python")
		if notice != (policy == py) {
			t.Fatalf("audit with %s: notice %v: %q", policy, notice, r.stderr)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"rules": [{"rule_id": "r1", "description": "d", "condition": "step['type'].upper() == 'X' and step['x'] is None"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r = troyctl(t, "policies", "convert", bad)
	if r.code != exitError || !strings.Contains(r.stderr, "failed     r1: line 1, column ") || !strings.Contains(r.stderr, "unsupported: method .upper()") {
		t.Fatalf("bad: exit %d\n%s", r.code, r.stderr)
	}
	r = troyctl(t, "audit", example(t, "traces", "clean-run.json"), bad)
	if r.code != exitError || !strings.Contains(r.stderr, `rule "r1": condition (Python) cannot be converted`) {
		t.Fatalf("audit with bad: exit %d\n%s", r.code, r.stderr)
	}
}

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
