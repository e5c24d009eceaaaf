package event_test

import (
	"fmt"
	"strings"
	"testing"

	json "github.com/goccy/go-json"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/schemas"
)

// Decoding a step event as the stages do (pyjson: numbers as Python reads them), against
// goccy's plain decoding that they used before (numbers as float64, no NaN or Infinity).
func BenchmarkDecodeStepEvent(b *testing.B) {
	tr := benchTrace(50)
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
	tr := benchTrace(50)
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

// benchTrace is a trace of n steps shaped like an agent's: tool calls with arguments and
// results, model calls with prompts, labels.
func benchTrace(n int) *schemas.Trace {
	tr := &schemas.Trace{TraceID: "bench", AgentName: "support-bot", Metadata: map[string]any{"env": "prod", "version": "1.4.2"}}
	for i := range n {
		ts := fmt.Sprintf("2026-01-01T00:%02d:%02dZ", i/60, i%60)
		s := &schemas.Step{StepID: fmt.Sprint("step-", i), Type: schemas.StepToolCall, Description: "search_orders", Timestamp: &ts,
			Input:    map[string]any{"query": strings.Repeat("order status for customer ", 3), "limit": 20, "filters": []any{"open", "late"}},
			Output:   map[string]any{"rows": []any{map[string]any{"id": i, "total": 12.5, "paid": true}}, "took_ms": 31},
			Metadata: map[string]any{"data_classification": "internal", "approved": false}}
		if i%3 == 1 {
			s.Type, s.Description = schemas.StepLLMCall, "plan the next step"
			s.Input = map[string]any{"prompt": strings.Repeat("You are a helpful agent. ", 8), "temperature": 0.2}
		}
		tr.Steps = append(tr.Steps, s)
	}
	return tr
}
