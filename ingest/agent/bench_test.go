package agent_test

import (
	"context"
	"testing"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/ingest/agent"
	"github.com/troy-audit/troy/policies"
)

// allTemplates is the seven bundled templates merged into one policy.
func allTemplates(b *testing.B) *evaluator.Compiled {
	b.Helper()
	ts, err := policies.Templates()
	if err != nil {
		b.Fatal(err)
	}
	var ps []*policies.Policy
	for _, t := range ts {
		ps = append(ps, t.Policy)
	}
	c, err := evaluator.Compile(policies.Merge("all", "every bundled template", ps...))
	if err != nil {
		b.Fatal(err)
	}
	return c
}

var benchSteps = []checkCase{
	{"search", map[string]any{"query": "weather in Paris"}, map[string]any{"network_zone": "internal", "data_classification": "public"}},
	{"read_file", map[string]any{"path": "/data/customers.csv"}, map[string]any{"data_classification": "pii", "permission_level": "user"}},
	{"send_email", map[string]any{"to": "a@example.com", "body": "hello"}, map[string]any{"network_zone": "external", "category": "communication"}},
	{"sql", map[string]any{"query": "SELECT name FROM users WHERE id = 4"}, map[string]any{"requires_approval": true, "approval_token": "t-1"}},
}

// BenchmarkLocalGuardCheck is one check with the seven bundled templates merged, the step
// recorded in the outbox file (written, synced in the background) as in use. Sessions are
// 200 steps long.
func BenchmarkLocalGuardCheck(b *testing.B) {
	ctx := context.Background()
	g, err := agent.NewLocalGuard(ctx, allTemplates(b), agent.LocalOptions{Agent: "bench", Mode: "monitor", DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close(ctx)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 && i%200 == 0 {
			b.StopTimer()
			if _, err := g.Reset(""); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		s := benchSteps[i%len(benchSteps)]
		if _, err := g.Check(ctx, s.action, s.input, s.metadata, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLocalGuardEngine is the in-process engine alone (evaluator.Guard), for
// comparison: what the check costs without the record.
func BenchmarkLocalGuardEngine(b *testing.B) {
	c := allTemplates(b)
	g, err := c.NewGuard(evaluator.GuardOptions{AgentName: "bench", Mode: "monitor"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 && i%200 == 0 {
			g.Reset()
		}
		s := benchSteps[i%len(benchSteps)]
		if _, err := g.Check(evaluator.CheckRequest{Action: s.action, Input: s.input, Metadata: s.metadata}); err != nil {
			b.Fatal(err)
		}
	}
}
