package warehouse_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/warehouse"
	"github.com/troy-audit/troy/warehouse/chtest"
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
			var batch []schemas.Envelope
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
				batch = slices.DeleteFunc(batch, func(e schemas.Envelope) bool { return e.Kind == schemas.KindStep || e.Kind == schemas.KindOutput })
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

func bigInputs(b *testing.B, evs []schemas.Envelope) []schemas.Envelope {
	for i, e := range evs {
		if e.Kind != schemas.KindStep {
			continue
		}
		var ev schemas.StepEvent
		if err := schemas.DecodeEvent(e.Data, &ev); err != nil {
			b.Fatal(err)
		}
		ev.Step.Input = map[string]any{"query": strings.Repeat("select * from t where x = 1; ", 40), "limit": 50, "score": 0.5,
			"filters": map[string]any{"region": "eu", "ids": []any{1, 2, 3, 4, 5}}}
		n, err := schemas.NewEnvelope(e.Subject, e.Kind, e.MsgID, ev)
		if err != nil {
			b.Fatal(err)
		}
		n.Seq, n.Time = e.Seq, e.Time
		evs[i] = n
	}
	return evs
}
