package chtest

import (
	"context"
	"fmt"
	"time"

	"github.com/troy-audit/troy/event"

	"github.com/troy-audit/troy/schemas"
)

// Trace describes a finished trace to build pipeline events for.
type Trace struct {
	Agent, ID, Run, Policy string
	Version, Environment   string
	Start                  time.Time // the first step's timestamp; steps are a second apart
	Tools                  []string  // one tool_call step per tool
	Violations             []schemas.Violation
	Risk                   int
	// Explained adds an explanation of the first step and an explained event.
	Explained bool
	// Output sends the first step's output as an event of its own, as the guard does.
	Output bool
}

// Events builds the events the pipeline carries for tr: its steps, if asked an output for
// the first step, the verdict's parts and the scored event and, if asked, the explanations. Stream sequences continue
// from *seq.
func Events(tr Trace, seq *uint64) ([]event.Envelope, error) {
	ref := event.TraceRef{TraceID: tr.ID, AgentName: tr.Agent, Policy: tr.Policy, Run: tr.Run}
	var out []event.Envelope
	var err error
	add := func(p event.Payload) {
		if err != nil {
			return
		}
		var e event.Envelope
		if e, err = event.New(p); err != nil {
			return
		}
		*seq++
		e.Seq, e.Time = *seq, tr.Start.Add(time.Duration(len(tr.Tools)+1)*time.Second)
		out = append(out, e)
	}
	meta := map[string]any{"agent_version": tr.Version, "environment": tr.Environment, "team": "payments"}
	for i, tool := range tr.Tools {
		ts := tr.Start.Add(time.Duration(i) * time.Second).UTC().Format(time.RFC3339)
		add(event.Step{TraceRef: ref, TraceMetadata: meta, Seq: i, Step: &schemas.Step{
			StepID: fmt.Sprintf("s%d", i), Type: schemas.StepToolCall, Description: tool,
			Input: map[string]any{"q": i}, Metadata: map[string]any{"zone": "internal", "n": 3}, Timestamp: &ts,
		}})
	}
	if tr.Output && len(tr.Tools) > 0 {
		add(event.Output{TraceRef: ref, StepID: "s0", Output: map[string]any{"rows": 2}})
	}
	evaluated, parts, err := event.Verdict(ref, len(tr.Tools), tr.Violations, nil)
	if err != nil {
		return nil, err
	}
	for _, p := range parts {
		*seq++
		p.Seq, p.Time = *seq, tr.Start.Add(time.Duration(len(tr.Tools)+1)*time.Second)
		out = append(out, p)
	}
	scored := event.Scored{Evaluated: evaluated, RiskScore: tr.Risk}
	add(scored)
	if tr.Explained {
		add(event.Explanation{TraceRef: ref, StepIndex: 0,
			Explanation: schemas.StepExplanation{StepID: "s0", Summary: "looked up", Alternatives: []string{"ask"}}})
		add(event.Explained{Scored: scored, State: "on", Count: 1,
			Summary: &schemas.TraceSummary{Overview: "it looked things up"}, LLM: &schemas.LLMUsage{Model: "m", Calls: 2, PromptTokens: 10, CompletionTokens: 5}})
	}
	return out, err
}

// Reader reads steps back from a list of events, as the bus reads them from the stream.
type Reader struct{ bySubject map[string][]event.Envelope }

// NewReader indexes events by subject.
func NewReader(events []event.Envelope) *Reader {
	r := &Reader{bySubject: map[string][]event.Envelope{}}
	r.Add(events)
	return r
}

// Add indexes more events.
func (r *Reader) Add(events []event.Envelope) {
	for _, e := range events {
		r.bySubject[e.Subject] = append(r.bySubject[e.Subject], e)
	}
}

// Read returns a subject's events up to and including upTo.
func (r *Reader) Read(_ context.Context, subject string, upTo uint64) ([]event.Envelope, error) {
	var out []event.Envelope
	for _, e := range r.bySubject[subject] {
		if e.Seq <= upTo {
			out = append(out, e)
		}
	}
	return out, nil
}
