package evaluator_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/evaltest"
	"github.com/troy-audit/troy/schemas"
)

// A rule that cannot be evaluated at a step (here: a string compared with a number, as
// owasp_llm_top10's unbounded-consumption rule does with "200000") blocks the step in
// enforce mode unless the policy or the guard says skip; every mode lists it.
func TestGuardRuleErrors(t *testing.T) {
	const failing = "step.metadata.total_tokens > 100000"
	tests := []struct {
		name, mode, policySetting, guardSetting string
		tokens                                  any
		allowed, callback                       bool
		errors                                  int
	}{
		{name: "enforce blocks by default", mode: "enforce", tokens: "200000", allowed: false, errors: 1},
		{name: "a number is a violation", mode: "enforce", tokens: 200000, allowed: false, errors: 0},
		{name: "a small number passes", mode: "enforce", tokens: 5, allowed: true, errors: 0},
		{name: "policy says block", mode: "enforce", policySetting: "block", tokens: "200000", allowed: false, errors: 1},
		{name: "policy says skip", mode: "enforce", policySetting: "skip", tokens: "200000", allowed: true, errors: 1},
		{name: "guard's skip wins over policy's block", mode: "enforce", policySetting: "block", guardSetting: "skip", tokens: "200000", allowed: true, errors: 1},
		{name: "guard's block wins over policy's skip", mode: "enforce", policySetting: "skip", guardSetting: "block", tokens: "200000", allowed: false, errors: 1},
		{name: "monitor allows and calls back", mode: "monitor", tokens: "200000", allowed: true, callback: true, errors: 1},
		{name: "monitor with skip has nothing to report", mode: "monitor", policySetting: "skip", tokens: "200000", allowed: true, errors: 1},
		{name: "dry-run allows", mode: "dry-run", tokens: "200000", allowed: true, errors: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := evaltest.PolicyOf(failing)
			if tt.policySetting != "" {
				p.Extra = map[string]json.RawMessage{"on_rule_error": json.RawMessage(`"` + tt.policySetting + `"`)}
			}
			c, err := evaluator.Compile(p)
			if err != nil {
				t.Fatal(err)
			}
			var seen []schemas.Decision
			g, err := c.NewGuard(evaluator.GuardOptions{Mode: tt.mode, OnRuleError: tt.guardSetting, OnViolation: func(d schemas.Decision) { seen = append(seen, d) }})
			if err != nil {
				t.Fatal(err)
			}
			d, err := g.Check(evaluator.CheckRequest{GuardStep: schemas.GuardStep{Action: "chat", Type: "llm_call", Metadata: map[string]any{"total_tokens": tt.tokens}}})
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != tt.allowed || len(d.RuleErrors) != tt.errors || d.RuleErrors == nil {
				t.Fatalf("decision %+v: want allowed %v with %d rule errors", d, tt.allowed, tt.errors)
			}
			if tt.errors > 0 && (d.RuleErrors[0].RuleID != "r1" || !strings.Contains(d.RuleErrors[0].Error, "invalid operation: string > int")) {
				t.Fatalf("rule error %+v: want r1 and the reason", d.RuleErrors[0])
			}
			if (len(seen) == 1) != tt.callback {
				t.Fatalf("monitor callbacks %+v, want one: %v", seen, tt.callback)
			}
			// The next step is decided on its own: an earlier rule error does not stick.
			next, err := g.Check(evaluator.CheckRequest{GuardStep: schemas.GuardStep{Action: "chat", Type: "llm_call", Metadata: map[string]any{"total_tokens": 1}}})
			if err != nil || !next.Allowed || len(next.RuleErrors) != 0 {
				t.Fatalf("the next step: %+v %v", next, err)
			}
			if errs := g.RuleErrors(); tt.errors > 0 && (len(errs) != 1 || errs[0].Count != 1 || errs[0].FirstStep != "step-0") {
				t.Fatalf("the session's rule errors %+v", errs)
			}
		})
	}
	c, err := evaluator.Compile(evaltest.PolicyOf(failing))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.NewGuard(evaluator.GuardOptions{OnRuleError: "ignore"}); err == nil || !strings.Contains(err.Error(), `invalid rule error setting "ignore": must be one of block, skip`) {
		t.Fatalf("got %v", err)
	}
}

// Agent metadata given with one check holds for that check only, memoized counts over
// earlier steps included.
func TestGuardAgentMetadataForOneCheck(t *testing.T) {
	c, err := evaluator.Compile(evaltest.PolicyOf(
		"any(prev_steps, .description == 'read' and agent.metadata.role == 'intern')",
		"agent.metadata.role == 'intern' and trace.metadata.role == 'intern'",
	))
	if err != nil {
		t.Fatal(err)
	}
	g, err := c.NewGuard(evaluator.GuardOptions{AgentMetadata: map[string]any{"role": "admin"}})
	if err != nil {
		t.Fatal(err)
	}
	intern := map[string]any{"role": "intern"}
	for i, tc := range []struct {
		action string
		meta   map[string]any
		want   string // rules violated
	}{
		{"read", nil, ""},
		{"write", nil, ""},
		{"write", intern, "r1,r2"},
		{"write", nil, ""},
		{"write", map[string]any{"role": "admin"}, ""},
		{"write", intern, "r1,r2"},
	} {
		d, err := g.Check(evaluator.CheckRequest{GuardStep: schemas.GuardStep{Action: tc.action}, AgentMetadata: tc.meta})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, v := range d.Violations {
			got = append(got, v.RuleID)
		}
		if strings.Join(got, ",") != tc.want {
			t.Errorf("check %d (%s, %v): violated %v, want %q", i, tc.action, tc.meta, got, tc.want)
		}
	}
	if tr := g.Trace(); tr.Metadata["role"] != "admin" {
		t.Errorf("the session's metadata is kept: %v", tr.Metadata)
	}
}

// A (rule, key) pair no checked step has carried is reported once per session; a key one
// step carried is never reported after.
func TestGuardMissingMetadata(t *testing.T) {
	c, err := evaluator.Compile(evaltest.PolicyOf(
		"step.metadata.network_zone == 'external'",
		"step.metadata.data_classification == 'pii' and step.metadata.network_zone == 'internal'",
	))
	if err != nil {
		t.Fatal(err)
	}
	g, err := c.NewGuard(evaluator.GuardOptions{})
	if err != nil {
		t.Fatal(err)
	}
	keys := func(ms []schemas.MissingMetadata) string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Key)
		}
		return strings.Join(out, ",")
	}
	for i, tt := range []struct {
		meta map[string]any
		want string
	}{
		{map[string]any{"data_classification": "pii"}, "network_zone,network_zone"},
		{nil, ""}, // each pair once
		{map[string]any{"network_zone": "internal"}, ""},
	} {
		if got := keys(g.MissingMetadata(tt.meta)); got != tt.want {
			t.Errorf("check %d: missing %q, want %q", i, got, tt.want)
		}
	}
	fresh, _ := c.NewGuard(evaluator.GuardOptions{})
	if got := keys(fresh.MissingMetadata(map[string]any{"network_zone": "x"})); got != "data_classification" {
		t.Errorf("a new session: missing %q", got)
	}
}
