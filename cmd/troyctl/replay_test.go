package main

import (
	"fmt"
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
	term.waitFor("step 1/6", "risk 50/100 → 20 with agent_safety", ".C....", "Plan how to answer")
	term.keys("j")
	term.waitFor("step 2/6", "[CRITICAL] pii-exfiltration-protection", "- with agent_safety")
	term.keys("j")
	term.waitFor("step 5/6", "+ with agent_safety: [MEDIUM] safety-unauthenticated-external")
	term.keys("s")
	term.waitFor("Trace support-7f3a (agent support-assistant): 6 steps", "Re-evaluated with agent_safety")
	term.keys("v")
	term.waitFor("Violations with agent_safety (1)", "safety-unauthenticated-external")
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
	if r.code != 0 || !strings.Contains(r.stdout, "Re-evaluated with agent_safety: risk 50 → 20 (-30); 1 violation(s) added, 1 removed") ||
		!strings.Contains(r.stdout, "Step 6/6") || strings.Contains(r.stdout, "\x1b") {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = troyctl(t, "replay", filepath.Join(dir, "missing.json"))
	if r.code != exitError || !strings.Contains(r.stderr, "missing.json") {
		t.Fatalf("missing file: exit %d %s", r.code, r.stderr)
	}
}
