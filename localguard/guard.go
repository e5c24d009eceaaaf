// Package localguard is the guard without a service: the policy is evaluated in the
// agent's own process by the engine the guard service runs, every checked step is
// recorded in an outbox on disk before its decision is returned, and the record is
// forwarded to a deployment when one is configured. A Guard implements the SDK's
// agent.Checker, so code written against a deployment's guard runs against it unchanged.
package localguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/sdk/agent"

	"github.com/troy-audit/troy/audit"
	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/reporter"
	"github.com/troy-audit/troy/schemas"
)

// A Guard is checked with as a guard service's client is.
var _ agent.Checker = (*Guard)(nil)

// DefaultDataDir is where a Guard keeps its record and reports unless told otherwise:
// the data directory of troyctl.
const DefaultDataDir = ".troy"

// Options configure a Guard.
type Options struct {
	Session       string         // the session's id (its trace id); empty makes one up
	Agent         string         // the agent's name; empty means "agent"
	AgentMetadata map[string]any // what rules see as agent.metadata
	Mode          string         // enforce (default), monitor or dry-run
	// OnRuleError says what enforce mode does with a step at which a rule could not be
	// evaluated: block (fail closed) or skip. Empty means the policy's setting (block by
	// default), as in the guard service.
	OnRuleError string
	// FailOpen allows steps that could not be recorded (a full disk). By default they are
	// blocked: a step the record cannot hold is not taken.
	FailOpen bool
	// OnViolation is called in monitor mode with each decision that found violations.
	OnViolation func(schemas.Decision)
	// DataDir keeps the record (outbox/) and the reports (reports/); empty means
	// DefaultDataDir.
	DataDir string
	// SyncEach makes every record reach the disk (fsync) before its check returns. By
	// default records are written before the check returns, which a crash of the agent's
	// process cannot lose, and synced at least every SyncInterval, at End and at Close,
	// against a crash of the machine.
	SyncEach bool
	// Forward, when its URL is set, is the NATS of a deployment (troyctl serve) that
	// every recorded event is sent on to, in the background, as Trace sends them. Events
	// the deployment has not acknowledged stay in the outbox until it has.
	Forward agent.Options
	// Judge gives the verdicts of rules with a model judge, at each check within the
	// rule's timeout (without an answer the rule's on_error decides) and again in the
	// session's report. Nil: no model, so on_error decides at each check, and the report
	// records such rules as not evaluated.
	Judge evaluator.Judge
	// Logger hears of forwarding trouble, and of judges that gave no answer where the
	// rule allows the step anyway; nil discards.
	Logger *slog.Logger
	// Now stamps checked steps; nil means time.Now.
	Now func() time.Time
}

// SyncInterval bounds how long a recorded event may wait for fsync without SyncEach.
const SyncInterval = time.Second

// Guard checks each step of one session in the agent's own process, with the same
// engine and decisions as the guard service, and needs nothing else running. Every checked
// step and output is appended to a file in the data directory before the decision is
// returned, and forwarded to a deployment when one is configured. End writes the session's
// report.md and audit.json. A Guard is safe for concurrent use; checks are serialized.
type Guard struct {
	c    *evaluator.Compiled
	opts Options
	fw   *forwarder // nil without Forward

	mu       sync.Mutex
	g        *evaluator.Guard
	ref      event.TraceRef
	rec      *outboxFile // the record of the current run
	closed   bool
	stopSync chan struct{}
	syncDone chan struct{}
}

// LoadPolicy resolves a policy argument as troyctl does (a policy file, a bundled
// template's name, Python-dialect conditions converted) and compiles it.
func LoadPolicy(policy string) (*evaluator.Compiled, error) {
	p, err := policies.Resolve(policy)
	if err != nil {
		return nil, err
	}
	return evaluator.Compile(p)
}

// Open loads a policy (a file or a bundled template's name) and starts a local
// guard with it.
func Open(ctx context.Context, policy string, opts Options) (*Guard, error) {
	c, err := LoadPolicy(policy)
	if err != nil {
		return nil, err
	}
	return New(ctx, c, opts)
}

