package warehouse_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/internal/warehouse"
	"github.com/troy-audit/troy/internal/warehouse/chtest"
)

// BenchmarkSinkWrite times the sink's inserts into a real ClickHouse server: batches of
// ten-step traces (about 11 events each: steps and the score), turned into rows of every
// table and inserted. rows/s counts the rows of every table. Each insert costs a part on
// the server, so larger batches go faster.
func BenchmarkSinkWrite(b *testing.B) {
	for _, traces := range []int{800, 4000, 8000} {
		b.Run(fmt.Sprintf("traces=%d", traces), func(b *testing.B) { benchSinkWrite(b, traces) })
	}
}

func benchSinkWrite(b *testing.B, traces int) {
	srv := chtest.Start(b)
	ctx := context.Background()
	s, _, err := warehouse.Migrate(ctx, srv.DSN("troy"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var seq uint64
	var batch []event.Envelope
	var steps int
	for _, tr := range chtest.Large(traces, time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC)) {
		evs, err := chtest.Events(tr, &seq)
		if err != nil {
			b.Fatal(err)
		}
		batch = append(batch, evs...)
		steps += len(tr.Tools)
	}
	reader := chtest.NewReader(batch)
	sink := warehouse.NewSink(s, reader.Read, chtest.Policy, nil)
	rows := steps + traces + traces/4 // steps, traces, violations
	b.ResetTimer()
	for range b.N {
		if err := sink.Write(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(len(batch)*b.N)/b.Elapsed().Seconds(), "events/s")
}
