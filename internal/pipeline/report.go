package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"time"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/reporter"
	"github.com/troy-audit/troy/schemas"
)

// reportInfoFunc describes the policy with the given content hash for a report.
type reportInfoFunc func(ctx context.Context, policy string) (schemas.AuditInfo, error)

// reportStage is the reporter stage of the pipeline. A trace's report is everything the
// streams hold of it (its steps, verdict, explanations and explained event), so reports
// are rendered when asked for (Reports) and nothing is written per trace: for each
// explained trace the stage only emits event.Reported. With a directory it also writes
// report.md and audit.json (and the model's raw replies) under Dir/<agent>/<trace>/, the
// same bytes Reports gives. Writing is idempotent (a redelivered event rewrites the same
// files with the same content), so every trace has exactly one report.
type reportStage struct {
	dir     string // "" writes no files
	reports *Reports
}

// newReportStage returns a reporter stage writing files under dir (none when it is empty).
func newReportStage(dir string, reports *Reports) *reportStage {
	return &reportStage{dir: dir, reports: reports}
}

// traceDir is where the stage writes a trace's reports.
func (s *reportStage) traceDir(agent, trace string) string {
	return filepath.Join(s.dir, reporter.PathToken(agent), reporter.PathToken(trace))
}

// Handle reports one explained trace.
func (s *reportStage) Handle(ctx context.Context, in event.Envelope) ([]event.Envelope, error) {
	ev, err := event.Decode[event.Explained](in)
	if err != nil {
		return nil, err
	}
	rep := event.Reported{TraceRef: ev.TraceRef, RiskScore: ev.RiskScore, Violations: ev.Violations}
	if s.dir != "" {
		r, err := s.reports.audit(ctx, &ev)
		if err != nil {
			return nil, err
		}
		dir := s.traceDir(ev.AgentName, ev.TraceID)
		rep.Report, rep.AuditJSON = filepath.Join(dir, event.ReportMarkdown), filepath.Join(dir, event.ReportJSON)
		if err := reporter.WriteAudit(r, reporter.Dest{Markdown: rep.Report, JSON: rep.AuditJSON, Signer: s.reports.signer(in.Time)}); err != nil {
			return nil, err
		}
	}
	out, err := event.New(rep)
	if err != nil {
		return nil, err
	}
	return []event.Envelope{out}, nil
}

// Reports renders the reports of finished traces from the streams: report.md and
// audit.json as the reporter stage writes them, byte for byte. A signed report is signed
// as of the time its explained event was stored, so that it is the same each time it is
// rendered (by the same version of troy, with the same key).
type Reports struct {
	b    *bus.Bus
	info reportInfoFunc
	sign *reporter.Signer // nil renders unsigned reports

	mu   sync.Mutex
	last renderedReport // the latest rendering, for the next part of a large file
}

// renderedReport is one rendering of a run's report.
type renderedReport struct {
	agent, trace, run string
	seq               uint64 // the explained event's, so that a run explained again is rendered again
	md, js            []byte
}

// NewReports returns the renderer of reports of traces on b; sign nil renders unsigned.
func NewReports(b *bus.Bus, info reportInfoFunc, sign *reporter.Signer) *Reports {
	return &Reports{b: b, info: info, sign: sign}
}

func (r *Reports) signer(at time.Time) *reporter.Signer { return r.sign.At(at.UTC()) }

// audit reads back what the stages found about an explained run.
func (r *Reports) audit(ctx context.Context, ev *event.Explained) (*schemas.AuditResult, error) {
	info, err := r.info(ctx, ev.Policy)
	if err != nil {
		return nil, fmt.Errorf("policy %q: %w", ev.Policy, err)
	}
	return event.ReadAudit(ctx, r.b, ev, info)
}

// ErrNoReport says a trace has no finished run (with the run asked for) yet.
var ErrNoReport = errors.New("no finished run")

