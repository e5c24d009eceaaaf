package reporter

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"

	"github.com/troy-audit/troy/schemas"
)

// ReadFunc returns the events of a subject of the steps stream, in order, up to and
// including stream sequence upTo.
type ReadFunc func(ctx context.Context, subject string, upTo uint64) ([]schemas.Envelope, error)

// InfoFunc describes the policy with the given content hash for a report.
type InfoFunc func(ctx context.Context, policy string) (schemas.AuditInfo, error)

// Stage is the reporter stage of the pipeline: for each explained trace it reads the trace
// back from the steps stream and its step explanations from the results stream, writes
// report.md and audit.json (and the model's raw replies) under Dir/<agent>/<trace>/, then
// emits TraceReported. Writing is idempotent (a redelivered event rewrites the same files
// with the same content), so every trace has exactly one report.
type Stage struct {
	dir     string
	read    ReadFunc
	results ReadFunc
	info    InfoFunc
}

// NewStage returns a reporter stage writing under dir; read reads the steps stream and
// results the results stream.
func NewStage(dir string, read, results ReadFunc, info InfoFunc) *Stage {
	return &Stage{dir: dir, read: read, results: results, info: info}
}

// TraceDir is where the stage writes a trace's reports.
func (s *Stage) TraceDir(agent, trace string) string {
	return filepath.Join(s.dir, schemas.SubjectToken(agent), schemas.SubjectToken(trace))
}

// Handle writes the reports of one explained trace.
func (s *Stage) Handle(ctx context.Context, in schemas.Envelope) ([]schemas.Envelope, error) {
	var ev schemas.TraceExplained
	if err := json.Unmarshal(in.Data, &ev); err != nil {
		return nil, &schemas.Permanent{Err: fmt.Errorf("decode explained event: %w", err)}
	}
	events, err := s.read(ctx, schemas.StepsSubject(ev.AgentName, ev.TraceID), math.MaxUint64)
	if err != nil {
		return nil, fmt.Errorf("read trace %s: %w", ev.TraceID, err)
	}
	tr, err := schemas.AssembleTrace(events, ev.Run)
	if err == nil {
		err = schemas.CheckComplete(tr, ev.Steps)
	}
	if err != nil {
		return nil, fmt.Errorf("read trace %s: %w", ev.TraceID, err)
	}
	var steps []schemas.StepExplanation
	if ev.Count > 0 {
		events, err := s.results(ctx, schemas.ResultSubject(schemas.KindExplanation, ev.AgentName, ev.TraceID), math.MaxUint64)
		if err != nil {
			return nil, fmt.Errorf("read explanations of %s: %w", ev.TraceID, err)
		}
		if steps = schemas.CollectExplanations(events, ev.Run); len(steps) < ev.Count {
			return nil, fmt.Errorf("explanations of %s: %d of %d stored so far", ev.TraceID, len(steps), ev.Count)
		}
	}
	info, err := s.info(ctx, ev.Policy)
	if err != nil {
		return nil, fmt.Errorf("policy %q: %w", ev.Policy, err)
	}
	r := ev.Audit(tr, steps, info)
	dir := s.TraceDir(ev.AgentName, ev.TraceID)
	md, js := filepath.Join(dir, "report.md"), filepath.Join(dir, "audit.json")
	if err := WriteAudit(r, md, js); err != nil {
		return nil, err
	}
	out, err := schemas.NewEnvelope(
		schemas.ResultSubject(schemas.KindReported, ev.AgentName, ev.TraceID),
		schemas.KindReported,
		schemas.MsgID(schemas.KindReported, ev.TraceRef, ""),
		schemas.TraceReported{TraceRef: ev.TraceRef, RiskScore: ev.RiskScore, Violations: len(ev.Violations), Report: md, AuditJSON: js},
	)
	if err != nil {
		return nil, err
	}
	return []schemas.Envelope{out}, nil
}
