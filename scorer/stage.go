package scorer

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/troy-audit/troy/schemas"
)

// WeightsFunc returns the rule weights of the policy with the given content hash.
type WeightsFunc func(ctx context.Context, policy string) (map[string]int, error)

// Stage is the scorer stage of the pipeline: TraceEvaluated in, TraceScored out.
type Stage struct{ weights WeightsFunc }

// NewStage returns a scorer stage.
func NewStage(weights WeightsFunc) *Stage { return &Stage{weights: weights} }

// Handle scores one evaluated trace.
func (s *Stage) Handle(ctx context.Context, in schemas.Envelope) ([]schemas.Envelope, error) {
	var ev schemas.TraceEvaluated
	if err := json.Unmarshal(in.Data, &ev); err != nil {
		return nil, &schemas.Permanent{Err: fmt.Errorf("decode evaluated event: %w", err)}
	}
	w, err := s.weights(ctx, ev.Policy)
	if err != nil {
		return nil, fmt.Errorf("policy %q: %w", ev.Policy, err)
	}
	out, err := schemas.NewEnvelope(
		schemas.ResultSubject(schemas.KindScored, ev.AgentName, ev.TraceID),
		schemas.KindScored,
		schemas.MsgID(schemas.KindScored, ev.TraceRef, ""),
		schemas.TraceScored{TraceEvaluated: ev, RiskScore: ScoreRules(ev.Rules, w)},
	)
	if err != nil {
		return nil, err
	}
	return []schemas.Envelope{out}, nil
}
