package scorer

import (
	"context"
	"fmt"

	"github.com/troy-audit/troy/event"
)

// WeightsFunc returns the rule weights of the policy with the given content hash.
type WeightsFunc func(ctx context.Context, policy string) (map[string]int, error)

// Stage is the scorer stage of the pipeline: TraceEvaluated in, TraceScored out.
type Stage struct{ weights WeightsFunc }

// NewStage returns a scorer stage.
func NewStage(weights WeightsFunc) *Stage { return &Stage{weights: weights} }

// Handle scores one evaluated trace.
func (s *Stage) Handle(ctx context.Context, in event.Envelope) ([]event.Envelope, error) {
	ev, err := event.Decode[event.Evaluated](in)
	if err != nil {
		return nil, err
	}
	w, err := s.weights(ctx, ev.Policy)
	if err != nil {
		return nil, fmt.Errorf("policy %q: %w", ev.Policy, err)
	}
	out, err := event.New(event.Scored{Evaluated: ev, RiskScore: ScoreRules(ev.Rules, w)})
	if err != nil {
		return nil, err
	}
	return []event.Envelope{out}, nil
}
