package policies_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

func TestParseValidates(t *testing.T) {
	rule := func(extra string) string {
		return `{"rules": [{"rule_id": "r1", "description": "d", "condition": "true"` + extra + `}]}`
	}
	tests := []struct{ name, doc, want string }{
		{"duplicate ids", `{"rules": [{"rule_id": "r", "description": "d", "condition": "true"}, {"rule_id": "r", "description": "d", "condition": "false"}]}`,
			`p.json: rule "r": duplicate rule_id (rules[0] and rules[1])`},
		{"unknown severity", rule(`, "severity": "urgent"`), `p.json: rule "r1": severity: "urgent" is not one of critical, high, medium, low`},
		{"negative weight", rule(`, "weight": -5`), `p.json: rule "r1": weight: -5 is negative`},
		{"fractional weight", rule(`, "weight": 2.5`), `p.json: rule "r1": weight: expected a whole number, got 2.5`},
		{"weight string", rule(`, "weight": "10"`), `p.json: rule "r1": weight: expected a whole number, got a string "10"`},
		{"empty condition", `{"rules": [{"rule_id": "r1", "description": "d", "condition": " "}]}`, `p.json: rule "r1": condition: is empty`},
		{"missing condition", `{"rules": [{"rule_id": "r1", "description": "d"}]}`, `p.json: rule "r1": condition: required field is missing`},
		{"missing rule id", `{"rules": [{"description": "d", "condition": "true"}]}`, `p.json: rules[0]: rule_id: required field is missing`},
		{"rule not object", `{"rules": ["x"]}`, `p.json: rules[0]: expected a rule object, got a string "x"`},
		{"no rules", `{"policy_id": "p"}`, `p.json: rules: required field is missing (is this a policy file?)`},
		{"rules not array", `{"rules": {}}`, `p.json: rules: expected an array of rules, got an object`},
		{"not json", "{\n  \"rules\": [,]}", `p.json: line 2, column 13: invalid JSON`},
		{"array", `[]`, `p.json: expected a policy object, got array`},
		{"bad utf8", "{\"rules\": [], \"description\": \"\xff\"}", `p.json: invalid UTF-8`},
		{"empty", "", `p.json: empty document: expected a policy object`},
		{"blank", " \n", `p.json: empty document: expected a policy object`},
		{"bad first byte", "x", `p.json: line 1, column 1: invalid JSON`},
		{"truncated", `{"rules": [`, `p.json: line 1, column`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policies.Parse([]byte(tc.doc), "p.json", "p")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error should be one line: %q", err)
			}
		})
	}
}

func TestParseDefaultsAndKeepsUnknownKeys(t *testing.T) {
	doc := `{"global_config": {"halt_on_severity": "critical"}, "rules": [{"rule_id": "r1", "description": "d", "condition": "true", "mitigation": "redact first"}]}`
	p, err := policies.Parse([]byte(doc), "x/my_policy.json", "my_policy")
	if err != nil {
		t.Fatal(err)
	}
	r := p.Rules[0]
	if p.PolicyID != "my_policy" || r.Severity != "medium" || r.Weight != 10 {
		t.Fatalf("defaults not applied: %+v %+v", p, r)
	}
	out := string(p.Indented())
	for _, want := range []string{`"global_config": {"halt_on_severity": "critical"}`, `"mitigation": "redact first"`, `"severity": "medium"`, `"weight": 10`} {
		if !strings.Contains(strings.Join(strings.Fields(out), ""), strings.Join(strings.Fields(want), "")) {
			t.Errorf("written policy lacks %s:\n%s", want, out)
		}
	}
	again, err := policies.Parse(p.Indented(), "again", "x")
	if err != nil {
		t.Fatal(err)
	}
	if again.Hash() != p.Hash() {
		t.Errorf("a written policy should read back to the same content")
	}
}

func TestMergeFirstRuleWins(t *testing.T) {
	a := &policies.Policy{Rules: []policies.Rule{{RuleID: "x", Condition: "a"}, {RuleID: "y", Condition: "a"}}}
	b := &policies.Policy{Rules: []policies.Rule{{RuleID: "y", Condition: "b"}, {RuleID: "z", Condition: "b"}}}
	m := policies.Merge("id", "desc", a, b)
	var got []string
	for _, r := range m.Rules {
		got = append(got, r.RuleID+"="+r.Condition)
	}
	if strings.Join(got, ",") != "x=a,y=a,z=b" {
		t.Fatalf("got %v", got)
	}
}

