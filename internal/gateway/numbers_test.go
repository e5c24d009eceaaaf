package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

// Guard checks over HTTP: the decision lists rule errors (blocking in enforce mode, not
// in monitor), numbers are read as Python's json reads them, and the session's report
// gives them back as they were.
func TestGuardCheckRuleErrorsAndNumbers(t *testing.T) {
	srv, b := deploymentWithBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := policies.Parse([]byte(`{"rules": [
		{"rule_id": "amount", "description": "large amount", "condition": "(step.input.amount ?? 0) > 1000", "weight": 40},
		{"rule_id": "tokens", "description": "too many tokens", "condition": "(step.metadata.total_tokens ?? 0) > 100000", "weight": 30}]}`), "p.json", "p")
	if err != nil {
		t.Fatal(err)
	}
	c, err := evaluator.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := pipeline.NewPolicies(b).Put(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	big := "123456789012345678901234567890"
	tests := []struct {
		mode, input, metadata string
		allowed               bool
		violations, errors    int
	}{
		{"enforce", `{}`, `{"total_tokens": "200000"}`, false, 0, 1},
		{"monitor", `{}`, `{"total_tokens": "200000"}`, true, 0, 1},
		{"dry-run", `{}`, `{"total_tokens": "200000"}`, true, 0, 1},
		{"enforce", `{"amount": 1e999999}`, `{}`, false, 1, 0},
		{"enforce", `{"amount": Infinity}`, `{}`, false, 1, 0},
		{"enforce", `{"amount": ` + big + `}`, `{}`, false, 1, 0},
		{"enforce", `{"amount": NaN}`, `{}`, true, 0, 0},
		{"enforce", `{"amount": -1e999999}`, `{"total_tokens": 5}`, true, 0, 0},
	}
	for i, tt := range tests {
		body := fmt.Sprintf(`{"session": "nums", "agent": "bot", "policy": %q, "mode": %q, "step": {"action": "pay", "input": %s, "metadata": %s}}`, hash, tt.mode, tt.input, tt.metadata)
		r := call(t, srv, "POST", "/v1/guard/check", token, body)
		if r.status != 200 {
			t.Fatalf("check %d: %d %s", i, r.status, r.raw)
		}
		var d schemas.Decision
		if err := json.Unmarshal([]byte(r.raw), &d); err != nil {
			t.Fatal(err)
		}
		if d.Allowed != tt.allowed || len(d.Violations) != tt.violations || len(d.RuleErrors) != tt.errors || !strings.Contains(r.raw, `"rule_errors":`) {
			t.Fatalf("check %d (%s %s %s): %s", i, tt.mode, tt.input, tt.metadata, r.raw)
		}
		if tt.errors > 0 && (d.RuleErrors[0].RuleID != "tokens" || !strings.Contains(d.RuleErrors[0].Error, "string > int")) {
			t.Fatalf("check %d: rule error %+v", i, d.RuleErrors)
		}
	}
	if r := call(t, srv, "POST", "/v1/guard/check", token, `{"session": "nums", "agent": "bot", "step": {"action": "pay", "input": {"amount": -NaN}}}`); r.status != 400 || errorCode(r) != "bad_json" {
		t.Fatalf("-NaN: %d %s", r.status, r.raw)
	}
	if r := call(t, srv, "POST", "/v1/traces/nums/end", token, `{"agent": "bot"}`); r.status != 202 {
		t.Fatalf("end: %d %s", r.status, r.raw)
	}
	a := waitReport(t, srv, "/v1/traces/nums/report?agent=bot")
	if len(a.Trace.Steps) != len(tests) || a.Info == nil || len(a.Info.RuleErrors) != 1 || a.Info.RuleErrors[0].Count != 3 {
		t.Fatalf("report: %d steps, info %+v", len(a.Trace.Steps), a.Info)
	}
	if f, ok := a.Trace.Steps[3].Input["amount"].(float64); !ok || !math.IsInf(f, 1) {
		t.Fatalf("infinity came back as %#v", a.Trace.Steps[3].Input["amount"])
	}
	if got := fmt.Sprint(a.Trace.Steps[5].Input["amount"]); got != big {
		t.Fatalf("the big integer came back as %s", got)
	}
	if f, ok := a.Trace.Steps[6].Input["amount"].(float64); !ok || !math.IsNaN(f) {
		t.Fatalf("NaN came back as %#v", a.Trace.Steps[6].Input["amount"])
	}
}
