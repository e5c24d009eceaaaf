package event

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	json "github.com/goccy/go-json"

	"github.com/troy-audit/troy/schemas"
)

// TraceStore reads back what the streams hold of one run of a trace. Stages that need a
// whole trace, its verdict or its explanations after the fact use it; the bus implements
// it. Each read that finds less than the caller knows was stored (a replica of a cluster
// behind) is an error, to be tried again rather than taken for the whole.
type TraceStore interface {
	// Trace reads the run's steps, outputs attached; it must find at least steps of them.
	Trace(ctx context.Context, ref TraceRef, steps int) (*schemas.Trace, error)
	// Verdict reads the violations of a finished run that ev counts.
	Verdict(ctx context.Context, ev *Evaluated) ([]schemas.Violation, error)
	// Explanations reads the run's step explanations; it must find at least n.
	Explanations(ctx context.Context, ref TraceRef, n int) ([]schemas.StepExplanation, error)
}

// AssembleTrace rebuilds one run of a trace from its subject's events on the steps
// stream: steps in their trace order (the stream may hold a later step before an earlier
// one when a sender retried after a failover), up to the first missing one; outputs
// attached in stream order; the end ignored.
func AssembleTrace(events []Envelope, run string) (*schemas.Trace, error) {
	a := NewAssembler(run)
	for _, e := range events {
		if err := a.Add(e); err != nil {
			return nil, err
		}
	}
	return a.Trace()
}

// Assembler rebuilds one run of a trace from its events as they are read, so that a long
// trace is decoded as it comes and its raw events need not be held at once.
type Assembler struct {
	run     string
	byPos   map[int]*Step
	outputs []Output
}

// NewAssembler starts assembling the given run.
func NewAssembler(run string) *Assembler {
	return &Assembler{run: run, byPos: map[int]*Step{}}
}

// Add takes the next event of the trace's subject.
func (a *Assembler) Add(e Envelope) error {
	switch e.Kind {
	case KindStep:
		var ev Step
		if err := decodeData(e.Data, &ev); err != nil {
			return fmt.Errorf("step event %d: %w", e.Seq, err)
		}
		if ev.Run != a.run || ev.Step == nil || a.byPos[ev.Seq] != nil {
			return nil // another run, or a duplicate
		}
		a.byPos[ev.Seq] = &ev
	case KindOutput:
		var ev Output
		if err := decodeData(e.Data, &ev); err != nil {
			return fmt.Errorf("output event %d: %w", e.Seq, err)
		}
		if ev.Run == a.run {
			a.outputs = append(a.outputs, ev)
		}
	}
	return nil
}

// Trace is the trace assembled from the events added.
func (a *Assembler) Trace() (*schemas.Trace, error) {
	t := &schemas.Trace{}
	index := map[string]int{}
	for ev := a.byPos[0]; ev != nil; ev = a.byPos[len(t.Steps)] {
		if len(t.Steps) == 0 {
			t.TraceID, t.AgentName, t.Metadata = ev.TraceID, ev.AgentName, ev.TraceMetadata
		}
		index[ev.Step.StepID] = len(t.Steps)
		t.Steps = append(t.Steps, ev.Step)
	}
	for _, ev := range a.outputs {
		if i, ok := index[ev.StepID]; ok {
			s := *t.Steps[i]
			s.Output = ev.Output
			t.Steps[i] = &s
		}
	}
	if len(t.Steps) == 0 {
		return nil, fmt.Errorf("no steps")
	}
	t.Normalize()
	return t, nil
}

// CheckComplete says whether a trace read back has every step a result counted: a read
// can be answered by a replica of a cluster that has not caught up yet, and is then tried
// again rather than taken for the whole trace.
func CheckComplete(t *schemas.Trace, steps int) error {
	if len(t.Steps) < steps {
		return fmt.Errorf("trace %s: %d of its %d steps read so far: %w", t.TraceID, len(t.Steps), steps, ErrIncomplete)
	}
	return nil
}

// ErrIncomplete says a read found less than is known to be stored: a replica behind, to
// be read again.
var ErrIncomplete = errors.New("not all stored yet")

// CollectExplanations picks one run's step explanations out of its subject's events on
// the results stream, in step order, once each.
func CollectExplanations(events []Envelope, run string) []schemas.StepExplanation {
	byIndex := map[int]schemas.StepExplanation{}
	for _, e := range events {
		if e.Kind != KindExplanation {
			continue
		}
		var ev Explanation
		if json.Unmarshal(e.Data, &ev) != nil || ev.Run != run {
			continue
		}
		byIndex[ev.StepIndex] = ev.Explanation
	}
	out := make([]schemas.StepExplanation, 0, len(byIndex))
	for _, i := range slices.Sorted(maps.Keys(byIndex)) {
		out = append(out, byIndex[i])
	}
	return out
}

// ReadAudit reads back everything the stages found about a finished, explained run of a
// trace (its steps, verdict and step explanations) and assembles its audit; info
// describes the policy. A failure to read the steps is an ErrStepsUnread.
func ReadAudit(ctx context.Context, store TraceStore, ev *Explained, info schemas.AuditInfo) (*schemas.AuditResult, error) {
	t, err := store.Trace(ctx, ev.TraceRef, ev.Steps)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStepsUnread, err)
	}
	vs, steps, err := ReadResults(ctx, store, ev)
	if err != nil {
		return nil, err
	}
	return ev.Audit(t, vs, steps, info), nil
}

// ErrStepsUnread says the steps of a trace could not be read back.
var ErrStepsUnread = errors.New("the steps are not all in the stream")

// ReadResults reads back the verdict and the step explanations of a finished, explained
// run of a trace.
func ReadResults(ctx context.Context, store TraceStore, ev *Explained) ([]schemas.Violation, []schemas.StepExplanation, error) {
	vs, err := store.Verdict(ctx, &ev.Evaluated)
	if err != nil {
		return nil, nil, err
	}
	steps, err := store.Explanations(ctx, ev.TraceRef, ev.Count)
	if err != nil {
		return nil, nil, err
	}
	return vs, steps, nil
}

// ReadFunc returns the events of a subject of the steps stream, in order, up to and
// including stream sequence upTo: what a stage reads to rebuild a trace it has no state
// for (after a restart, or on another instance). The bus's ReadSteps is one.
type ReadFunc func(ctx context.Context, subject string, upTo uint64) ([]Envelope, error)
