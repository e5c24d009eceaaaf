package pipeline_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/internal/warehouse"
	"github.com/troy-audit/troy/internal/warehouse/chtest"
)

// BenchmarkSinkFromStream times the whole sink: 10,000 ten-step traces and their scores
// waiting in the streams (about 110,000 events), fetched, read back per trace, inserted
// into a real ClickHouse server and acknowledged. rows/s counts steps, traces and
// violations.
func BenchmarkSinkFromStream(b *testing.B) {
	const traces = 10000
	b.StopTimer()
	srv := chtest.Start(b)
	ctx := context.Background()
	var seq uint64
	var events []event.Envelope
	steps := 0
	for _, tr := range chtest.Large(traces, time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC)) {
		evs, err := chtest.Events(tr, &seq)
		if err != nil {
			b.Fatal(err)
		}
		events = append(events, evs...)
		steps += len(tr.Tools)
	}
	rows := steps + traces + traces/4
	for i := range b.N {
		bs, err := bus.Open(ctx, bus.Options{Memory: true})
		if err != nil {
			b.Fatal(err)
		}
		if err := bs.PublishAll(ctx, events); err != nil {
			b.Fatal(err)
		}
		store, _, err := warehouse.Migrate(ctx, srv.DSN(fmt.Sprintf("bench%d", i)))
		if err != nil {
			b.Fatal(err)
		}
		p, err := pipeline.New(bs, pipeline.NewPolicies(bs), pipeline.Config{Only: []string{pipeline.Sink}, Store: store, SinkWait: 200 * time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- p.Run(runCtx) }()
		tick := time.NewTicker(20 * time.Millisecond)
		for {
			var n uint64
			if err := store.Conn().QueryRow(ctx, "SELECT (SELECT count() FROM steps) + (SELECT count() FROM traces) + (SELECT count() FROM violations)").Scan(&n); err != nil {
				b.Fatal(err)
			}
			if n >= uint64(rows) {
				break
			}
			<-tick.C
		}
		b.StopTimer()
		tick.Stop()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		store.Close()
		bs.Close()
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(len(events)*b.N)/b.Elapsed().Seconds(), "events/s")
}
