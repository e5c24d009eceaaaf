package pyconv_test

import (
	"strings"
	"testing"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/policies/pyconv"
)

// Constructs outside the subset are refused with the construct named, never translated.
func TestRejects(t *testing.T) {
	tests := []struct{ cond, want string }{
		{`step['input'].startswith('x')`, "method .startswith()"},
		{`step.items()`, "method .items()"},
		{`step.type == 'x'`, "attribute access .type"},
		{`step.__class__`, "attribute access .__class__"},
		{`[s for s in steps]`, "unsupported: comprehensions"},
		{`{s['type'] for s in steps}`, "unsupported: comprehensions"},
		{`{k: 1 for k in step}`, "unsupported: comprehensions"},
		{`str(s for s in steps)`, "unsupported: comprehensions"},
		{`x := 1`, "x := ... must be in parentheses"},
		{`step_index and (x := 1`, "not a Python expression"},
		{`(step['x'] := 1)`, "the left of := must be a name"},
		{`(a := 1) and (b := 2) and step.type`, "line 1, column 31: unsupported: attribute access .type"},
		{`(step.x := 1)`, "must be in parentheses"},
		{`(True := 1)`, "the left of := must be a name"},
		{`(x := )`, "x := needs a value"},
		{`(step := 1)`, "rebinding step, a name of the Python tool's namespace"},
		{`(get := 1)`, "rebinding get"},
		{`any_next(lambda s: (s := 1))`, "rebinding the lambda's parameter s"},
		{`any_next(lambda s: t := 1)`, "must be in parentheses"},
		{`__troy_walrus('x', 1)`, "unknown name __troy_walrus"},
		{`matches == 1`, "matches other than called"},
		{`f"{step['type']}" == 'x'`, "f-strings"},
		{`lambda s: True`, "lambda outside any_step"},
		{`step['a'] is 'b'`, "'is' other than with None, True or False"},
		{`step_index * 2 > 1`, "arithmetic other than + and -"},
		{`~step_index`, "the ~ operator"},
		{`import os`, "not a Python expression"},
		{`step['type'] ==`, "not a Python expression"},
		{``, "empty condition"},
		{`steps[::2]`, "slices with a step"},
		{`any_next(lambda a, b: True)`, "lambda of one argument"},
		{`any_next(step)`, "lambda of one argument"},
		{`get(step)`, "get() takes 2 to 3 arguments"},
		{`str(step, 'x')`, "str() takes 1 to 1 arguments"},
		{`step.get('a', default=1)`, "keyword or * arguments"},
		{`{1: 'a'}`, "dict keys other than strings"},
		{`b'x' == step`, "bytes literals"},
		{`{1, 2}`, "set literals"},
		{`get(*steps)`, "keyword or * arguments"},
	}
	for _, tt := range tests {
		_, err := pyconv.Convert(tt.cond)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.cond, err, tt.want)
		}
	}
}

// Every condition of the Python tool's documentation converts.
func TestSeedExamplesConvert(t *testing.T) {
	for _, cond := range []string{
		`get(step, 'metadata.data_classification') == 'pii' and any_next(lambda s: s['type'] == 'tool_call' and get(s, 'metadata.network_zone') == 'external')`,
		`matches(str(step.get('input', {})), r'ignore previous instructions|system update|run as admin')`,
		`step['type'] == 'tool_call' and matches(get(step, 'input.query', ''), r'SELECT|INSERT|UPDATE|DELETE|DROP|UNION')`,
		`get(step, 'metadata.requires_approval') is True and get(step, 'metadata.approval_token') is None`,
		`get(agent, 'metadata.permission_level') != 'admin' and get(step, 'metadata.permission_level') == 'admin'`,
		`step['type'] == 'tool_call' and get(step, 'metadata.category') == 'communication'`,
		// := inside a string is no assignment expression.
		`matches(str(step.get('output', {})), r'\b\d{3}-\d{2}-\d{4}\b|\b\d{16}\b|password\s*[:=]')`,
		`step['description'] == ":=" or step['description'] == """a := b"""`,
	} {
		if out, err := pyconv.Convert(cond); err != nil || out == "" {
			t.Errorf("%s: %v", cond, err)
		}
	}
}

// Where the Python tool's rule fails at run time whatever the trace, or may fail for some
// value types, the conversion says so; the converted condition fails at the same place.
func TestWarnings(t *testing.T) {
	tests := []struct {
		cond string
		want []string
	}{
		{`step['type'] == 'tool_call'`, nil},
		{`step_index >= 10 and all(s['description'] == step['description'] for s in prev_steps[-10:])`, []string{"line 1, column 22: all() is not in the Python tool's condition namespace"}},
		{`len(steps) > 3 or x`, []string{"len() is not in", "the name x is not in"}},
		{`(out := str(step['output'])) and matches(out, 'x')`, nil},
		{`step['type'] == 'tool_call' and matches(get(step, 'input.query', '') + get(step, 'input.sql', ''), r'SELECT')`, []string{"+ raises TypeError unless both operands are strings, both lists or both numbers"}},
		{`step['description'] + 1 == 'x'`, []string{"line 1, column 1: + of a str and an int raises TypeError"}},
		{`step_index + 1 > 2`, nil},
		{`'a' + 'b' == step['type']`, nil},
		{`None < 1`, []string{"< of NoneType and int raises TypeError"}},
		{`step['metadata'].get('tokens', 0) > 100`, []string{"> raises TypeError unless both operands are numbers, both strings or both lists"}},
		{`'x' in 5`, []string{"in of int raises TypeError"}},
		// Columns are the author's, before and after a := (rewritten inside).
		{`(n := len(steps)) and x`, []string{"line 1, column 7: len() is not in", "line 1, column 23: the name x is not in"}},
		{`[a := 1, b := 2] and len(a)`, []string{"line 1, column 22: len() is not in"}},
	}
	for _, tt := range tests {
		r, err := pyconv.Translate(tt.cond)
		if err != nil {
			t.Errorf("%s: %v", tt.cond, err)
			continue
		}
		if len(r.Warnings) != len(tt.want) {
			t.Errorf("%s: warnings %q, want %q", tt.cond, r.Warnings, tt.want)
			continue
		}
		for i, w := range r.Warnings {
			if !strings.Contains(w.String(), tt.want[i]) {
				t.Errorf("%s: warning %q, want %q", tt.cond, w, tt.want[i])
			}
		}
	}
}

