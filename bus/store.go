package bus

import (
	"context"
	"fmt"
	"math"

	"github.com/troy-audit/troy/schemas"
)

// The bus is the pipeline's schemas.TraceStore: what the streams hold of a trace, read
// back by subject.
var _ schemas.TraceStore = (*Bus)(nil)

// Trace reads one run of a trace back from the steps stream, decoding as it reads.
func (b *Bus) Trace(ctx context.Context, ref schemas.TraceRef, steps int) (*schemas.Trace, error) {
	a := schemas.NewAssembler(ref.Run)
	if err := b.Scan(ctx, StepsStream, schemas.StepsSubject(ref.AgentName, ref.TraceID), 0, math.MaxUint64, a.Add); err != nil {
		return nil, fmt.Errorf("read trace %s: %w", ref.TraceID, err)
	}
	t, err := a.Trace()
	if err == nil {
		err = schemas.CheckComplete(t, steps)
	}
	if err != nil {
		return nil, fmt.Errorf("read trace %s: %w", ref.TraceID, err)
	}
	return t, nil
}

// Verdict reads the violations of a finished run back from the results stream.
func (b *Bus) Verdict(ctx context.Context, ev *schemas.TraceEvaluated) ([]schemas.Violation, error) {
	if ev.Parts == 0 {
		return []schemas.Violation{}, nil
	}
	c := schemas.NewVerdictCollector(ev)
	if err := b.Scan(ctx, ResultsStream, schemas.ResultSubject(schemas.KindVerdict, ev.AgentName, ev.TraceID), 0, math.MaxUint64, c.Add); err != nil {
		return nil, fmt.Errorf("read verdict of %s: %w", ev.TraceID, err)
	}
	return c.Violations()
}

// Explanations reads a run's step explanations back from the results stream.
func (b *Bus) Explanations(ctx context.Context, ref schemas.TraceRef, n int) ([]schemas.StepExplanation, error) {
	if n == 0 {
		return nil, nil
	}
	events, err := b.ReadResults(ctx, schemas.ResultSubject(schemas.KindExplanation, ref.AgentName, ref.TraceID), math.MaxUint64)
	if err != nil {
		return nil, fmt.Errorf("read explanations of %s: %w", ref.TraceID, err)
	}
	steps := schemas.CollectExplanations(events, ref.Run)
	if len(steps) < n {
		return nil, fmt.Errorf("explanations of %s: %d of %d stored so far", ref.TraceID, len(steps), n)
	}
	return steps, nil
}
