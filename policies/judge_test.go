package policies_test

import (
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/policies"
)

func TestJudgeValidation(t *testing.T) {
	rule := func(judge string) string {
		return `{"rules": [{"rule_id": "j", "description": "d", "condition": "step.type == 'tool_call'", "judge": ` + judge + `}]}`
	}
	tests := []struct {
		name, judge, err string
		want             policies.Judge
	}{
		{name: "defaults", judge: `{}`, want: policies.Judge{Question: policies.DefaultJudgeQuestion, OnError: "block", Timeout: 10 * time.Second, WithoutModel: "error"}},
		{name: "all set", judge: `{"question": "Did the user ask to pay?", "on_error": "allow", "timeout": "2.5s"}`, want: policies.Judge{Question: "Did the user ask to pay?", OnError: "allow", Timeout: 2500 * time.Millisecond, WithoutModel: "error"}},
		{name: "skipped without a model", judge: `{"without_model": "skip"}`, want: policies.Judge{Question: policies.DefaultJudgeQuestion, OnError: "block", Timeout: policies.DefaultJudgeTimeout, WithoutModel: "skip"}},
		{name: "without_model unknown", judge: `{"without_model": "allow"}`, err: `rule "j": judge.without_model: expected "error" or "skip", got "allow"`},
		{name: "not an object", judge: `true`, err: `p.json: rule "j": judge: expected an object with question, on_error, timeout and without_model, got a boolean`},
		{name: "null", judge: `null`, err: `rule "j": judge: expected an object with question, on_error, timeout and without_model, got null`},
		{name: "empty question", judge: `{"question": " "}`, err: `rule "j": judge.question: expected a non-empty string, got a string " "`},
		{name: "question a number", judge: `{"question": 3}`, err: `rule "j": judge.question: expected a non-empty string, got a number 3`},
		{name: "on_error unknown", judge: `{"on_error": "skip"}`, err: `rule "j": judge.on_error: expected "block" or "allow", got "skip"`},
		{name: "timeout a number", judge: `{"timeout": 10}`, err: `rule "j": judge.timeout: expected a duration such as "10s", got a number 10`},
		{name: "timeout unreadable", judge: `{"timeout": "ten seconds"}`, err: `rule "j": judge.timeout: expected a duration above 0 and at most 10m0s, such as "10s", got "ten seconds"`},
		{name: "timeout zero", judge: `{"timeout": "0s"}`, err: `judge.timeout: expected a duration above 0`},
		{name: "timeout too long", judge: `{"timeout": "1h"}`, err: `judge.timeout: expected a duration above 0 and at most 10m0s`},
		{name: "unknown field", judge: `{"model": "gpt"}`, err: `rule "j": judge.model: unknown field; a judge has question, on_error, timeout and without_model`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := policies.Parse([]byte(rule(tt.judge)), "p.json", "p")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("error %v, want one line with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			j := p.Rules[0].Judge
			if j == nil || j.Question != tt.want.Question || j.OnError != tt.want.OnError || j.Timeout != tt.want.Timeout {
				t.Fatalf("judge %+v, want %+v", j, tt.want)
			}
			if _, ok := p.Rules[0].Extra["judge"]; ok {
				t.Fatal("judge kept among the unknown keys")
			}
			// Written back and read again, the policy is the same, with the same hash.
			again, err := policies.Parse(p.Indented(), "again.json", "p")
			if err != nil {
				t.Fatal(err)
			}
			if again.Hash() != p.Hash() || *again.Rules[0].Judge != *j || len(again.JudgeRules()) != 1 {
				t.Fatalf("round trip: %s", again.Indented())
			}
		})
	}
}

// A judge changes a policy's hash; a rule without one writes no judge key.
func TestJudgeInTheHash(t *testing.T) {
	plain, err := policies.Parse([]byte(`{"rules": [{"rule_id": "j", "description": "d", "condition": "true"}]}`), "a", "p")
	if err != nil {
		t.Fatal(err)
	}
	judged, err := policies.Parse([]byte(`{"rules": [{"rule_id": "j", "description": "d", "condition": "true", "judge": {}}]}`), "b", "p")
	if err != nil {
		t.Fatal(err)
	}
	if plain.Hash() == judged.Hash() || strings.Contains(string(plain.Indented()), "judge") || plain.JudgeRules() != nil {
		t.Fatalf("plain %s judged %s", plain.Indented(), judged.Indented())
	}
}