// Render returns report.md and audit.json of a finished run of a trace: the latest when
// run is empty.
func (r *Reports) Render(ctx context.Context, agent, trace, run string) (md, js []byte, ran string, err error) {
	events, err := r.b.ReadResults(ctx, event.ResultSubject(event.KindExplained, agent, trace), math.MaxUint64)
	if err != nil {
		return nil, nil, "", err
	}
	var ev *event.Explained
	var in event.Envelope
	for i := len(events) - 1; i >= 0 && ev == nil; i-- {
		if x, err := event.Decode[event.Explained](events[i]); err == nil && (run == "" || x.Run == run) {
			ev, in = &x, events[i]
		}
	}
	if ev == nil {
		return nil, nil, "", fmt.Errorf("trace %q of agent %q: %w (yet)", trace, agent, ErrNoReport)
	}
	r.mu.Lock()
	last := r.last
	r.mu.Unlock()
	if last.agent == agent && last.trace == trace && last.run == ev.Run && last.seq == in.Seq {
		return last.md, last.js, last.run, nil
	}
	a, err := r.audit(ctx, ev)
	if err != nil {
		return nil, nil, "", err
	}
	if md, js, err = reporter.Render(a, r.signer(in.Time)); err != nil {
		return nil, nil, "", err
	}
	r.mu.Lock()
	r.last = renderedReport{agent: agent, trace: trace, run: ev.Run, seq: in.Seq, md: md, js: js}
	r.mu.Unlock()
	return md, js, ev.Run, nil
}

// reportPart bounds the data of one answer of the report service, well within a message.
const reportPart = 512 << 10

// Start answers event.ReportRequest on event.ReportSubject until stop is called.
func (r *Reports) Start() (stop func() error, err error) {
	stop, err = r.b.AddService("troy-reports", "1.0.0", "Renders the reports of finished traces from the streams", []bus.Endpoint{
		{Name: "report", Subject: event.ReportPrefix + ".*", Handle: r.handle},
	}, 2*time.Minute)
	if err != nil {
		return nil, fmt.Errorf("report service: %w", err)
	}
	return stop, nil
}

func (r *Reports) handle(ctx context.Context, data []byte) ([]byte, error) {
	var req event.ReportRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, &bus.RequestError{Code: "400", Message: "a report request: " + err.Error()}
	}
	if err := checkIDs("agent_name", req.Agent, "trace_id", req.Trace); err != nil {
		return nil, &bus.RequestError{Code: "400", Message: err.Error()}
	}
	if req.Run != "" {
		if err := checkIDs("run", req.Run); err != nil {
			return nil, &bus.RequestError{Code: "400", Message: err.Error()}
		}
	}
	if req.File != event.ReportMarkdown && req.File != event.ReportJSON {
		return nil, &bus.RequestError{Code: "400", Message: fmt.Sprintf("file %q: expected %s or %s", req.File, event.ReportMarkdown, event.ReportJSON)}
	}
	// NATS permissions let an agent ask on its own subject only.
	if s := bus.RequestSubject(ctx); s != event.ReportSubject(req.Agent) {
		return nil, &bus.RequestError{Code: "403", Message: fmt.Sprintf("a request for agent %q's reports on %s", req.Agent, s)}
	}
	md, js, run, err := r.Render(ctx, req.Agent, req.Trace, req.Run)
	switch {
	case errors.Is(err, ErrNoReport), errors.Is(err, event.ErrStepsUnread):
		return nil, &bus.RequestError{Code: "404", Message: err.Error()}
	case err != nil:
		return nil, err
	}
	file := js
	if req.File == event.ReportMarkdown {
		file = md
	}
	if req.Offset < 0 || req.Offset > len(file) {
		return nil, &bus.RequestError{Code: "400", Message: fmt.Sprintf("offset %d of a file of %d bytes", req.Offset, len(file))}
	}
	part := file[req.Offset:min(len(file), req.Offset+reportPart)]
	return json.Marshal(event.ReportReply{Run: run, Size: len(file), Data: part})
}
