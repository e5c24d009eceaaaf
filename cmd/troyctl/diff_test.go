package main

import (
	"strings"
	"testing"
)

// diff compares two runs, and its exit code says whether the risk rose.
func TestDiffCommand(t *testing.T) {
	clean, leaky := example(t, "traces", "clean-run.json"), example(t, "traces", "pii-exfiltration.json")
	policy := example(t, "policy.json")
	tests := []struct {
		args   []string
		code   int
		stdout string
	}{
		{[]string{"diff", clean, leaky, "--policy", policy}, exitFound, "Risk: 0 → 50 (+50): ROSE"},
		{[]string{"diff", leaky, clean, "--policy", policy}, 0, "Risk: 50 → 0 (-50): fell"},
		{[]string{"diff", clean, leaky}, 0, "not compared (give --policy"},
		{[]string{"diff", clean, leaky, "--policy", policy, "--json"}, exitFound, `"risk_delta": 50`},
		{[]string{"diff", clean, "nope.json"}, exitError, ""},
	}
	for _, tt := range tests {
		r := troyctl(t, tt.args...)
		if r.code != tt.code || !strings.Contains(r.stdout, tt.stdout) {
			t.Errorf("%v: exit %d, want %d\n%s%s", tt.args[1:], r.code, tt.code, r.stdout, r.stderr)
		}
	}
}
