// Package agent is troy's Go SDK for agents: a Trace that sends a trace's steps as they
// happen, and a Guard that asks troy before a tool runs and records what it returned. Both
// talk to a troy deployment (troyctl serve) over NATS; the module needs nats.go and little
// else. A guard that evaluates in the agent's own process, with no deployment, is the
// localguard package of the troy module; it implements Checker too.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
	"github.com/troy-audit/troy/sdk/wire"
)

// Options say how to reach a troy deployment.
type Options struct {
	URL  string // the deployment's NATS, such as nats://troy:4222; required
	Name string // names the connection in the server's monitoring; default troy-agent
	// Auth is who the agent is to NATS, and its TLS. With none of its credentials set,
	// the environment's are used: TROY_CREDS (a credentials file, such as one from
	// troyctl auth agent NAME), else TROY_TOKEN.
	wire.Auth
}

// Environment variables an agent's credentials are taken from when Options give none.
const (
	EnvCreds = "TROY_CREDS"
	EnvToken = "TROY_TOKEN"
)

// FromEnv fills in the credentials from TROY_CREDS or TROY_TOKEN, when a gives none.
func FromEnv(a wire.Auth) wire.Auth {
	if a.CredsFile != "" || a.NKeyFile != "" || a.Token != "" || a.User != "" {
		return a
	}
	if f := os.Getenv(EnvCreds); f != "" {
		a.CredsFile = f
	} else if tok := os.Getenv(EnvToken); tok != "" {
		a.Token = tok
	}
	return a
}

// Conn is a connection to troy.
type Conn struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	own bool // Close closes nc
}

// Connect connects to the NATS of a troy deployment and checks that troy's streams are
// there.
func Connect(ctx context.Context, opts Options) (*Conn, error) {
	if opts.URL == "" {
		return nil, errors.New("connect to troy: a NATS URL is required")
	}
	if opts.Name == "" {
		opts.Name = "troy-agent"
	}
	nopts, err := wire.Options(opts.Name, FromEnv(opts.Auth))
	if err != nil {
		return nil, fmt.Errorf("connect to troy: %w", err)
	}
	nc, err := nats.Connect(opts.URL, nopts...)
	if err != nil {
		return nil, fmt.Errorf("connect to troy at %s: %w", opts.URL, err)
	}
	c := New(nc)
	c.own = true
	if _, err := c.js.Stream(ctx, event.StepsStream); err != nil {
		c.Close()
		return nil, fmt.Errorf("troy's streams are not on %s (is troyctl serve running?): %w", opts.URL, err)
	}
	return c, nil
}

// New uses an open NATS connection, which Close leaves open.
func New(nc *nats.Conn) *Conn {
	js, _ := jetstream.New(nc) // fails only for options, and none are given
	return &Conn{nc: nc, js: js}
}

// Close closes the connection, if Connect opened it.
func (c *Conn) Close() {
	if c.own {
		c.nc.Close()
	}
}

// PublishTimeout bounds the wait for the stream to store an event when the caller's
// context has no deadline: an agent is never held for ever by a deployment that is away.
const PublishTimeout = 30 * time.Second

// publish stores an event and waits for the stream's acknowledgement, retrying what a
// retry can fix until ctx ends, or PublishTimeout when ctx has no deadline.
func (c *Conn) publish(ctx context.Context, e event.Envelope) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, PublishTimeout)
		defer cancel()
	}
	return wire.PublishAll(ctx, c.js, []event.Envelope{e}, nil)
}

// Trace publishes one trace's events, in order.
type Trace struct {
	c     *Conn
	ref   event.TraceRef
	meta  map[string]any
	mu    sync.Mutex
	steps int
}

// StartTrace begins a trace. policy is a policy hash; empty uses the server's default.
func (c *Conn) StartTrace(traceID, agentName string, metadata map[string]any, policy string) *Trace {
	return &Trace{c: c, ref: event.TraceRef{TraceID: traceID, AgentName: agentName, Policy: policy, Run: event.NewRun()}, meta: metadata}
}

