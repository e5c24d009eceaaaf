package schemas_test

import (
	"testing"

	json "github.com/goccy/go-json"

	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/schemas"
)

// Decoding a step event as the stages do (pyjson: numbers as Python reads them), against
// goccy's plain decoding that they used before (numbers as float64, no NaN or Infinity).
func BenchmarkDecodeStepEvent(b *testing.B) {
	tr := tracegen.New(tracegen.Options{Steps: 50, Seed: 3}).Trace()
	var events [][]byte
	for i, s := range tr.Steps {
		e, err := schemas.NewEnvelope("s", schemas.KindStep, "", schemas.StepEvent{TraceRef: schemas.TraceRef{TraceID: tr.TraceID, AgentName: tr.AgentName}, TraceMetadata: tr.Metadata, Seq: i, Step: s})
		if err != nil {
			b.Fatal(err)
		}
		events = append(events, e.Data)
	}
	b.Run("pyjson", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			var ev schemas.StepEvent
			if err := schemas.DecodeEvent(events[i%len(events)], &ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("goccy", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			var ev schemas.StepEvent
			if err := json.Unmarshal(events[i%len(events)], &ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Encoding a step event: pyjson (floats keep their fraction, Python's literals) against
// goccy's plain encoding used before.
func BenchmarkEncodeStepEvent(b *testing.B) {
	tr := tracegen.New(tracegen.Options{Steps: 50, Seed: 3}).Trace()
	ev := func(i int) schemas.StepEvent {
		return schemas.StepEvent{TraceRef: schemas.TraceRef{TraceID: tr.TraceID, AgentName: tr.AgentName}, TraceMetadata: tr.Metadata, Seq: i, Step: tr.Steps[i%len(tr.Steps)]}
	}
	b.Run("pyjson", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := schemas.NewEnvelope("s", schemas.KindStep, "", ev(i)); err != nil {
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
