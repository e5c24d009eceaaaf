package compare_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/compare"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

func step(id, typ, desc string, in map[string]any) *schemas.Step {
	s := &schemas.Step{StepID: id, Type: typ, Description: desc, Input: in}
	s.Normalize()
	return s
}

func side(steps ...*schemas.Step) *compare.Side {
	return &compare.Side{Name: "x", Trace: &schemas.Trace{TraceID: "t", AgentName: "a", Steps: steps}}
}

func summary(d *compare.Diff) string {
	var parts []string
	for _, c := range d.Steps {
		parts = append(parts, fmt.Sprintf("%s:%d/%d%v", c.Status, c.A, c.B, c.Fields))
	}
	return d.AlignedBy + " " + strings.Join(parts, " ")
}

func TestAlignment(t *testing.T) {
	q := map[string]any{"q": 1}
	tests := []struct {
		name string
		a, b *compare.Side
		want string
	}{
		{"same", side(step("s1", "llm_call", "plan", nil), step("s2", "tool_call", "search", q)),
			side(step("s1", "llm_call", "plan", nil), step("s2", "tool_call", "search", q)),
			"step_id same:1/1[] same:2/2[]"},
		{"by id: inserted, removed, changed", side(step("s1", "llm_call", "plan", nil), step("s2", "tool_call", "search", q), step("s3", "decision", "answer", nil)),
			side(step("s1", "llm_call", "plan", nil), step("s9", "tool_call", "fetch", nil), step("s2", "tool_call", "search", map[string]any{"q": 2})),
			"step_id same:1/1[] added:0/2[] changed:2/3[input] removed:3/0[]"},
		{"by order when ids differ", side(step("a1", "llm_call", "plan", nil), step("a2", "tool_call", "search", q), step("a3", "decision", "answer", nil)),
			side(step("b1", "llm_call", "plan", nil), step("b2", "tool_call", "fetch", nil), step("b3", "tool_call", "search", q), step("b4", "decision", "answer", nil)),
			"order changed:1/1[step_id] added:0/2[] changed:2/3[step_id] changed:3/4[step_id]"},
		{"by order, dropped step", side(step("a1", "llm_call", "plan", nil), step("a2", "tool_call", "search", q), step("a3", "decision", "answer", nil)),
			side(step("b1", "llm_call", "plan", nil), step("b3", "decision", "answer", nil)),
			"order changed:1/1[step_id] removed:2/0[] changed:3/2[step_id]"},
		{"numbers by value", side(step("s1", "tool_call", "x", map[string]any{"n": 1})), side(step("s1", "tool_call", "x", map[string]any{"n": 1.0})),
			"step_id same:1/1[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := summary(compare.Compare(tt.a, tt.b)); got != tt.want {
				t.Fatalf("%s\nwant %s", got, tt.want)
			}
		})
	}
}

// With a policy, violations that appear and disappear are matched through the alignment,
// and a higher risk says so.
func TestViolationsAndRisk(t *testing.T) {
	p, err := policies.Resolve("../../examples/policy.json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := evaluator.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	clean, err := compare.Load(ctx, "../../examples/traces/clean-run.json")
	if err != nil {
		t.Fatal(err)
	}
	leaky, err := compare.Load(ctx, "../../examples/traces/pii-exfiltration.json")
	if err != nil {
		t.Fatal(err)
	}
	if d := compare.Compare(clean, leaky); d.Results || d.RiskRose() || !strings.Contains(d.Text(), "not compared (give --policy") {
		t.Fatalf("traces without a policy: %+v", d)
	}
	clean.Evaluate(c)
	leaky.Evaluate(c)
	d := compare.Compare(clean, leaky)
	if !d.RiskRose() || d.RiskDelta != 50 || len(d.Appeared) != 1 || d.Appeared[0].RuleID != "pii-exfiltration-protection" || len(d.Disappeared) != 0 {
		t.Fatalf("%+v", d)
	}
	if d := compare.Compare(leaky, leaky); d.RiskRose() || len(d.Appeared)+len(d.Disappeared) != 0 || d.Counts[compare.Same] != 6 {
		t.Fatalf("a trace against itself: %+v", d)
	}

	// An audit file brings its own results.
	dir := t.TempDir()
	audit := filepath.Join(dir, "audit.json")
	raw, err := os.ReadFile("../replay/testdata/seed_audit.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(audit, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := compare.Load(ctx, audit)
	if err != nil || !a.Results || a.Risk != 40 || len(a.Violations) != 1 {
		t.Fatalf("audit side: %v %+v", err, a)
	}
	if _, err := compare.Load(ctx, filepath.Join(dir, "none.json")); err == nil {
		t.Fatal("a missing file loaded")
	}
}
