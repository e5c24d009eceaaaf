package event

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/quick"

	"github.com/troy-audit/troy/schemas"
)

func TestSubjectTokensAreReversibleAndSafe(t *testing.T) {
	for _, id := range []string{"", "t1", "a.b", "with space", "*", ">", "ünï ✓", "~", "~7e", "a~b", "x\x00y", strings.Repeat(".", 3)} {
		tok := schemas.Token(id)
		if tok == "" || strings.ContainsAny(tok, ". *>\t\n") {
			t.Errorf("%q encodes to %q, not one subject token", id, tok)
		}
		back, err := schemas.ParseToken(tok)
		if err != nil || back != id {
			t.Errorf("%q -> %q -> %q (%v)", id, tok, back, err)
		}
	}
	if err := quick.Check(func(id string) bool {
		back, err := schemas.ParseToken(schemas.Token(id))
		return err == nil && back == id
	}, nil); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"~", "a~", "a~1", "a~zz"} {
		if bad == "~" {
			continue
		}
		if _, err := schemas.ParseToken(bad); err == nil {
			t.Errorf("%q should not parse", bad)
		}
	}
	if got := StepsSubject("support bot", "trace.1"); got != "troy.steps.support~20bot.trace~2e1" {
		t.Errorf("got %s", got)
	}
	if got := ResultSubject(KindViolation, "a", "b"); got != "troy.results.violation.a.b" {
		t.Errorf("got %s", got)
	}
}

// A trace read back comes out in step order whatever the stream's order, without another
// run's steps or duplicates, and stops at the first missing step.
func TestAssembleTraceInStepOrder(t *testing.T) {
	ev := func(run string, seq int, id string) Envelope {
		e, err := New(Step{
			TraceRef: TraceRef{TraceID: "t", AgentName: "a", Run: run}, Seq: seq,
			Step: &schemas.Step{StepID: id, Type: schemas.StepToolCall}})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	out, err := New(Output{
		TraceRef: TraceRef{TraceID: "t", AgentName: "a", Run: "r"}, StepID: "s0", Output: map[string]any{"ok": true}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		events []Envelope
		want   string
	}{
		{"stream order", []Envelope{ev("r", 0, "s0"), ev("r", 1, "s1"), ev("r", 2, "s2")}, "s0 s1 s2"},
		{"a block stored late", []Envelope{ev("r", 1, "s1"), ev("r", 2, "s2"), ev("x", 0, "other"), ev("r", 0, "s0"), out}, "s0 s1 s2"},
		{"duplicates", []Envelope{ev("r", 0, "s0"), ev("r", 0, "again"), ev("r", 1, "s1")}, "s0 s1"},
		{"a gap", []Envelope{ev("r", 0, "s0"), ev("r", 2, "s2")}, "s0"},
	}
	for _, tt := range tests {
		tr, err := AssembleTrace(tt.events, "r")
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, s := range tr.Steps {
			ids = append(ids, s.StepID)
		}
		if got := strings.Join(ids, " "); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
		if tt.name == "a block stored late" && tr.Steps[0].Output["ok"] != true {
			t.Errorf("the output of s0 was not attached")
		}
	}
}

// A verdict cut into parts reads back whole and in order, whatever its size; a part
// missing is an incomplete read, and other runs' parts are not taken.
func TestVerdictPartsReadBackWhole(t *testing.T) {
	ref := TraceRef{TraceID: "t", AgentName: "a", Policy: "p", Run: "r1"}
	for _, n := range []int{0, 1, 7, 4000} {
		var vs []schemas.Violation
		for i := range n {
			vs = append(vs, schemas.Violation{RuleID: fmt.Sprintf("r%d", i%3), RuleDescription: strings.Repeat("<d>", 100), StepID: fmt.Sprint("s", i), Severity: schemas.Severities()[i%4], Details: "x"})
		}
		ev, parts, err := Verdict(ref, n, vs, nil)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Violations != n || ev.Parts != len(parts) || n > 0 && len(ev.Rules) != min(n, 3) {
			t.Fatalf("%d violations: counted %+v with %d parts", n, ev, len(parts))
		}
		for _, p := range parts {
			if len(p.Data) > MaxPartSize || p.Kind != KindVerdict || p.Subject != "troy.results.verdict.a.t" {
				t.Fatalf("part %s of %d bytes on %s", p.Kind, len(p.Data), p.Subject)
			}
		}
		if n == 4000 && len(parts) < 4 {
			t.Fatalf("4000 violations of about 400 bytes in %d parts", len(parts))
		}
		other := ref
		other.Run = "r0"
		_, stale, _ := Verdict(other, 1, []schemas.Violation{{RuleID: "old"}}, nil)
		events := append(append(stale, parts...), parts...) // another run's, and a redelivery
		got, err := CollectVerdict(events, &ev)
		if err != nil || len(got) != n || n > 0 && !slices.Equal(got, vs) {
			t.Fatalf("%d violations: read back %d (%v)", n, len(got), err)
		}
		if len(parts) > 1 {
			_, err := CollectVerdict(append(slices.Clone(parts[:1]), parts[2:]...), &ev)
			if !errors.Is(err, ErrIncomplete) {
				t.Fatalf("a part missing: %v, want an incomplete read", err)
			}
		}
	}
}
