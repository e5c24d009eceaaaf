package pipeline

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/reporter"
	"github.com/troy-audit/troy/schemas"
)

// reportInfoFunc describes the policy with the given content hash for a report.
type reportInfoFunc func(ctx context.Context, policy string) (schemas.AuditInfo, error)

// reportStage is the reporter stage of the pipeline: for each explained trace it reads the trace,
// its verdict and its step explanations back from the streams, writes
// report.md and audit.json (and the model's raw replies) under Dir/<agent>/<trace>/, then
// emits event.Reported. Writing is idempotent (a redelivered event rewrites the same files
// with the same content), so every trace has exactly one report.
type reportStage struct {
	dir   string
	store event.TraceStore
	info  reportInfoFunc
	sign  *reporter.Signer // nil writes unsigned reports
}

// newReportStage returns a reporter stage writing under dir; store reads finished traces back.
func newReportStage(dir string, store event.TraceStore, info reportInfoFunc, sign *reporter.Signer) *reportStage {
	return &reportStage{dir: dir, store: store, info: info, sign: sign}
}

// traceDir is where the stage writes a trace's reports.
func (s *reportStage) traceDir(agent, trace string) string {
	return filepath.Join(s.dir, reporter.PathToken(agent), reporter.PathToken(trace))
}

// Handle writes the reports of one explained trace.
func (s *reportStage) Handle(ctx context.Context, in event.Envelope) ([]event.Envelope, error) {
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
	dir := s.traceDir(ev.AgentName, ev.TraceID)
	md, js := filepath.Join(dir, "report.md"), filepath.Join(dir, "audit.json")
	if err := reporter.WriteAudit(r, reporter.Dest{Markdown: md, JSON: js, Signer: s.sign}); err != nil {
		return nil, err
	}
	out, err := event.New(event.Reported{TraceRef: ev.TraceRef, RiskScore: ev.RiskScore, Violations: ev.Violations, Report: md, AuditJSON: js})
	if err != nil {
		return nil, err
	}
	return []event.Envelope{out}, nil
}
