// Package adapter holds what every framework adapter shares: the Python tool's adapter
// options and a guarded session that applies them.
package adapter

import (
	"context"
	"sync"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/agent"
)

// Options are the Python tool's adapter options.
type Options struct {
	Agent         string         // the agent's name
	AgentMetadata map[string]any // the agent's metadata, which policies read as agent.metadata
	Mode          string         // enforce (default), monitor or dry-run
	Session       string         // the session id; default a fresh one
	Policy        string         // a policy hash; empty uses the server's default
	// MetadataFn gives each step's metadata from its action, input and type.
	MetadataFn func(action string, input map[string]any, stepType string) map[string]any
	// OnViolation is called with every decision that found violations.
	OnViolation func(schemas.Decision)
}

// Session is one guarded run of an agent.
type Session struct {
	g     agent.Checker
	opts  Options
	mu    sync.Mutex
	depth int
}

// New starts a guarded session on a connection to troy.
func New(conn *agent.Conn, opts Options) *Session {
	if opts.Session == "" {
		opts.Session = opts.Agent + "-" + event.NewRun()
	}
	g := conn.Guard(agent.GuardOptions{Session: opts.Session, Agent: opts.Agent, AgentMetadata: opts.AgentMetadata, Mode: opts.Mode, Policy: opts.Policy})
	return &Session{g: g, opts: opts}
}

// With starts a guarded session on a guard the caller made, such as the local guard
// (localguard.Guard): its session, agent, mode and policy are the guard's, and opts gives
// the metadata function and the violation callback.
func With(g agent.Checker, opts Options) *Session {
	return &Session{g: g, opts: opts}
}

// ID is the session's id: the trace troy reports.
func (s *Session) ID() string {
	if g, ok := s.g.(interface{ Session() string }); ok && s.opts.Session == "" {
		return g.Session() // a guard made by the caller names its own session
	}
	return s.opts.Session
}

// Check asks the guard about a step, with the metadata of MetadataFn, and calls
// OnViolation when it found violations. In enforce mode a blocked step is an
// *agent.BlockedError, whose decision lists the violations and the rules that could not
// be evaluated (RuleErrors), either of which blocks.
func (s *Session) Check(ctx context.Context, action string, input map[string]any, stepType string) (schemas.Decision, error) {
	var meta map[string]any
	if s.opts.MetadataFn != nil {
		meta = s.opts.MetadataFn(action, input, stepType)
	}
	d, err := s.g.Check(ctx, action, input, meta, stepType)
	if len(d.Violations) > 0 && s.opts.OnViolation != nil {
		s.opts.OnViolation(d)
	}
	return d, err
}

// Output records what a checked step gave.
func (s *Session) Output(ctx context.Context, stepID string, output map[string]any) error {
	if stepID == "" {
		return nil
	}
	return s.g.RecordOutput(ctx, stepID, output)
}

// Run runs an allowed tool call's function and records its result or error.
func (s *Session) Run(ctx context.Context, action string, input map[string]any, fn func() (string, error)) (string, error) {
	d, err := s.Check(ctx, action, input, schemas.StepToolCall)
	if err != nil {
		return "", err // *agent.BlockedError in enforce mode: the run stops, as in the Python tool
	}
	out, err := fn()
	result := map[string]any{"result": out}
	if err != nil {
		result = map[string]any{"error": err.Error()}
	}
	if rerr := s.Output(ctx, d.StepID, result); rerr != nil && err == nil {
		err = rerr
	}
	return out, err
}

// Enter and Leave count nested runs (chains, graphs); the session ends when the outermost
// one leaves, so that troy scores and reports it.
func (s *Session) Enter() {
	s.mu.Lock()
	s.depth++
	s.mu.Unlock()
}

// Leave is Enter's counterpart.
func (s *Session) Leave(ctx context.Context) {
	s.mu.Lock()
	s.depth--
	done := s.depth == 0
	s.mu.Unlock()
	if done {
		_ = s.g.End(ctx)
	}
}
