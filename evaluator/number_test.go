package evaluator_test

import (
	"testing"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/internal/evaltest"
)

// Numbers as the trace file gives them (Python's json), compared in conditions as Python
// compares them. Each verdict is Python's for the same values (a TypeError is an error).
func TestNumbersCompareAsPython(t *testing.T) {
	big := "123456789012345678901234567890"
	tests := []struct {
		x, y string // JSON literals of step.input.x and step.input.y
		cond string
		want string // "violated", "" or "error"
	}{
		{"1e999999", "0", "step.input.x > 1000", "violated"},
		{"-1e999999", "0", "step.input.x < -1000", "violated"},
		{"Infinity", "0", "step.input.x > 1000", "violated"},
		{"-Infinity", "0", "step.input.x >= -1e308", ""},
		{"NaN", "0", "step.input.x > 1000", ""},
		{"NaN", "0", "step.input.x <= 1000", ""},
		{"NaN", "0", "step.input.x != step.input.x", "violated"},
		{"NaN", "0", "step.input.x == step.input.x", ""},
		{big, "0", "step.input.x > 1000", "violated"},
		{big, "0", "(step.input.x ?? 0) > 1000", "violated"}, // expr passes this one to functions by value
		{big, "0", "py_str(step.input.x ?? 0) == '" + big + "'", "violated"},
		{big, "0", "step.input.x > 1e29", "violated"},
		{big, "0", "step.input.x < 1e30", "violated"},
		{"-" + big, "0", "step.input.x < -9223372036854775807", "violated"},
		{big, "123456789012345678901234567891", "step.input.x < step.input.y", "violated"},
		{big, big, "step.input.x == step.input.y", "violated"},
		{big, "1.2345678901234568e29", "step.input.x == step.input.y", ""},
		{"9007199254740993", "9007199254740992.0", "step.input.x > step.input.y", "violated"},
		{"9007199254740993", "9007199254740992", "step.input.x != step.input.y", "violated"},
		{"1180591620717411303424", "1.180591620717411303424e21", "step.input.x == step.input.y", "violated"},
		{"-0", "0", "step.input.x == 0", "violated"},
		{"-0.0", "0", "step.input.x == 0", "violated"},
		{"1E2", "0", "step.input.x == 100", "violated"},
		{"1e-999999", "0", "step.input.x == 0", "violated"},
		{`"2000"`, "0", "step.input.x > 1000", "error"},
		{big, "0", "step.input.x + 1 > 0", "error"},
		{big, "0", "step.metadata.n == 5", ""}, // the rule's own precheck: n is missing
		{"5", "0", "py_cmp('>', step.input.x, 4)", "violated"},
		{big, "0", "py_cmp('>', step.input.x, 4.5)", "violated"},
		{"NaN", "0", "py_cmp('<', step.input.x, 4)", ""},
		{big, "1", "py_eq(py_add(step.input.x, step.input.y), 123456789012345678901234567891)", "error"}, // no big literals in expr
		{big, "1", "py_str(py_add(step.input.x, step.input.y)) == '123456789012345678901234567891'", "violated"},
		{"9223372036854775807", "1", "py_str(py_add(step.input.x, step.input.y)) == '9223372036854775808'", "violated"},
		{"1e999999", "0", "py_str(step.input) == \"{'x': inf, 'y': 0}\"", "violated"},
		{big, "5.0", "py_str(step.input) == \"{'x': " + big + ", 'y': 5.0}\"", "violated"},
	}
	for _, tt := range tests {
		doc := `{"trace_id": "t", "agent_name": "a", "steps": [{"step_id": "s1", "type": "tool_call", "description": "pay",
			"input": {"x": ` + tt.x + `, "y": ` + tt.y + `}}]}`
		tr, err := ingest.DecodeTrace([]byte(doc))
		if err != nil {
			t.Errorf("x=%s y=%s: %v", tt.x, tt.y, err)
			continue
		}
		for _, compile := range []func() (*evaluator.Compiled, error){
			func() (*evaluator.Compiled, error) { return evaluator.Compile(evaltest.PolicyOf(tt.cond)) },
			func() (*evaluator.Compiled, error) { return evaluator.CompileReference(evaltest.PolicyOf(tt.cond)) },
		} {
			c, err := compile()
			if tt.want == "error" && err != nil {
				continue // refused when the policy loads: an error too
			}
			if err != nil {
				t.Errorf("%s: %v", tt.cond, err)
				continue
			}
			steps, errs := violating(t, c, tr)
			got := ""
			switch {
			case len(errs) > 0:
				got = "error"
			case len(steps) > 0:
				got = "violated"
			}
			if got != tt.want {
				t.Errorf("x=%s y=%s: %s: got %q, want %q (errors %+v)", tt.x, tt.y, tt.cond, got, tt.want, errs)
			}
		}
	}
}
