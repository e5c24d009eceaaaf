package reporter

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/troy-audit/troy/schemas"
)

// InfoFunc describes the policy with the given content hash for a report.
type InfoFunc func(ctx context.Context, policy string) (schemas.AuditInfo, error)

// Stage is the reporter stage of the pipeline: for each explained trace it reads the trace,
// its verdict and its step explanations back from the streams, writes
// report.md and audit.json (and the model's raw replies) under Dir/<agent>/<trace>/, then
// emits TraceReported. Writing is idempotent (a redelivered event rewrites the same files
// with the same content), so every trace has exactly one report.
type Stage struct {
	dir   string
	store schemas.TraceStore
	info  InfoFunc
}

// NewStage returns a reporter stage writing under dir; store reads finished traces back.
func NewStage(dir string, store schemas.TraceStore, info InfoFunc) *Stage {
	return &Stage{dir: dir, store: store, info: info}
}

// TraceDir is where the stage writes a trace's reports.
func (s *Stage) TraceDir(agent, trace string) string {
	return filepath.Join(s.dir, PathToken(agent), PathToken(trace))
}

// Handle writes the reports of one explained trace.
func (s *Stage) Handle(ctx context.Context, in schemas.Envelope) ([]schemas.Envelope, error) {
	var ev schemas.TraceExplained
	if err := json.Unmarshal(in.Data, &ev); err != nil {
		return nil, &schemas.Permanent{Err: fmt.Errorf("decode explained event: %w", err)}
	}
	tr, err := s.store.Trace(ctx, ev.TraceRef, ev.Steps)
	if err != nil {
		return nil, err
	}
	vs, err := s.store.Verdict(ctx, &ev.TraceEvaluated)
	if err != nil {
		return nil, err
	}
	steps, err := s.store.Explanations(ctx, ev.TraceRef, ev.Count)
	if err != nil {
		return nil, err
	}
	info, err := s.info(ctx, ev.Policy)
	if err != nil {
		return nil, fmt.Errorf("policy %q: %w", ev.Policy, err)
	}
	r := ev.Audit(tr, vs, steps, info)
	dir := s.TraceDir(ev.AgentName, ev.TraceID)
	md, js := filepath.Join(dir, "report.md"), filepath.Join(dir, "audit.json")
	if err := WriteAudit(r, Dest{Markdown: md, JSON: js}); err != nil {
		return nil, err
	}
	out, err := schemas.NewEnvelope(
		schemas.ResultSubject(schemas.KindReported, ev.AgentName, ev.TraceID),
		schemas.KindReported,
		schemas.MsgID(schemas.KindReported, ev.TraceRef, ""),
		schemas.TraceReported{TraceRef: ev.TraceRef, RiskScore: ev.RiskScore, Violations: ev.Violations, Report: md, AuditJSON: js},
	)
	if err != nil {
		return nil, err
	}
	return []schemas.Envelope{out}, nil
}