func TestLooksLikePython(t *testing.T) {
	tests := []struct {
		conds []string
		want  bool
	}{
		{[]string{`step['type'] == 'tool_call' and get(step, 'metadata.x') is None`}, true},
		{[]string{`any_next(lambda s: s['type'] == 'decision')`}, true},
		{[]string{`step.type == 'tool_call' and step.metadata.x == nil`}, false},
		// Valid in both, with Python's subscript (KeyError on a missing key): Python.
		{[]string{`step['type'] == 'tool_call'`}, true},
		{[]string{`'dangerous' in step['description']`}, true},
		// Valid in both and the same meaning: expr.
		{[]string{`step_index > 50`}, false},
		{[]string{`'a' in 'cat' and step_index >= 1`}, false},
		{[]string{`matches(str(step_index), 'x')`}, false},
		// Valid in both, but attribute access or nil/true/false only mean something in expr.
		{[]string{`step.type == 'tool_call' and step.metadata['x'] == 1`}, false},
		{[]string{`step['metadata']['x'] == nil`}, false},
		{[]string{`step_index > 1`, `step.description == 'x'`, `step['type'] == 'y'`}, false},
		// Meanings differ: and/or on values, == with numbers.
		{[]string{`step_index > 1 and (get(step, 'metadata.x') or get(step, 'metadata.y'))`}, true},
		{[]string{`get(step, 'metadata.retries') == 1`}, true},
		{[]string{`not get(step, 'metadata.ok')`}, true},
		{[]string{`not (step_index > 1)`}, false},
		{[]string{`get(step, 'metadata.a') == get(step, 'metadata.b')`}, true},
		{[]string{`get(step, 'metadata.a') == 'x'`}, false},
		{[]string{`step_index == 2 or step_index + 1 == -3`}, false},
		{[]string{`get(step, 'metadata.n') == 2`}, true},
		{[]string{`get(step, 'metadata.a') in ['x', 'y']`}, false},
		{[]string{`get(step, 'metadata.a') in [1, 'y']`}, true},
		// := is Python.
		{[]string{`(x := step_index) > 1 and x < 5`}, true},
		{[]string{`step['type'] == 'tool_call'`, `get(step, 'a') is True`}, true},
		{[]string{`get(step, 'a') is True`, `step.type == 'x' && true`}, false}, // && is not Python
		{[]string{`all(s['type'] != 'x' for s in prev_steps)`}, true},
		{[]string{`any(prev_steps, .type == 'tool_call')`}, false},
	}
	for _, tt := range tests {
		if got := pyconv.LooksLikePython(tt.conds); got != tt.want {
			t.Errorf("%q: %v, want %v", tt.conds, got, tt.want)
		}
	}
}

func FuzzConvert(f *testing.F) {
	for _, tc := range corpus {
		f.Add(tc.cond)
	}
	f.Add(`(x := 1)`)
	f.Add(`(a := (b := 1) + 1) == b`)
	f.Add(`any_next(lambda s: (t := s['type']) == 'x') and t`)
	f.Add(`matches(out := str(step.get('output', {})), r'a:=b') and out`)
	f.Add(`[x := 1, y := lambda: 1, z := 3]`)
	f.Add(`f(x := 'a:=b' if y else """:=""")`)
	f.Add(`(x :=`)
	f.Add(`x[a:=1:2]`)
	f.Add(`f"{a}"`)
	f.Add(`lambda: 1`)
	tr, err := ingest.DecodeTrace([]byte(corpusTrace))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, cond string) {
		out, err := pyconv.Convert(cond)
		if err != nil {
			return
		}
		if out == "" {
			t.Fatalf("%q converted to nothing", cond)
		}
		// What converts compiles, and runs (a rule error is Python's failure, not a bug).
		p := &policies.Policy{PolicyID: "f", Rules: []policies.Rule{{RuleID: "r", Description: "d", Condition: out, Severity: "low"}}}
		c, err := evaluator.Compile(p)
		if err != nil {
			if strings.Contains(err.Error(), "limit") || strings.Contains(err.Error(), "too many nodes") || strings.Contains(err.Error(), "regular expression") {
				return // a pattern troy refuses, or a condition beyond the sandbox's limits
			}
			t.Fatalf("%q converted to %q, which does not compile: %v", cond, out, err)
		}
		c.Evaluate(tr)
	})
}
