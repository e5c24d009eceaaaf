package evaluator_test

import (
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/evaltest"
	"github.com/troy-audit/troy/policies"
)

// injection_score and injected read any value as matches() does, in quantifiers too, and
// give the same answers evaluated plainly.
func TestInjectionFunctions(t *testing.T) {
	tests := []struct{ cond, want string }{
		{"injected(step.input)", "s1"},
		{"injection_score(step.input.prompt ?? '') >= 0.5", "s1"},
		{"injection_score(step) > 0.5", "s1"},
		{"injected(nil) or injected(5) or injected([])", ""},
		{"step.type == 'tool_call' and any(prev_steps, injected(.input))", "s2,s3"},
		{"count(steps, injected(#.input)) == 1 and step_index == 4", "s5"},
	}
	for _, tt := range tests {
		for plain, compile := range []func(*policies.Policy) (*evaluator.Compiled, error){evaluator.Compile, evaluator.CompileReference} {
			c, err := compile(evaltest.PolicyOf(tt.cond))
			if err != nil {
				t.Fatalf("%s: %v", tt.cond, err)
			}
			got, errs := violating(t, c, fixture())
			if len(errs) > 0 || strings.Join(got, ",") != tt.want {
				t.Errorf("%s (plain %d): violating %v, errors %+v; want %s", tt.cond, plain, got, errs, tt.want)
			}
		}
	}
}

// A misuse is a load-time error naming the rule; a text over the budget breaks the
// memory limit.
func TestInjectionFunctionErrors(t *testing.T) {
	for _, cond := range []string{"injected()", "injected(step, 1)", "injection_score(step) == 'high'", "injected(step) > 1"} {
		_, err := evaluator.Compile(evaltest.PolicyOf(cond))
		if err == nil || !strings.Contains(err.Error(), "r1") {
			t.Errorf("%s: want a load-time error naming r1, got %v", cond, err)
		}
	}
	c := compileWith(t, evaluator.Options{Limits: evaluator.Limits{Time: time.Minute, Memory: 4 << 10}}, "injected(repeat('x', step_index + 3000))")
	if _, errs := violating(t, c, fixture()); len(errs) != 1 || !strings.Contains(errs[0].FirstError, "scoring a text of") {
		t.Fatalf("want a memory limit error from scoring, got %+v", errs)
	}
}
