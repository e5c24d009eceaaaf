package explainer

import (
	"context"
	"encoding/json"
	"fmt"
	"math"

	"github.com/troy-audit/troy/schemas"
)

// ReadFunc returns the events of a subject of the steps stream, in order, up to and
// including stream sequence upTo.
type ReadFunc func(ctx context.Context, subject string, upTo uint64) ([]schemas.Envelope, error)

// Stage is the explainer stage of the pipeline: for each scored trace it reads the trace
// back from the steps stream, asks the model about every step and the whole, and emits
// one ExplanationEvent per step and then TraceExplained. Without a model (ex nil) it
// passes each trace on at once, explanations off, with the reason.
//
// A redelivered trace is asked again; with a cache the answers come from it, and the
// events carry de-duplication ids, so a trace is explained once.
type Stage struct {
	ex   *Explainer
	note string
	read ReadFunc
}

// NewStage returns the explainer stage. offNote says why there are no explanations when ex
// is nil.
func NewStage(ex *Explainer, offNote string, read ReadFunc) *Stage {
	return &Stage{ex: ex, note: offNote, read: read}
}

// Handle explains one scored trace.
func (s *Stage) Handle(ctx context.Context, in schemas.Envelope) ([]schemas.Envelope, error) {
	var ev schemas.TraceScored
	if err := json.Unmarshal(in.Data, &ev); err != nil {
		return nil, &schemas.Permanent{Err: fmt.Errorf("decode scored event: %w", err)}
	}
	out := schemas.TraceExplained{TraceScored: ev, State: schemas.ExplanationsOff, Note: s.note}
	var events []schemas.Envelope
	if s.ex != nil {
		t, err := s.trace(ctx, ev)
		if err != nil {
			return nil, err
		}
		res, err := s.ex.Explain(ctx, t)
		if err != nil {
			return nil, err
		}
		for i, x := range res.Explanations {
			e, err := schemas.NewEnvelope(
				schemas.ResultSubject(schemas.KindExplanation, ev.AgentName, ev.TraceID),
				schemas.KindExplanation,
				schemas.MsgID(schemas.KindExplanation, ev.TraceRef, x.StepID),
				schemas.ExplanationEvent{TraceRef: ev.TraceRef, StepIndex: i, Explanation: x},
			)
			if err != nil {
				return nil, err
			}
			events = append(events, e)
		}
		out.State, out.Note, out.Count, out.Summary, out.LLM = schemas.ExplanationsOn, res.Note, len(res.Explanations), res.Summary, &res.Usage
	}
	e, err := schemas.NewEnvelope(
		schemas.ResultSubject(schemas.KindExplained, ev.AgentName, ev.TraceID),
		schemas.KindExplained,
		schemas.MsgID(schemas.KindExplained, ev.TraceRef, ""),
		out,
	)
	if err != nil {
		return nil, err
	}
	return append(events, e), nil
}

func (s *Stage) trace(ctx context.Context, ev schemas.TraceScored) (*schemas.Trace, error) {
	events, err := s.read(ctx, schemas.StepsSubject(ev.AgentName, ev.TraceID), math.MaxUint64)
	if err != nil {
		return nil, fmt.Errorf("read trace %s: %w", ev.TraceID, err)
	}
	t, err := schemas.AssembleTrace(events, ev.Run)
	if err == nil {
		err = schemas.CheckComplete(t, ev.Steps)
	}
	if err != nil {
		return nil, fmt.Errorf("read trace %s: %w", ev.TraceID, err)
	}
	return t, nil
}
