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