// checkIDs says which id breaks troy's rules (schemas.CheckID), before anything is sent:
// troy would refuse the events.
func (t *Trace) checkIDs(stepID string) error {
	if err := t.ref.Check(); err != nil {
		return fmt.Errorf("trace %.40q: %w", t.ref.TraceID, err)
	}
	if err := schemas.CheckID(stepID); err != nil {
		return fmt.Errorf("trace %.40q: step_id: %w", t.ref.TraceID, err)
	}
	return nil
}

// Step sends the next step. Steps must be sent in order; a retried send is stored once.
func (t *Trace) Step(ctx context.Context, s *schemas.Step) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.checkIDs(s.StepID); err != nil {
		return err
	}
	e, err := event.New(event.Step{TraceRef: t.ref, TraceMetadata: t.meta, Seq: t.steps, Step: s})
	if err != nil {
		return err
	}
	if err := t.c.publish(ctx, e); err != nil {
		return err
	}
	t.steps++
	return nil
}

// Output attaches a step's output after it ran.
func (t *Trace) Output(ctx context.Context, stepID string, output map[string]any) error {
	if err := t.checkIDs(stepID); err != nil {
		return err
	}
	e, err := event.New(event.Output{TraceRef: t.ref, StepID: stepID, Output: output})
	if err != nil {
		return err
	}
	return t.c.publish(ctx, e)
}

// End completes the trace, so that it is scored and reported.
func (t *Trace) End(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.checkIDs(""); err != nil {
		return err
	}
	e, err := event.New(event.End{TraceRef: t.ref, Steps: t.steps, Reason: event.EndSent})
	if err != nil {
		return err
	}
	return t.c.publish(ctx, e)
}

// GuardOptions configure a guarded session.
type GuardOptions struct {
	Session       string         // the session's id: its trace id
	Agent         string         // the agent's name
	AgentMetadata map[string]any // what rules see as agent.metadata
	Mode          string         // enforce (default), monitor or dry-run
	Policy        string         // a policy hash or a bundled template's name; empty uses the server's default
	// Timeout bounds one request; zero means 2s. Within it, a request that no instance
	// handled (the one that took it was stopping, or none was running, as during a
	// rolling restart) is sent again, to another instance.
	Timeout time.Duration
	// FailOpen allows steps when troy cannot be asked (no answer in time, not ready).
	// By default they are blocked: an unanswered check is a "no".
	FailOpen bool
	// OnViolation is called in monitor mode with each decision that found violations.
	OnViolation func(schemas.Decision)
	// Resume continues a session this client did not start (its earlier steps are read
	// from the stream).
	Resume bool
}

// Guard asks troy about each step of one session.
type Guard struct {
	c    *Conn
	opts GuardOptions
	mu   sync.Mutex
	n    int // checks made so far
}

// Guard starts a guarded session.
func (c *Conn) Guard(opts GuardOptions) *Guard {
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.Mode == "" {
		opts.Mode = schemas.ModeEnforce
	}
	return &Guard{c: c, opts: opts}
}

// BlockedError is returned by Check when troy blocks a step in enforce mode: for its
// violations, or for rules that could not be evaluated at it (Decision.RuleErrors).
type BlockedError struct{ Decision schemas.Decision }

func (e *BlockedError) Error() string {
	var rules []string
	for _, v := range e.Decision.Violations {
		rules = append(rules, v.RuleDescription)
	}
	for _, r := range e.Decision.RuleErrors {
		rules = append(rules, "rule "+r.RuleID+" could not be evaluated: "+r.Error)
	}
	return "blocked by policy: " + strings.Join(rules, "; ")
}

// UnavailableError is returned when troy could not answer; the decision then follows
// FailOpen.
type UnavailableError struct{ Err error }

func (e *UnavailableError) Error() string { return "troy guard unavailable: " + e.Err.Error() }
func (e *UnavailableError) Unwrap() error { return e.Err }

