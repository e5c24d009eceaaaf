package evaluator_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/evaltest"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

func categoryTrace() *schemas.Trace {
	t := &schemas.Trace{TraceID: "t", AgentName: "bot", Steps: []*schemas.Step{
		{StepID: "s1", Type: "llm_call", Description: "send_payment"}, // not a tool call
		{StepID: "s2", Type: "tool_call", Description: "get_balance", Input: map[string]any{"account": "a1"}},
		{StepID: "s3", Type: "tool_call", Description: "send_payment", Input: map[string]any{"iban": "DE00", "amount": 10}},
		{StepID: "s4", Type: "tool_call", Description: "tool_7", Metadata: map[string]any{"tool_description": "Execute a shell command on the host."}},
		{StepID: "s5", Type: "tool_call", Description: "helper", Input: map[string]any{"command": "rm -rf /"}},
		{StepID: "s6", Type: "tool_call", Description: "Acme_Wipe", Input: map[string]any{"target": "db"}},
		{StepID: "s7", Type: "tool_call", Description: "write_file", Input: map[string]any{"path": "/etc/x", "content": "y"}},
	}}
	t.Normalize()
	return t
}

// category(step) in conditions, with the policy's override of Acme_Wipe, the same
// optimized, plain, incrementally and in the guard.
func TestCategoryInConditions(t *testing.T) {
	tests := []struct {
		cond string
		want string // violating steps
	}{
		{"'money' in category(step)", "s3"},
		{"'outbound' in category(step) and 'money' in category(step)", "s3"},
		{"'read' in category(step)", "s2"},
		{"'code_exec' in category(step)", "s4,s5"},
		{"'destructive' in category(step)", "s6"},
		{"'file_write' in category(step)", "s7"},
		{"len(category(step)) == 0", "s1"},
		{"category(step) == ['outbound', 'money']", "s3"},
		{"'money' in category(step) and any(prev_steps, 'read' in category(#))", "s3"},
		{"count(prev_steps, 'code_exec' in category(#)) >= 2", "s6,s7"},
		{"any(steps, 'destructive' in category(#)) and step_index == 0", "s1"},
		{"'money' in category(get(steps, '2')) and step_index == 0", "s1"},
		{"len(category(get(steps, '99'))) == 0 and step_index == 1", "s2"},
	}
	policy := func(cond string) *policies.Policy {
		p := evaltest.PolicyOf(cond)
		p.Extra = map[string]json.RawMessage{"tool_categories": json.RawMessage(`{"acme_wipe": ["destructive"]}`)}
		return p
	}
	for _, tc := range tests {
		t.Run(tc.cond, func(t *testing.T) {
			violatesEveryWay(t, policy(tc.cond), categoryTrace(), tc.want)
		})
	}
}

func stepIDs(vs []schemas.Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.StepID)
	}
	return out
}

// The guard sees a proposed step as post-hoc evaluation sees the recorded one: its action
// is the name, its metadata may carry the tool's description.
func TestCategoryInTheGuard(t *testing.T) {
	c, err := evaluator.Compile(evaltest.PolicyOf("'money' in category(step)", "'code_exec' in category(step)"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := c.NewGuard(evaluator.GuardOptions{Mode: schemas.ModeEnforce})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		step  schemas.GuardStep
		rules string
	}{
		{schemas.GuardStep{Action: "search_docs", Input: map[string]any{"query": "x"}}, ""},
		{schemas.GuardStep{Action: "sendPayment", Input: map[string]any{"to": "x"}}, "r1"},
		{schemas.GuardStep{Action: "t9", Metadata: map[string]any{"tool_description": "Runs Python code in a sandbox."}}, "r2"},
		{schemas.GuardStep{Action: "send_payment", Type: "llm_call"}, ""},
	} {
		d, err := g.Check(evaluator.CheckRequest{GuardStep: tc.step})
		if err != nil {
			t.Fatal(err)
		}
		var rules []string
		for _, v := range d.Violations {
			rules = append(rules, v.RuleID)
		}
		if strings.Join(rules, ",") != tc.rules || d.Allowed != (tc.rules == "") {
			t.Errorf("%s: violated %v (allowed %v), want %q", tc.step.Action, rules, d.Allowed, tc.rules)
		}
	}
}

func TestCategoryMisuseIsALoadError(t *testing.T) {
	for _, tc := range []struct{ cond, want string }{
		{"'money' in category(step.input)", `rule "r1": condition: line 1, column 26: category takes a step, got an object`},
		{"'money' in category('send_payment')", `rule "r1": condition: line 1, column 21: category takes a step, got a text`},
		{"'money' in category(steps)", `rule "r1": condition: line 1, column 21: category takes a step, got a list`},
		{"category()", `rule "r1": condition: line 1, column 1: not enough arguments to call category`},
		{"category(step) == 'money'", `rule "r1": condition: line 1, column 16: invalid operation: == (mismatched types []interface {} and string)`},
	} {
		_, err := evaluator.Compile(evaltest.PolicyOf(tc.cond))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.cond, err, tc.want)
		}
	}
}

func TestCategoryOfAValueThatIsNotAStepFails(t *testing.T) {
	c, err := evaluator.Compile(evaltest.PolicyOf("'money' in category(get(step, 'input')) or step_index == 0"))
	if err != nil {
		t.Fatal(err)
	}
	res := c.Evaluate(categoryTrace())
	if len(res.RuleErrors) != 1 || res.RuleErrors[0].Count != 7 || !strings.Contains(res.RuleErrors[0].FirstError, "category takes a step, got an object") {
		t.Fatalf("rule errors %+v, want one at every step: each has an input object", res.RuleErrors)
	}
}

// Inference is charged to the condition's budget: a step with a great many arguments
// breaks a small memory limit instead of costing without bound.
func TestCategoryIsCharged(t *testing.T) {
	c, err := evaluator.CompileWith(evaltest.PolicyOf("'money' in category(step)"), evaluator.Options{Limits: evaluator.Limits{Memory: 64 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]any{}
	for i := range 2000 {
		in[strings.Repeat("k", 1+i%50)+string(rune('a'+i%26))+strings.Repeat("z", i/26)] = i
	}
	tr := &schemas.Trace{TraceID: "t", AgentName: "a", Steps: []*schemas.Step{{StepID: "s", Type: "tool_call", Description: "pay", Input: in}}}
	tr.Normalize()
	res := c.Evaluate(tr)
	if len(res.RuleErrors) != 1 || !strings.Contains(res.RuleErrors[0].FirstError, "category of a step of 2000 arguments exceeds the 64 KiB limit") {
		t.Fatalf("rule errors %+v, want the memory limit", res.RuleErrors)
	}
}
