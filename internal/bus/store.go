package bus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/schemas"
)

// The bus is the pipeline's event.TraceStore: what the streams hold of a trace, read
// back by subject. A read that gets no answer (a server restarting, a cluster electing a
// leader) or finds less than is known to be stored (a replica behind) is made again, until
// it has failed for half a minute.
var _ event.TraceStore = (*Bus)(nil)

// Trace reads one run of a trace back from the steps stream, decoding as it reads.
func (b *Bus) Trace(ctx context.Context, ref event.TraceRef, steps int) (t *schemas.Trace, err error) {
	err = b.readAgain(ctx, "read trace "+ref.TraceID, func(ctx context.Context) error {
		a := event.NewAssembler(ref.Run)
		if err := b.Scan(ctx, StepsStream, event.StepsSubject(ref.AgentName, ref.TraceID), 0, math.MaxUint64, a.Add); err != nil {
			return err
		}
		if t, err = a.Trace(); err != nil {
			return err
		}
		return event.CheckComplete(t, steps)
	})
	if err != nil {
		return nil, fmt.Errorf("read trace %s: %w", ref.TraceID, err)
	}
	return t, nil
}

// Verdict reads the violations of a finished run back from the results stream.
func (b *Bus) Verdict(ctx context.Context, ev *event.Evaluated) (vs []schemas.Violation, err error) {
	if ev.Parts == 0 {
		return []schemas.Violation{}, nil
	}
	err = b.readAgain(ctx, "read verdict of "+ev.TraceID, func(ctx context.Context) error {
		c := event.NewVerdictCollector(ev)
		if err := b.Scan(ctx, ResultsStream, event.ResultSubject(event.KindVerdict, ev.AgentName, ev.TraceID), 0, math.MaxUint64, c.Add); err != nil {
			return err
		}
		vs, err = c.Violations()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read verdict of %s: %w", ev.TraceID, err)
	}
	return vs, nil
}

// Explanations reads a run's step explanations back from the results stream.
func (b *Bus) Explanations(ctx context.Context, ref event.TraceRef, n int) (steps []schemas.StepExplanation, err error) {
	if n == 0 {
		return nil, nil
	}
	err = b.readAgain(ctx, "read explanations of "+ref.TraceID, func(ctx context.Context) error {
		events, err := b.ReadResults(ctx, event.ResultSubject(event.KindExplanation, ref.AgentName, ref.TraceID), math.MaxUint64)
		if err != nil {
			return err
		}
		if steps = event.CollectExplanations(events, ref.Run); len(steps) < n {
			return fmt.Errorf("%d of %d explanations read so far: %w", len(steps), n, event.ErrIncomplete)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read explanations of %s: %w", ref.TraceID, err)
	}
	return steps, nil
}

// readAgain calls read until it succeeds or fails for good. A read that got no answer, or
// found less than is stored, is made again with growing pauses, until reads have failed
// for half a minute; a long read that succeeds is never cut short.
func (b *Bus) readAgain(ctx context.Context, what string, read func(context.Context) error) error {
	var failing time.Time
	wait := 100 * time.Millisecond
	for {
		err := read(ctx)
		if err == nil || ctx.Err() != nil || !unanswered(err) && !errors.Is(err, event.ErrIncomplete) {
			return err
		}
		if failing.IsZero() {
			failing = time.Now()
		} else if time.Since(failing) > 30*time.Second {
			return err
		}
		b.log.Info("read failed; reading again", "what", what, "err", err)
		sleep(ctx, wait)
		wait = min(2*wait, 2*time.Second)
	}
}
