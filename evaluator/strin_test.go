package evaluator

import (
	"strings"
	"testing"

	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/policies"
)

// `in` on strings is a substring test, whether the strings are known when the condition
// compiles or only when it runs; `in` on lists and maps is unchanged.
func TestStringIn(t *testing.T) {
	tr, err := ingest.DecodeTrace([]byte(`{"trace_id": "t", "agent_name": "a", "steps": [
		{"step_id": "s", "type": "tool_call", "description": "a dangerous cat", "input": {}, "output": {},
		 "metadata": {"note": "xyz", "n": 1, "tags": ["x"], "none": null}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		cond string
		want string // T violated, F not, E a rule error, or the compile error's text
	}{
		{`'a' in 'cat'`, "T"},
		{`'dog' in 'cat'`, "F"},
		{`'' in 'cat'`, "T"},
		{`'a' not in 'cat'`, "F"},
		{`not ('dog' in 'cat')`, "T"},
		{`'dangerous' in step.description`, "T"},
		{`'Dangerous' in step.description`, "F"},
		{`'dangerous' in step['description']`, "T"},
		{`'y' in step.metadata.note`, "T"},
		{`step.metadata.note in 'wxyz!'`, "T"},
		{`step.metadata.n in 'abc'`, "E"},
		{`1 in 'abc'`, "mismatched types int and string"},
		{`'x' in step.metadata.tags`, "T"},
		{`'y' in step.metadata.tags`, "F"},
		{`'note' in step.metadata`, "T"},
		{`'x' in step.metadata.none`, "F"},
		{`step.metadata.note in ['xyz', 'b']`, "T"},
		{`any(prev_steps, 'x' in #.description) || 'cat' in step.description`, "T"},
		{`all(steps, 'cat' in #.description)`, "T"},
	}
	for _, tt := range tests {
		p := &policies.Policy{PolicyID: "p", Rules: []policies.Rule{{RuleID: "r", Description: "d", Condition: tt.cond, Severity: "low"}}}
		for _, plain := range []bool{false, true} {
			c, err := compile(p, plain, Options{})
			if len(tt.want) > 1 {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("%s: compile error %v, want %q", tt.cond, err, tt.want)
				}
				break
			}
			if err != nil {
				t.Errorf("%s: %v", tt.cond, err)
				break
			}
			res := c.Evaluate(tr)
			got := "F"
			if len(res.Violations) > 0 {
				got = "T"
			}
			if len(res.RuleErrors) > 0 {
				got = "E"
			}
			if got != tt.want {
				t.Errorf("%s (plain %v): %s, want %s (%+v)", tt.cond, plain, got, tt.want, res.RuleErrors)
			}
		}
	}
}
