package warehouse_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/internal/warehouse"
	"github.com/troy-audit/troy/internal/warehouse/chtest"
)

// BenchmarkSinkRows times what the sink does before it inserts: decoding a batch's events
// and turning them into the columns of every table, without a server. big gives every
// step an input of about 2 KB, as real tool calls carry; readback leaves the steps out of
// the batch, so that every finished trace is read back from the stream, as after a
// restart.
func BenchmarkSinkRows(b *testing.B) {
	for _, c := range []struct{ big, readback bool }{{false, false}, {true, false}, {true, true}} {
		big := c.big
		b.Run(fmt.Sprintf("big=%v/readback=%v", c.big, c.readback), func(b *testing.B) {
			var seq uint64
			var batch []event.Envelope
			for i, tr := range chtest.Large(4000, time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC)) {
				tr.Output, tr.Explained = i%3 == 0, i%5 == 0
				evs, err := chtest.Events(tr, &seq)
				if err != nil {
					b.Fatal(err)
				}
				if big {
					evs = bigInputs(b, evs)
				}
				batch = append(batch, evs...)
			}
			reader := chtest.NewReader(batch)
			if c.readback {
				batch = slices.DeleteFunc(batch, func(e event.Envelope) bool { return e.Kind == event.KindStep || e.Kind == event.KindOutput })
			}
			sink := warehouse.NewSink(nil, reader.Read, chtest.Policy, nil)
			b.ResetTimer()
			for range b.N {
				if _, err := warehouse.BuildRows(context.Background(), sink, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(batch)*b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

func bigInputs(b *testing.B, evs []event.Envelope) []event.Envelope {
	for i, e := range evs {
		if e.Kind != event.KindStep {
			continue
		}
		ev, err := event.Decode[event.Step](e)
		if err != nil {
			b.Fatal(err)
		}
		ev.Step.Input = map[string]any{"query": strings.Repeat("select * from t where x = 1; ", 40), "limit": 50, "score": 0.5,
			"filters": map[string]any{"region": "eu", "ids": []any{1, 2, 3, 4, 5}}}
		n, err := event.New(ev)
		if err != nil {
			b.Fatal(err)
		}
		n.Seq, n.Time = e.Seq, e.Time
		evs[i] = n
	}
	return evs
}
