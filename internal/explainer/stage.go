package explainer

import (
	"context"

	"github.com/troy-audit/troy/event"

	"github.com/troy-audit/troy/schemas"
)

// Stage is the explainer stage of the pipeline: for each scored trace it reads the trace
// back from the steps stream, asks the model about every step and the whole, and emits
// one event.Explanation per step and then event.Explained. Without a model (ex nil) it
// passes each trace on at once, explanations off, with the reason.
//
// A redelivered trace is asked again; with a cache the answers come from it, and the
// events carry de-duplication ids, so a trace is explained once.
type Stage struct {
	ex    *Explainer
	note  string
	store event.TraceStore
}

// NewStage returns the explainer stage. offNote says why there are no explanations when ex
// is nil; store reads finished traces back.
func NewStage(ex *Explainer, offNote string, store event.TraceStore) *Stage {
	return &Stage{ex: ex, note: offNote, store: store}
}

// Handle explains one scored trace.
func (s *Stage) Handle(ctx context.Context, in event.Envelope) ([]event.Envelope, error) {
	ev, err := event.Decode[event.Scored](in)
	if err != nil {
		return nil, err
	}
	out := event.Explained{Scored: ev, State: schemas.ExplanationsOff, Note: s.note}
	var events []event.Envelope
	if s.ex != nil {
		t, err := s.store.Trace(ctx, ev.TraceRef, ev.Steps)
		if err != nil {
			return nil, err
		}
		res, err := s.ex.Explain(ctx, t)
		if err != nil {
			return nil, err
		}
		for i, x := range res.Explanations {
			e, err := event.New(event.Explanation{TraceRef: ev.TraceRef, StepIndex: i, Explanation: x})
			if err != nil {
				return nil, err
			}
			events = append(events, e)
		}
		out.State, out.Note, out.Count, out.Summary, out.LLM = schemas.ExplanationsOn, res.Note, len(res.Explanations), res.Summary, &res.Usage
	}
	e, err := event.New(out)
	if err != nil {
		return nil, err
	}
	return append(events, e), nil
}
