package pipeline

import (
	"context"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/explainer"
)

// modelJudge gives the verdicts of judge rules from the explainer's model, with its
// redaction, cache, budget, concurrency limit and retries.
type modelJudge struct{ e *explainer.Explainer }

// NewJudge returns the engine's judge asking e's model; nil when e is nil (no model
// configured), so judge rules are recorded as not evaluated.
func NewJudge(e *explainer.Explainer) evaluator.Judge {
	if e == nil {
		return nil
	}
	return modelJudge{e}
}

func (m modelJudge) Judge(ctx context.Context, c evaluator.JudgeCase) (evaluator.JudgeVerdict, error) {
	a, err := m.e.Judge(ctx, explainer.JudgeRequest{AgentName: c.AgentName, TraceMetadata: c.TraceMetadata, Steps: c.Steps, Question: c.Question})
	if err != nil {
		return evaluator.JudgeVerdict{}, err
	}
	return evaluator.JudgeVerdict{Aligned: a.Aligned, Reason: a.Reason}, nil
}
