package reporter

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/troy-audit/troy/event"

	"github.com/troy-audit/troy/schemas"
)

// InfoFunc describes the policy with the given content hash for a report.
type InfoFunc func(ctx context.Context, policy string) (schemas.AuditInfo, error)

// Stage is the reporter stage of the pipeline: for each explained trace it reads the trace,
// its verdict and its step explanations back from the streams, writes
// report.md and audit.json (and the model's raw replies) under Dir/<agent>/<trace>/, then
// emits event.Reported. Writing is idempotent (a redelivered event rewrites the same files
// with the same content), so every trace has exactly one report.
type Stage struct {
	dir   string
	store event.TraceStore
	info  InfoFunc
}

// NewStage returns a reporter stage writing under dir; store reads finished traces back.
func NewStage(dir string, store event.TraceStore, info InfoFunc) *Stage {
	return &Stage{dir: dir, store: store, info: info}
}

// TraceDir is where the stage writes a trace's reports.
func (s *Stage) TraceDir(agent, trace string) string {
	return filepath.Join(s.dir, PathToken(agent), PathToken(trace))
}

// Handle writes the reports of one explained trace.
func (s *Stage) Handle(ctx context.Context, in event.Envelope) ([]event.Envelope, error) {
	ev, err := event.Decode[event.Explained](in)
	if err != nil {
		return nil, err
	}
	info, err := s.info(ctx, ev.Policy)
	if err != nil {
		return nil, fmt.Errorf("policy %q: %w", ev.Policy, err)
	}
	r, err := event.ReadAudit(ctx, s.store, &ev, info)
	if err != nil {
		return nil, err
	}
	dir := s.TraceDir(ev.AgentName, ev.TraceID)
	md, js := filepath.Join(dir, "report.md"), filepath.Join(dir, "audit.json")
	if err := WriteAudit(r, Dest{Markdown: md, JSON: js}); err != nil {
		return nil, err
	}
	out, err := event.New(event.Reported{TraceRef: ev.TraceRef, RiskScore: ev.RiskScore, Violations: ev.Violations, Report: md, AuditJSON: js})
	if err != nil {
		return nil, err
	}
	return []event.Envelope{out}, nil
}
