package schemas

import (
	"strings"
	"testing"
	"testing/quick"
)

func TestSubjectTokensAreReversibleAndSafe(t *testing.T) {
	for _, id := range []string{"", "t1", "a.b", "with space", "*", ">", "ünï ✓", "~", "~7e", "a~b", "x\x00y", strings.Repeat(".", 3)} {
		tok := SubjectToken(id)
		if tok == "" || strings.ContainsAny(tok, ". *>\t\n") {
			t.Errorf("%q encodes to %q, not one subject token", id, tok)
		}
		back, err := ParseSubjectToken(tok)
		if err != nil || back != id {
			t.Errorf("%q -> %q -> %q (%v)", id, tok, back, err)
		}
	}
	if err := quick.Check(func(id string) bool {
		back, err := ParseSubjectToken(SubjectToken(id))
		return err == nil && back == id
	}, nil); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"~", "a~", "a~1", "a~zz"} {
		if bad == "~" {
			continue
		}
		if _, err := ParseSubjectToken(bad); err == nil {
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
		e, err := NewEnvelope("troy.steps.a.t", KindStep, "", StepEvent{
			TraceRef: TraceRef{TraceID: "t", AgentName: "a", Run: run}, Seq: seq,
			Step: &Step{StepID: id, Type: StepToolCall}})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	out, err := NewEnvelope("troy.steps.a.t", KindOutput, "", StepOutput{
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