// New starts a local guard with a compiled policy. With Forward set, what an
// earlier process left unsent in the data directory's outbox is forwarded too.
func New(ctx context.Context, c *evaluator.Compiled, opts Options) (*Guard, error) {
	if opts.Agent == "" {
		opts.Agent = "agent"
	}
	if opts.Session == "" {
		opts.Session = "local-" + event.NewRun()
	}
	if opts.DataDir == "" {
		opts.DataDir = DefaultDataDir
	}
	if opts.Mode == "" {
		opts.Mode = schemas.ModeEnforce
	}
	if opts.AgentMetadata == nil {
		opts.AgentMetadata = map[string]any{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := checkIDs("session", opts.Session, "agent", opts.Agent); err != nil {
		return nil, err
	}
	l := &Guard{c: c, opts: opts, stopSync: make(chan struct{}), syncDone: make(chan struct{})}
	if err := l.start(opts.Session); err != nil {
		return nil, err
	}
	if opts.Forward.URL != "" {
		fw, err := startForwarder(ctx, outboxDir(opts.DataDir), opts.Forward, c, opts.Logger)
		if err != nil {
			l.rec.close()
			return nil, err
		}
		l.fw = fw
		fw.add(l.rec)
	}
	go l.syncLoop()
	return l, nil
}

// checkIDs checks ids given as name, id pairs (schemas.CheckID).
func checkIDs(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if err := schemas.CheckID(pairs[i+1]); err != nil {
			return fmt.Errorf("%s: %w", pairs[i], err)
		}
	}
	return nil
}

// start begins a run of a session: a fresh engine session and record file.
func (l *Guard) start(session string) error {
	g, err := l.c.NewGuard(evaluator.GuardOptions{TraceID: session, AgentName: l.opts.Agent, AgentMetadata: l.opts.AgentMetadata,
		Mode: l.opts.Mode, OnRuleError: l.opts.OnRuleError, Now: l.opts.Now, Judge: l.opts.Judge, Logger: l.opts.Logger})
	if err != nil {
		return err
	}
	ref := event.TraceRef{TraceID: session, AgentName: l.opts.Agent, Policy: l.c.Hash(), Run: event.NewRun()}
	rec, err := createOutboxFile(outboxDir(l.opts.DataDir), ref.Run)
	if err != nil {
		return err
	}
	l.g, l.ref, l.rec = g, ref, rec
	return nil
}

// Session is the id of the session being guarded.
func (l *Guard) Session() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ref.TraceID
}

// Policy is the compiled policy the guard checks with.
func (l *Guard) Policy() *evaluator.Compiled { return l.c }

// RecordPath is the file the current run's events are appended to.
func (l *Guard) RecordPath() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec.path
}

// ErrClosed is returned by a Guard used after Close.
var ErrClosed = errors.New("local guard is closed")

// Check decides whether the agent may take a step, records it, and returns the decision:
// in enforce mode a blocked step returns a *agent.BlockedError; a step that could not be
// recorded, an *agent.UnavailableError with Allowed following FailOpen.
func (l *Guard) Check(ctx context.Context, action string, input, metadata map[string]any, stepType string) (schemas.Decision, error) {
	return l.CheckStep(ctx, evaluator.CheckRequest{GuardStep: schemas.GuardStep{Action: action, Input: input, Metadata: metadata, Type: stepType}})
}

