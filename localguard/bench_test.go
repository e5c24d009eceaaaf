package localguard_test

import (
	"context"
	"testing"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/localguard"
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

// BenchmarkLocalGuardCheck is one check with the seven bundled templates merged, the step
// recorded in the outbox file (written before the check returns, synced in the background)
// as in use. The steps are those of evaluator's BenchmarkGuardCheck (tracegen, seed 2), in
// sessions of 1,000 checks, so the two compare: the difference is the record.
func BenchmarkLocalGuardCheck(b *testing.B) {
	ctx := context.Background()
	const session = 1000
	steps := tracegen.New(tracegen.Options{Steps: session, Seed: 2}).Trace().Steps
	g, err := localguard.New(ctx, allTemplates(b), localguard.Options{Agent: "bench", Mode: "monitor", DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close(ctx)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 && i%session == 0 {
			b.StopTimer()
			if _, err := g.Reset(""); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		s := steps[i%session]
		if _, err := g.Check(ctx, s.Description, s.Input, s.Metadata, s.Type); err != nil {
			b.Fatal(err)
		}
	}
}
