package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A policy written for the Python tool converts, and loads as it is with a notice.
func TestPythonPolicy(t *testing.T) {
	t.Chdir(t.TempDir())
	py := example(t, "python_policy.json")
	r := troyctl(t, "policies", "convert", py, "-o", "converted.json")
	if r.code != 0 || strings.Count(r.stderr, "  converted  ") != 6 || !strings.Contains(r.stderr, "6 rules written to converted.json") {
		t.Fatalf("convert: exit %d\n%s", r.code, r.stderr)
	}
	raw, err := os.ReadFile("converted.json")
	if err != nil || !strings.Contains(string(raw), `"mitigation": "block external calls after PII"`) || !strings.Contains(string(raw), `"global_config"`) || strings.Contains(string(raw), "lambda") {
		t.Fatalf("converted policy: %v\n%s", err, raw)
	}
	for _, policy := range []string{py, "converted.json"} {
		r = troyctl(t, "audit", example(t, "traces", "pii-exfiltration.json"), policy, "--json")
		if r.code != 0 || !strings.Contains(r.stdout, `"risk_score": 50`) || !strings.Contains(r.stdout, `"rule_id": "pii-exfiltration"`) {
			t.Fatalf("audit with %s: exit %d\n%s%s", policy, r.code, r.stdout, r.stderr)
		}
		notice := strings.Contains(r.stderr, "6 conditions converted from Python")
		if notice != (policy == py) {
			t.Fatalf("audit with %s: notice %v: %q", policy, notice, r.stderr)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"rules": [{"rule_id": "r1", "description": "d", "condition": "step['type'].upper() == 'X' and step['x'] is None"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r = troyctl(t, "policies", "convert", bad)
	if r.code != exitError || !strings.Contains(r.stderr, "failed     r1: line 1, column ") || !strings.Contains(r.stderr, "unsupported: method .upper()") {
		t.Fatalf("bad: exit %d\n%s", r.code, r.stderr)
	}
	r = troyctl(t, "audit", example(t, "traces", "clean-run.json"), bad)
	if r.code != exitError || !strings.Contains(r.stderr, `rule "r1": condition (Python) cannot be converted`) {
		t.Fatalf("audit with bad: exit %d\n%s", r.code, r.stderr)
	}
}

// Where the Python tool's rule fails at run time, convert and the commands that load the
// policy warn, naming the rule and the reason; the rule behaves as the Python tool's does.
func TestPythonPolicyWarnings(t *testing.T) {
	dir := t.TempDir()
	py := filepath.Join(dir, "py.json")
	if err := os.WriteFile(py, []byte(`{"policy_id": "p", "rules": [
		{"rule_id": "repeated", "description": "d", "condition": "step_index >= 1 and all(s['description'] == step['description'] for s in prev_steps)"},
		{"rule_id": "output", "description": "d", "condition": "(out := str(step.get('output', {}))) and matches(out, r'password\\s*[:=]')"},
		{"rule_id": "danger", "description": "d", "condition": "'dangerous' in step['description']"}
	]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r := troyctl(t, "policies", "convert", py, "-o", filepath.Join(dir, "out.json"))
	if r.code != 0 || !strings.Contains(r.stderr, "  warning    repeated: line 1, column 21: all() is not in the Python tool's condition namespace") ||
		strings.Count(r.stderr, "warning") != 1 || !strings.Contains(r.stderr, `on_rule_error: "skip" added`) {
		t.Fatalf("convert: exit %d\n%s", r.code, r.stderr)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "out.json"))
	if err != nil || !strings.Contains(string(raw), `"on_rule_error": "skip"`) || !strings.Contains(string(raw), "py_set(") {
		t.Fatalf("%v\n%s", err, raw)
	}
	// The guard: a description containing "dangerous" is blocked; the rule that raises
	// NameError does not block the step, as in the Python tool.
	r = troyctl(t, "check", py, "-a", "run_dangerous_tool")
	if r.code != 2 || !strings.Contains(r.stdout, `"rule_id": "danger"`) ||
		!strings.Contains(r.stderr, `troyctl: warning: `+py+`: rule "repeated": condition (Python): line 1, column 21: all() is not in`) {
		t.Fatalf("check: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = troyctl(t, "policies", "validate", py)
	if r.code != 0 || !strings.Contains(r.stdout, py+`: rule "repeated": warning: condition (Python): line 1, column 21: all() is not in`) || !strings.Contains(r.stdout, "ok (3 rules, 1 warning)") {
		t.Fatalf("validate: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = troyctl(t, "policies", "validate", "--strict", py); r.code != exitError {
		t.Fatalf("validate --strict: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = troyctl(t, "check", py, "-a", "safe_tool")
	if r.code != 0 {
		t.Fatalf("check: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// A trace the Python tool's json reads (NaN and Infinity as values, a step_id used twice)
// audits under a Python policy: both steps with the id are evaluated.
func TestPythonTraceAudit(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.WriteFile("trace.json", []byte(`{"trace_id": "t", "agent_name": "a", "metadata": {"budget": Infinity},
		"steps": [
			{"step_id": "s", "type": "tool_call", "description": "rm", "input": {"n": NaN}, "output": {}},
			{"step_id": "s", "type": "tool_call", "description": "rm", "input": {"n": -Infinity}, "output": {}},
			{"step_id": "t", "type": "llm_call", "description": "x", "input": {}, "output": {}}
		]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("policy.json", []byte(`{"policy_id": "p", "rules": [
		{"rule_id": "nan", "description": "d", "condition": "matches(str(step['input']), r'nan|-inf')", "weight": 5},
		{"rule_id": "budget", "description": "d", "condition": "get(trace, 'metadata.budget') > 1000", "weight": 5}
	]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r := troyctl(t, "audit", "trace.json", "policy.json", "-o", "r.md", "-j", "a.json")
	if r.code != 0 || !strings.Contains(r.stdout, "Found 5 violation(s)") {
		t.Fatalf("audit: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	raw, err := os.ReadFile("a.json")
	if err != nil || strings.Count(string(raw), `"step_id": "s"`) < 4 || !strings.Contains(string(raw), "NaN") {
		t.Fatalf("%v\n%s", err, raw)
	}
}