// CheckStep is Check with every field of the request: req.AgentMetadata, when not nil,
// replaces the agent's metadata for this check. The step id and time are the guard's.
func (l *Guard) CheckStep(ctx context.Context, req evaluator.CheckRequest) (schemas.Decision, error) {
	if req.Type == "" {
		req.Type = schemas.StepToolCall
	}
	if !schemas.ValidStepType(req.Type) {
		return schemas.Decision{Mode: l.opts.Mode}, fmt.Errorf("step type %q is not one of %s", req.Type, strings.Join(schemas.StepTypes(), ", "))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return schemas.Decision{Mode: l.opts.Mode}, ErrClosed
	}
	seq := l.g.Len()
	// The step is recorded before it is evaluated, so that no decision is ever given for
	// a step the record lacks.
	ts := l.opts.Now().UTC().Format(time.RFC3339Nano)
	req.StepID, req.Timestamp = "step-"+strconv.Itoa(seq), ts
	step := &schemas.Step{StepID: req.StepID, Type: req.Type, Description: req.Action, Input: orEmpty(req.Input),
		Output: map[string]any{}, Metadata: orEmpty(req.Metadata), Timestamp: &ts}
	// The record carries the session's agent metadata: the trace has one, and the audit
	// evaluates with it; metadata given for one check changes that check's decision only.
	e, err := event.New(event.Step{TraceRef: l.ref, TraceMetadata: l.opts.AgentMetadata, Seq: seq, Step: step})
	if err == nil {
		err = l.record(e)
	}
	if err != nil {
		var tooBig *RecordTooLargeError
		if errors.As(err, &tooBig) {
			return schemas.Decision{Mode: l.opts.Mode}, err
		}
		return schemas.Decision{Allowed: l.opts.FailOpen, Mode: l.opts.Mode, Violations: []schemas.Violation{}, RuleErrors: []schemas.StepRuleError{}}, &agent.UnavailableError{Err: err}
	}
	d, err := l.g.CheckContext(ctx, req)
	if err != nil {
		return schemas.Decision{Mode: l.opts.Mode}, err
	}
	d.MissingMetadata = l.g.MissingMetadata(req.Metadata)
	if len(d.Violations) > 0 && l.opts.Mode == schemas.ModeMonitor && l.opts.OnViolation != nil {
		l.opts.OnViolation(d)
	}
	if !d.Allowed {
		return d, &agent.BlockedError{Decision: d}
	}
	return d, nil
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// record appends an event to the run's record and hands it to the forwarder.
func (l *Guard) record(e event.Envelope) error {
	if err := l.rec.append(e, l.opts.SyncEach); err != nil {
		return err
	}
	if l.fw != nil {
		l.fw.kick()
	}
	return nil
}

// RecordOutput attaches a checked step's output, so later rules can read it, and records
// it. An unknown step id is an error.
func (l *Guard) RecordOutput(_ context.Context, stepID string, output map[string]any) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if err := checkIDs("step_id", stepID); err != nil {
		return err
	}
	e, err := event.New(event.Output{TraceRef: l.ref, StepID: stepID, Output: orEmpty(output)})
	if err != nil {
		return err
	}
	if len(e.Data) > MaxRecordSize { // refused before the session sees it
		return &RecordTooLargeError{Kind: e.Kind, Size: len(e.Data)}
	}
	if err := l.g.RecordOutput(stepID, output); err != nil {
		return &UnknownStepError{StepID: stepID}
	}
	return l.record(e)
}

// UnknownStepError is returned by RecordOutput for a step id the session never checked.
type UnknownStepError struct{ StepID string }

func (e *UnknownStepError) Error() string {
	return fmt.Sprintf("unknown step_id %q: no step of this session was checked with it", e.StepID)
}

// Trace returns the session so far as a trace, in the trace-file format.
func (l *Guard) Trace() *schemas.Trace {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.g.Trace()
}

// Report names the files End wrote.
type Report struct {
	Markdown string // report.md
	JSON     string // audit.json
	Result   *schemas.AuditResult
}

// ExplainNote is why a local guard's reports have no explanations; it is what
// `troyctl audit --no-explain` says, so that the reports are those of that command.
const ExplainNote = "--no-explain"

// End ends the session: its end is recorded (and forwarded), and its report.md and
// audit.json are written under the data directory's reports/<agent>/<session>/. Checks
// made after End start a new run of the session.
func (l *Guard) End(ctx context.Context) error {
	_, err := l.EndReport(ctx, "")
	return err
}

