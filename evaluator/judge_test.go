package evaluator_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

// judgePolicy has an ordinary rule and a judge rule whose condition holds at tool calls.
func judgePolicy(t *testing.T, onError string) *evaluator.Compiled {
	return judgePolicyWith(t, `{"on_error": "`+onError+`", "timeout": "50ms"}`)
}

func judgePolicyWith(t *testing.T, judge string) *evaluator.Compiled {
	t.Helper()
	raw := `{"policy_id": "p", "rules": [
	  {"rule_id": "plain", "description": "d", "condition": "step.description == 'delete'"},
	  {"rule_id": "judged", "description": "d", "condition": "step.type == 'tool_call'", "judge": ` + judge + `}]}`
	p, err := policies.Parse([]byte(raw), "p.json", "p")
	if err != nil {
		t.Fatal(err)
	}
	c, err := evaluator.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func judgeTrace() *schemas.Trace {
	tr := &schemas.Trace{TraceID: "t", AgentName: "a", Metadata: map[string]any{}}
	for i, d := range []string{"search", "chat", "delete"} {
		typ := schemas.StepToolCall
		if d == "chat" {
			typ = schemas.StepLLMCall
		}
		tr.Steps = append(tr.Steps, &schemas.Step{StepID: []string{"s1", "s2", "s3"}[i], Type: typ, Description: d, Input: map[string]any{}, Output: map[string]any{}, Metadata: map[string]any{}})
	}
	return tr
}

// Without a model, a judge rule never becomes a violation: the steps where its condition
// holds are a rule error saying it was not evaluated, post-hoc and in a session alike,
// and the other rules are unaffected.
func TestJudgeRulesWithoutAModel(t *testing.T) {
	c := judgePolicy(t, "block")
	tr := judgeTrace()
	got := c.Evaluate(tr)
	if len(got.Violations) != 1 || got.Violations[0].RuleID != "plain" {
		t.Fatalf("violations %+v: want only the plain rule's", got.Violations)
	}
	want := []schemas.RuleError{{RuleID: "judged", Count: 2, FirstStep: "s1", FirstError: evaluator.NotJudged}}
	if !reflect.DeepEqual(got.RuleErrors, want) {
		t.Fatalf("rule errors %+v, want %+v", got.RuleErrors, want)
	}
	s := c.NewSession(evaluator.SessionOptions{Trace: evaluator.TraceInfoOf(tr), Lookahead: true})
	for _, st := range tr.Steps {
		s.EvaluateNow(s.Append(st))
	}
	if v := s.Finish(); !reflect.DeepEqual(v.Result, got) || !reflect.DeepEqual(v.Steps, []int{2}) {
		t.Fatalf("session %+v (steps %v), post-hoc %+v", v.Result, v.Steps, got)
	}
	if cases := s.JudgeCases(2); len(cases) != 1 || cases[0].RuleID != "judged" || len(cases[0].Steps) != 3 || cases[0].Question != policies.DefaultJudgeQuestion {
		t.Fatalf("cases at the third step: %+v", cases)
	}
	if cases := s.JudgeCases(1); len(cases) != 0 {
		t.Fatalf("cases at an llm call: %+v", cases)
	}
}

// A guard without a model takes each judge rule's on_error at once: block denies the
// step and says the judge was unavailable; allow lets it through and records why.
func TestGuardJudgeWithoutAModel(t *testing.T) {
	for _, tt := range []struct {
		onError string
		allowed bool
		says    string
	}{
		{"block", false, "model judge unavailable, step blocked (on_error: block)"},
		{"allow", true, "model judge gave no answer; allowed as the rule's on_error says"},
	} {
		g, err := judgePolicy(t, tt.onError).NewGuard(evaluator.GuardOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d, err := g.Check(evaluator.CheckRequest{GuardStep: schemas.GuardStep{Action: "search"}})
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed != tt.allowed || len(d.Violations) != 0 || len(d.RuleErrors) != 1 || !strings.Contains(d.RuleErrors[0].Error, tt.says) {
			t.Fatalf("on_error %s: decision %+v", tt.onError, d)
		}
		d, err = g.Check(evaluator.CheckRequest{GuardStep: schemas.GuardStep{Action: "chat", Type: schemas.StepLLMCall}})
		if err != nil || !d.Allowed || len(d.RuleErrors) != 0 {
			t.Fatalf("on_error %s: a step the condition rules out: %+v, %v", tt.onError, d, err)
		}
		if errs := g.RuleErrors(); len(errs) != 1 || errs[0].RuleID != "judged" || errs[0].Count != 1 {
			t.Fatalf("on_error %s: session's rule errors %+v", tt.onError, errs)
		}
	}
}

// A judge rule that says without_model: skip is left out where no model is configured:
// no violation, no rule error, in audits and sessions, and the guard allows the step
// whatever on_error says (on_error is for a model that fails to answer).
func TestJudgeSkippedWithoutAModel(t *testing.T) {
	c := judgePolicyWith(t, `{"on_error": "block", "without_model": "skip"}`)
	tr := judgeTrace()
	got := c.Evaluate(tr)
	if len(got.Violations) != 1 || got.Violations[0].RuleID != "plain" || len(got.RuleErrors) != 0 {
		t.Fatalf("result %+v: want the plain rule's violation alone", got)
	}
	s := c.NewSession(evaluator.SessionOptions{Trace: evaluator.TraceInfoOf(tr), Lookahead: true})
	for _, st := range tr.Steps {
		s.EvaluateNow(s.Append(st))
	}
	if v := s.Finish(); !reflect.DeepEqual(v.Result, got) {
		t.Fatalf("session %+v, post-hoc %+v", v.Result, got)
	}
	g, err := c.NewGuard(evaluator.GuardOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := g.Check(evaluator.CheckRequest{GuardStep: schemas.GuardStep{Action: "search"}})
	if err != nil || !d.Allowed || len(d.RuleErrors) != 0 || len(d.Violations) != 0 {
		t.Fatalf("guard: %+v, %v", d, err)
	}
	if errs := g.RuleErrors(); len(errs) != 0 {
		t.Fatalf("guard session's rule errors %+v", errs)
	}
}

// The example policy with a model judge loads, and audits the example traces without a
// model: its judge rule is reported as not evaluated where its condition holds.
func TestJudgeExamplePolicy(t *testing.T) {
	p, err := policies.LoadFile("../examples/judge_policy.json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := evaluator.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !c.HasJudge() || len(p.JudgeRules()) != 1 {
		t.Fatalf("judge rules %v", p.JudgeRules())
	}
	tr := &schemas.Trace{TraceID: "t", AgentName: "a", Metadata: map[string]any{}, Steps: []*schemas.Step{
		{StepID: "s1", Type: schemas.StepToolCall, Description: "send_email", Input: map[string]any{"to": "x@example.com"}, Output: map[string]any{}, Metadata: map[string]any{}},
		{StepID: "s2", Type: schemas.StepToolCall, Description: "read_file", Input: map[string]any{"path": "a.txt"}, Output: map[string]any{}, Metadata: map[string]any{}},
	}}
	r := c.Evaluate(tr)
	if len(r.Violations) != 0 || len(r.RuleErrors) != 1 || r.RuleErrors[0].Count != 1 || r.RuleErrors[0].FirstStep != "s1" {
		t.Fatalf("result %+v: want the send judged (not evaluated), the read left out", r)
	}
}