// Check asks whether the agent may take a step. In enforce mode a blocked step returns a
// *BlockedError; when troy cannot answer, an *UnavailableError, with Allowed following
// FailOpen.
func (g *Guard) Check(ctx context.Context, action string, input, metadata map[string]any, stepType string) (schemas.Decision, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	seq := g.n
	req := event.GuardCheck{
		Session: g.opts.Session, Agent: g.opts.Agent, AgentMetadata: g.opts.AgentMetadata,
		Step: schemas.GuardStep{Action: action, Type: stepType, Input: input, Metadata: metadata},
		Mode: g.opts.Mode, Policy: g.opts.Policy, Seq: &seq,
	}
	if g.opts.Resume && g.n == 0 {
		req.Seq = nil // the server finds out how far the session got
	}
	var d schemas.Decision
	if err := g.request(ctx, event.GuardCheckSubject(g.opts.Agent), req, &d); err != nil {
		var re *wire.RequestError
		if errors.As(err, &re) && re.Code == "400" {
			return schemas.Decision{Mode: g.opts.Mode}, err
		}
		return schemas.Decision{Allowed: g.opts.FailOpen, Mode: g.opts.Mode, Violations: []schemas.Violation{}, RuleErrors: []schemas.StepRuleError{}}, &UnavailableError{err}
	}
	g.n++
	if d.RuleErrors == nil {
		d.RuleErrors = []schemas.StepRuleError{} // a service older than rule_errors
	}
	if len(d.Violations) > 0 && g.opts.Mode == schemas.ModeMonitor && g.opts.OnViolation != nil {
		g.opts.OnViolation(d)
	}
	if !d.Allowed {
		return d, &BlockedError{d}
	}
	return d, nil
}

// RecordOutput records a checked step's result.
func (g *Guard) RecordOutput(ctx context.Context, stepID string, output map[string]any) error {
	return g.request(ctx, event.GuardOutputSubject(g.opts.Agent), event.GuardOutput{Session: g.opts.Session, Agent: g.opts.Agent, StepID: stepID, Output: output}, nil)
}

// End ends the session, so that it is scored and reported.
// Checks made after End start a new run of the session.
func (g *Guard) End(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.request(ctx, event.GuardEndSubject(g.opts.Agent), event.GuardEnd{Session: g.opts.Session, Agent: g.opts.Agent}, nil); err != nil {
		return err
	}
	g.n = 0
	return nil
}

func (g *Guard) request(ctx context.Context, subject string, req, reply any) error {
	data, err := pyjson.Marshal(req) // numbers as Python's json writes them: infinity and 10**30 too
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, g.opts.Timeout)
	defer cancel()
	out, err := wire.Request(ctx, g.c.nc, subject, data)
	if err != nil {
		return err
	}
	if reply == nil {
		return nil
	}
	if err := json.Unmarshal(out, reply); err != nil {
		return fmt.Errorf("guard reply: %w", err)
	}
	return nil
}

// Guarded checks a tool call before it runs, runs it if allowed, and records its result
// (as {"result": value}, or {"error": message}), with a guard service's client (*Guard)
// or a guard in this process (localguard.Guard).
func Guarded[T any](ctx context.Context, g Checker, action string, input, metadata map[string]any, fn func(context.Context) (T, error)) (T, error) {
	var zero T
	d, err := g.Check(ctx, action, input, metadata, schemas.StepToolCall)
	if err != nil && !d.Allowed {
		return zero, err
	}
	v, runErr := fn(ctx)
	out := map[string]any{"result": v}
	if runErr != nil {
		out = map[string]any{"error": runErr.Error()}
	}
	if d.StepID != "" {
		if err := g.RecordOutput(ctx, d.StepID, out); err != nil {
			return v, errors.Join(runErr, fmt.Errorf("record output: %w", err))
		}
	}
	return v, runErr
}

// Checker is what an agent guards its steps with: the client of a guard service (*Guard)
// or a guard evaluating in the agent's own process (localguard.Guard).
type Checker interface {
	// Check asks whether the agent may take a step; a blocked step in enforce mode
	// returns a *BlockedError.
	Check(ctx context.Context, action string, input, metadata map[string]any, stepType string) (schemas.Decision, error)
	// RecordOutput records a checked step's result.
	RecordOutput(ctx context.Context, stepID string, output map[string]any) error
	// End ends the session, so that it is scored and reported.
	End(ctx context.Context) error
}

var _ Checker = (*Guard)(nil)
