package event_test

import (
	"testing"

	json "github.com/goccy/go-json"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/ingest/tracegen"
)

// Decoding a step event as the stages do (pyjson: numbers as Python reads them), against
// goccy's plain decoding that they used before (numbers as float64, no NaN or Infinity).
func BenchmarkDecodeStepEvent(b *testing.B) {
	tr := tracegen.New(tracegen.Options{Steps: 50, Seed: 3}).Trace()
	var events []event.Envelope
	for i, s := range tr.Steps {
		e, err := event.New(event.Step{TraceRef: event.TraceRef{TraceID: tr.TraceID, AgentName: tr.AgentName}, TraceMetadata: tr.Metadata, Seq: i, Step: s})
		if err != nil {
			b.Fatal(err)
		}
		events = append(events, e)
	}
	b.Run("pyjson", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := event.Decode[event.Step](events[i%len(events)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("goccy", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			var ev event.Step
			if err := json.Unmarshal(events[i%len(events)].Data, &ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Encoding a step event: pyjson (floats keep their fraction, Python's literals) against
// goccy's plain encoding used before.
func BenchmarkEncodeStepEvent(b *testing.B) {
	tr := tracegen.New(tracegen.Options{Steps: 50, Seed: 3}).Trace()
	ev := func(i int) event.Step {
		return event.Step{TraceRef: event.TraceRef{TraceID: tr.TraceID, AgentName: tr.AgentName}, TraceMetadata: tr.Metadata, Seq: i, Step: tr.Steps[i%len(tr.Steps)]}
	}
	b.Run("pyjson", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := event.New(ev(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("goccy", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := json.Marshal(ev(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
