package warehouse_test

import (
	"context"
	"testing"
	"time"

	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/warehouse"
	"github.com/troy-audit/troy/warehouse/chtest"
)

// BenchmarkSinkWrite times the sink's inserts: batches of about 10,000 events (ten-step
// traces, their scores and violations) turned into rows and inserted into a real
// ClickHouse server. rows/s counts the rows of every table.
func BenchmarkSinkWrite(b *testing.B) {
	srv := chtest.Start(b)
	ctx := context.Background()
	s, _, err := warehouse.Migrate(ctx, srv.DSN("troy"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var seq uint64
	var batch []schemas.Envelope
	var steps int
	for _, tr := range chtest.Large(800, time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC)) {
		evs, err := chtest.Events(tr, &seq)
		if err != nil {
			b.Fatal(err)
		}
		batch = append(batch, evs...)
		steps += len(tr.Tools)
	}
	reader := chtest.NewReader(batch)
	sink := warehouse.NewSink(s, reader.Read, chtest.Policy, nil)
	rows := steps + 800 + 800/4 + 3 // steps, traces, violations, rules (first time)
	b.ResetTimer()
	for range b.N {
		if err := sink.Write(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(len(batch)*b.N)/b.Elapsed().Seconds(), "events/s")
}