// EndReport is End writing the reports into dir (empty: the data directory's
// reports/<agent>/<session>/), and saying where they are.
func (l *Guard) EndReport(ctx context.Context, dir string) (Report, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return Report{}, ErrClosed
	}
	t := l.g.Trace()
	r, err := audit.ResultJudged(ctx, l.c, t, ExplainNote, l.opts.Judge)
	if err != nil {
		return Report{}, fmt.Errorf("the session's report: %w", err)
	}
	if err := l.finishRun(); err != nil {
		return Report{}, err
	}
	if dir == "" {
		dir = filepath.Join(l.opts.DataDir, "reports", reporter.PathToken(l.ref.AgentName), reporter.PathToken(l.ref.TraceID))
	}
	rep := Report{Markdown: filepath.Join(dir, "report.md"), JSON: filepath.Join(dir, "audit.json"), Result: r}
	if err := reporter.WriteAudit(r, reporter.Dest{Markdown: rep.Markdown, JSON: rep.JSON}); err != nil {
		return Report{}, fmt.Errorf("write the session's reports: %w", err)
	}
	if err := l.start(l.ref.TraceID); err != nil {
		return rep, err
	}
	if l.fw != nil {
		l.fw.add(l.rec)
	}
	return rep, nil
}

// finishRun records the run's end (when it has steps) and closes its record.
func (l *Guard) finishRun() error {
	if n := l.g.Len(); n > 0 {
		e, err := event.New(event.End{TraceRef: l.ref, Steps: n, Reason: event.EndSent})
		if err != nil {
			return err
		}
		if err := l.record(e); err != nil {
			return fmt.Errorf("record the session's end: %w", err)
		}
	}
	return l.rec.finish()
}

// Reset ends the current run (recorded and forwarded, without reports) and starts a new
// session with no history under a new id (empty makes one up), which it returns.
func (l *Guard) Reset(session string) (string, error) {
	if session == "" {
		session = "local-" + event.NewRun()
	}
	if err := checkIDs("session", session); err != nil {
		return "", err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return "", ErrClosed
	}
	if err := l.finishRun(); err != nil {
		return "", err
	}
	if err := l.start(session); err != nil {
		return "", err
	}
	if l.fw != nil {
		l.fw.add(l.rec)
	}
	return session, nil
}

// Close syncs the record and, when forwarding, waits until ctx ends for the deployment to
// acknowledge what is left (not at all when it cannot be reached); what it has not is
// forwarded by the next Guard (or `troyctl guard --flush`) on the same data directory. A session not ended stays open:
// its record is kept, and the deployment closes it when it has been idle.
func (l *Guard) Close(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	err := l.rec.finish()
	l.mu.Unlock()
	close(l.stopSync)
	<-l.syncDone
	if l.fw != nil {
		err = errors.Join(err, l.fw.close(ctx))
	}
	return err
}

// syncLoop syncs the record at least every SyncInterval while it has unsynced writes.
func (l *Guard) syncLoop() {
	defer close(l.syncDone)
	t := time.NewTicker(SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stopSync:
			return
		case <-t.C:
			// The flush runs outside the lock, so that no check waits for the disk.
			l.mu.Lock()
			o, dirty := l.rec, l.rec.dirty
			l.rec.dirty = false
			l.mu.Unlock()
			if !dirty {
				continue
			}
			if err := o.f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
				l.opts.Logger.Warn("sync the guard's record", "path", o.path, "err", err)
			}
		}
	}
}

// Flush forwards to a deployment what earlier processes left unsent in a data directory's
// outbox, waiting until ctx ends for it to be acknowledged. It returns how many events it
// sent and how many are left.
func Flush(ctx context.Context, dataDir string, deployment agent.Options, logger *slog.Logger) (sent, left int, err error) {
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	fw, err := startForwarder(ctx, outboxDir(dataDir), deployment, nil, logger)
	if err != nil {
		return 0, 0, err
	}
	err = fw.close(ctx)
	sent, left = fw.counts()
	return sent, left, err
}
