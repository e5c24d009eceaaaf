package pyconv_test

import (
	"strings"
	"testing"

	"github.com/troy-audit/troy/policies/pyconv"
)

// Constructs outside the subset are refused with the construct named, never translated.
func TestRejects(t *testing.T) {
	tests := []struct{ cond, want string }{
		{`step['input'].startswith('x')`, "method .startswith()"},
		{`step.items()`, "method .items()"},
		{`step.type == 'x'`, "attribute access .type"},
		{`step.__class__`, "attribute access .__class__"},
		{`[s for s in steps]`, "comprehensions other than a generator"},
		{`{s['type'] for s in steps}`, "comprehensions other than a generator"},
		{`{k: 1 for k in step}`, "comprehensions other than a generator"},
		{`(x := 1)`, "assignment expressions (:=)"},
		{`f"{step['type']}" == 'x'`, "f-strings"},
		{`__import__('os')`, "call of __import__()"},
		{`eval('1')`, "call of eval()"},
		{`lambda s: True`, "lambda outside any_step"},
		{`foo(1)`, "call of foo()"},
		{`x == 1`, `unknown name "x"`},
		{`step['a'] is 'b'`, "'is' other than with None, True or False"},
		{`step_index * 2 > 1`, "arithmetic other than + and -"},
		{`~step_index`, "the ~ operator"},
		{`import os`, "not a Python expression"},
		{`step['type'] ==`, "not a Python expression"},
		{``, "empty condition"},
		{`steps[::2]`, "slices with a step"},
		{`any(a for a in steps for b in steps)`, "more than one for"},
		{`any((a, b) == 1 for a, b in steps)`, "unpacking in a for"},
		{`any_next(lambda a, b: True)`, "lambda of one argument"},
		{`any_next(step)`, "lambda of one argument"},
		{`get(step)`, "get() takes 2 to 3 arguments"},
		{`str(step, 'x')`, "str() takes 1 to 1 arguments"},
		{`step.get('a', default=1)`, "keyword or * arguments"},
		{`{1: 'a'}`, "dict keys other than strings"},
		{`b'x' == step`, "bytes literals"},
		{`{1, 2}`, "set literals"},
		{`len(*steps)`, "keyword or * arguments"},
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
	} {
		if out, err := pyconv.Convert(cond); err != nil || out == "" {
			t.Errorf("%s: %v", cond, err)
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
		{[]string{`step['type'] == 'tool_call'`}, false}, // valid in both: nothing says Python
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
	f.Add(`f"{a}"`)
	f.Add(`lambda: 1`)
	f.Fuzz(func(t *testing.T, cond string) {
		out, err := pyconv.Convert(cond)
		if err == nil && out == "" {
			t.Fatalf("%q converted to nothing", cond)
		}
	})
}
