package analytics_test

import (
	"context"
	"testing"
	"time"

	"github.com/troy-audit/troy/internal/analytics"
	"github.com/troy-audit/troy/internal/warehouse"
	"github.com/troy-audit/troy/internal/warehouse/chtest"
)

// BenchmarkAnalytics times each analytics command's queries and statistics over about a
// million steps (100,000 traces of five agents over 30 days) in a real ClickHouse server.
func BenchmarkAnalytics(b *testing.B) {
	srv := chtest.Start(b)
	ctx := context.Background()
	s, _, err := warehouse.Migrate(ctx, srv.DSN("troy"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	traces := chtest.Large(100000, at)
	for i := 0; i < len(traces); i += 8000 {
		if err := chtest.Seed(ctx, s, traces[i:min(i+8000, len(traces))]); err != nil {
			b.Fatal(err)
		}
	}
	var steps uint64
	if err := s.Conn().QueryRow(ctx, "SELECT count() FROM steps FINAL").Scan(&steps); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d steps, %d traces", steps, len(traces))
	day := 24 * time.Hour
	month := analytics.Range{From: at.Add(-30 * day), To: at}
	base, _ := analytics.ParseSelector("version=1.0")
	cand, _ := analytics.ParseSelector("version=1.1")
	for _, bc := range []struct {
		name string
		run  func() error
	}{
		{"trends/day", func() error {
			_, err := analytics.RunTrends(ctx, s.Conn(), analytics.TrendsOptions{Range: month})
			return err
		}},
		{"trends/hour-by-severity", func() error {
			_, err := analytics.RunTrends(ctx, s.Conn(), analytics.TrendsOptions{Range: month, Interval: "hour", By: "severity"})
			return err
		}},
		{"drift", func() error {
			_, err := analytics.RunDrift(ctx, s.Conn(), analytics.DriftOptions{Agent: "agent-0", At: at, Window: day, Baseline: 7 * day})
			return err
		}},
		{"regress", func() error {
			_, err := analytics.RunRegress(ctx, s.Conn(), analytics.RegressOptions{Baseline: base, Candidate: cand})
			return err
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for range b.N {
				if err := bc.run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