func TestResolveFileOrTemplate(t *testing.T) {
	p, err := policies.Resolve("soc2")
	if err != nil || p.Source != "template soc2" {
		t.Fatalf("template: %v %v", p, err)
	}
	if _, err := policies.LookupTemplate("owasp-llm-top10"); err != nil {
		t.Fatalf("templates are also found by policy id: %v", err)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "soc2")
	if err := os.WriteFile(f, []byte(`{"policy_id": "mine", "rules": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := policies.Resolve(f); err != nil || p.PolicyID != "mine" {
		t.Fatalf("a file wins over a template name: %v %v", p, err)
	}
	_, err = policies.Resolve("nope.json")
	if err == nil || !strings.Contains(err.Error(), "nope.json: no such file, and no bundled template of that name (templates: agent_defense, agent_safety, data_protection, guardrails, hipaa, mcp, minimal, owasp_llm_top10, safe_browsing, soc2)") {
		t.Fatalf("got %v", err)
	}
}

func TestTemplatesAreWellFormed(t *testing.T) {
	all, err := policies.Templates()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"agent_defense", "agent_safety", "data_protection", "guardrails", "hipaa", "mcp", "minimal", "owasp_llm_top10", "safe_browsing", "soc2"}
	if got := policies.TemplateNames(); !slices.Equal(got, want) {
		t.Fatalf("templates %v, want %v", got, want)
	}
	for _, tp := range all {
		if len(tp.Policy.Rules) < 3 {
			t.Errorf("%s has %d rules; every template needs at least 3", tp.Name, len(tp.Policy.Rules))
		}
		if tp.Policy.Description == "" {
			t.Errorf("%s has no description", tp.Name)
		}
		if _, err := evaluator.Compile(tp.Policy); err != nil {
			t.Errorf("%s: %v", tp.Name, err)
		}
	}
}

// templateCase is a short trace: the rule must fire at its last step ("fires") or at no
// step ("quiet").
type templateCase struct {
	Steps []struct {
		Type        string         `json:"type"`
		Description string         `json:"description"`
		Input       map[string]any `json:"input"`
		Output      map[string]any `json:"output"`
		Metadata    map[string]any `json:"metadata"`
	} `json:"steps"`
	AgentMetadata map[string]any `json:"agent_metadata"`
	TraceMetadata map[string]any `json:"trace_metadata"`
}

func (c templateCase) trace() *schemas.Trace {
	t := &schemas.Trace{TraceID: "case", AgentName: "agent", Metadata: map[string]any{}}
	for k, v := range c.TraceMetadata {
		t.Metadata[k] = v
	}
	for k, v := range c.AgentMetadata {
		t.Metadata[k] = v
	}
	for i, s := range c.Steps {
		t.Steps = append(t.Steps, &schemas.Step{StepID: fmt.Sprintf("s%d", i+1), Type: s.Type, Description: s.Description, Input: s.Input, Output: s.Output, Metadata: s.Metadata})
	}
	t.Normalize()
	return t
}

// Every rule of troy's own templates fires on a violating step and stays quiet on a safe
// one, evaluated after the fact and, for rules that do not look ahead, by the guard too.
// (The Python tool's templates have their own cases, in templates_test.go.)
func TestEveryTemplateRuleFiresAndStaysQuiet(t *testing.T) {
	raw, err := os.ReadFile("testdata/template-cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases map[string]struct{ Fires, Quiet templateCase }
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	all, err := policies.Templates()
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range all {
		if slices.ContainsFunc(pythonTemplates, func(p pyTemplate) bool { return p.stem == tp.Name }) {
			continue
		}
		// A judge rule's condition is the pre-filter that picks the steps shown to the
		// model: it is checked as a plain rule (the model's side is tested apart, against a
		// scripted server).
		plain := *tp.Policy
		plain.Rules = slices.Clone(plain.Rules)
		for i := range plain.Rules {
			plain.Rules[i].Judge = nil
		}
		c, err := evaluator.Compile(&plain)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range tp.Policy.Rules {
			t.Run(r.RuleID, func(t *testing.T) {
				tc, ok := cases[r.RuleID]
				if !ok {
					t.Fatalf("no test case for rule %s of template %s", r.RuleID, tp.Name)
				}
				fires := tc.Fires.trace()
				last := fires.Steps[len(fires.Steps)-1].StepID
				if got := stepsViolating(c, fires, r.RuleID); !slices.Contains(got, last) {
					t.Errorf("did not fire at step %s (fired at %v)", last, got)
				}
				if got := stepsViolating(c, tc.Quiet.trace(), r.RuleID); len(got) > 0 {
					t.Errorf("fired on the safe case at %v", got)
				}
				if c.LooksAhead(r.RuleID) {
					return
				}
				if !guardViolates(t, c, tc.Fires, r.RuleID) {
					t.Errorf("the guard did not block the violating step")
				}
				if guardViolates(t, c, tc.Quiet, r.RuleID) {
					t.Errorf("the guard blocked the safe step")
				}
			})
		}
	}
}

func stepsViolating(c *evaluator.Compiled, tr *schemas.Trace, rule string) []string {
	res := c.Evaluate(tr)
	var out []string
	for _, v := range res.Violations {
		if v.RuleID == rule {
			out = append(out, v.StepID)
		}
	}
	return out
}

// guardViolates checks the case's steps one by one and reports whether the rule was
// violated at the last one.
func guardViolates(t *testing.T, c *evaluator.Compiled, tc templateCase, rule string) bool {
	t.Helper()
	meta := map[string]any{}
	for k, v := range tc.TraceMetadata {
		meta[k] = v
	}
	for k, v := range tc.AgentMetadata {
		meta[k] = v
	}
	g, err := c.NewGuard(evaluator.GuardOptions{AgentName: "agent", AgentMetadata: meta})
	if err != nil {
		t.Fatal(err)
	}
	var d schemas.Decision
	for _, s := range tc.Steps {
		if d, err = g.Check(evaluator.CheckRequest{GuardStep: schemas.GuardStep{Action: s.Description, Input: s.Input, Metadata: s.Metadata, Type: s.Type}}); err != nil {
			t.Fatal(err)
		}
		// Outputs are recorded after the step ran, as an agent's adapter does.
		if err := g.RecordOutput(d.StepID, s.Output); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range d.Violations {
		if v.RuleID == rule {
			return true
		}
	}
	// Rules about a step's output can only be decided once the output is recorded:
	// the post-hoc view of the guarded session shows them.
	tr := g.Trace()
	for _, v := range c.Evaluate(tr).Violations {
		if v.RuleID == rule && v.StepID == d.StepID {
			return true
		}
	}
	return false
}
