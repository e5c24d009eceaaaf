package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/policies"

	json "github.com/goccy/go-json" // the check is on the agent's critical path

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
)

// Guard is the component name of the guard service.
const Guard = "guard"

// GuardService answers guard checks over NATS request-reply (a micro service, so that
// $SRV.PING, INFO and STATS work). Each session is a trace: every checked step, blocked or
// not, is stored in the steps stream before the answer, so guarded sessions are evaluated,
// scored and reported like any trace. Any instance can answer any check: one that has not
// seen a session, or has missed checks other instances answered, catches up from the
// stream first.
type GuardService struct {
	b        *bus.Bus
	steps    *stepStore // stores the session's events, concurrent checks' together
	pol      *Policies
	log      *slog.Logger
	metrics  *Metrics
	mu       sync.Mutex
	sessions map[string]*guardSession // by steps subject
	ready    chan struct{}            // closed once the service answers
	answered sync.Once                // closes ready, once over restarts
	// OnRuleError, when set, overrides the policies' on_rule_error: what enforce mode does
	// with a step at which a rule could not be evaluated (block or skip). Set before Serve.
	OnRuleError string
	// Judge gives the verdicts of judge rules, each within its rule's timeout; nil (no
	// model) leaves them to their on_error. Set before Serve.
	Judge evaluator.Judge
}

type guardSession struct {
	mu      sync.Mutex
	ref     event.TraceRef
	g       *evaluator.Guard
	applied uint64 // stream sequence of the last event of the session applied
	last    time.Time
}

// NewGuardService returns a guard service; Serve starts answering. m counts its
// decisions, latency and rule errors; nil counts nothing.
func NewGuardService(b *bus.Bus, pol *Policies, log *slog.Logger, m *Metrics) *GuardService {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &GuardService{b: b, steps: &stepStore{b: b}, pol: pol, log: log, metrics: m, sessions: map[string]*guardSession{}, ready: make(chan struct{})}
}

// Serve answers requests until ctx ends. Sessions without a request for idle are forgotten
// (their state is rebuilt from the stream if they come back).
func (s *GuardService) Serve(ctx context.Context, idle time.Duration) error {
	stop, err := s.b.AddService("troy-guard", "1.0.0", "Checks proposed agent steps against the policy before they run", []bus.Endpoint{
		{Name: "check", Subject: event.GuardCheckPrefix + ".*", Handle: s.handleCheck},
		{Name: "output", Subject: event.GuardOutputPrefix + ".*", Handle: s.handleOutput},
		{Name: "end", Subject: event.GuardEndPrefix + ".*", Handle: s.handleEnd},
		{Name: "policy", Subject: event.GuardPolicyPrefix + ".*", Handle: s.handlePolicy},
	}, 30*time.Second)
	if err != nil {
		return fmt.Errorf("guard service: %w", err)
	}
	s.answered.Do(func() { close(s.ready) })
	if idle <= 0 {
		idle = 30 * time.Minute
	}
	tick := time.NewTicker(min(idle, time.Minute))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return stop()
		case <-tick.C:
			s.forgetIdle(idle)
		}
	}
}

// Ready is closed once the service answers requests.
func (s *GuardService) Ready() <-chan struct{} { return s.ready }

func (s *GuardService) forgetIdle(idle time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, sess := range s.sessions {
		if sess.mu.TryLock() {
			if time.Since(sess.last) > idle {
				delete(s.sessions, k)
			}
			sess.mu.Unlock()
		}
	}
}

// checkIDs checks ids given as name, id pairs (schemas.CheckID): an id that breaks the
// rules would break the subjects and paths made of it.
func checkIDs(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if err := schemas.CheckID(pairs[i+1]); err != nil {
			return fmt.Errorf("%s: %w", pairs[i], err)
		}
	}
	return nil
}

// sameAgent refuses a request whose body names another agent than its subject: NATS
// permissions let an agent's credential publish only on its own guard subjects, and the
// body must not reach past them.
func sameAgent(ctx context.Context, agent string) error {
	subject := bus.RequestSubject(ctx)
	if subject == "" {
		return nil // called in process, not over NATS
	}
	if got := event.GuardSubjectAgent(subject); got != schemas.Token(agent) {
		return &bus.RequestError{Code: "403", Message: fmt.Sprintf("agent %q may not be asked about on %s", agent, subject)}
	}
	return nil
}

func badRequest(format string, args ...any) error {
	return &bus.RequestError{Code: "400", Message: fmt.Sprintf(format, args...)}
}

func unavailable(format string, args ...any) error {
	return &bus.RequestError{Code: "503", Message: fmt.Sprintf(format, args...)}
}

func (s *GuardService) handleCheck(ctx context.Context, data []byte) (answer []byte, err error) {
	start := time.Now()
	outcome := DecisionError
	defer func() {
		if err != nil {
			outcome = DecisionError
		}
		s.metrics.guardCheck(time.Since(start), outcome)
	}()
	req, err := DecodeCheck(data)
	if err != nil {
		return nil, err
	}
	if err := sameAgent(ctx, req.Agent); err != nil {
		return nil, err
	}
	sess, err := s.session(ctx, req.Agent, req.Session, req.Seq, req.AgentMetadata, req.Policy)
	if err != nil {
		return nil, err
	}
	defer sess.mu.Unlock()
	seq := sess.g.Len()
	d, err := sess.g.CheckContext(ctx, evaluator.CheckRequest{GuardStep: req.Step})
	if err != nil {
		return nil, badRequest("%v", err)
	}
	step := sess.g.Step(seq)
	if err := s.record(ctx, sess, req.Agent, req.Session, event.Step{TraceRef: sess.ref, TraceMetadata: req.AgentMetadata, Seq: seq, Step: step}); err != nil {
		return nil, err
	}
	s.countRuleErrors(d, req.Mode)
	switch {
	case d.Allowed:
		outcome = DecisionAllowed
	case req.Mode == schemas.ModeEnforce:
		outcome = DecisionBlocked
	default:
		outcome, d.Allowed = DecisionFlagged, true
	}
	d.Mode = req.Mode
	d.MissingMetadata = sess.g.MissingMetadata(req.Step.Metadata)
	return json.Marshal(d)
}

// DecodeCheck reads and validates a guard check request, with the agent's values read as
// Python's json reads them; defaults are filled in. Errors are the service's 400 answers.
func DecodeCheck(data []byte) (event.GuardCheck, error) {
	var req event.GuardCheck
	if err := pyjson.Unmarshal(data, &req); err != nil {
		return req, badRequest("invalid JSON: %v", err)
	}
	if req.Session == "" || req.Step.Action == "" {
		return req, badRequest("session and step.action are required")
	}
	if req.Mode == "" {
		req.Mode = schemas.ModeEnforce
	}
	if !slices.Contains(schemas.Modes(), req.Mode) {
		return req, badRequest("mode %q is not one of %s", req.Mode, strings.Join(schemas.Modes(), ", "))
	}
	if req.Step.Type == "" {
		req.Step.Type = schemas.StepToolCall
	}
	if !schemas.ValidStepType(req.Step.Type) {
		return req, badRequest("step.type %q is not one of %s", req.Step.Type, strings.Join(schemas.StepTypes(), ", "))
	}
	if req.Seq != nil && *req.Seq < 0 {
		return req, badRequest("seq: expected the number of earlier checks, from 0")
	}
	return req, nil
}

// countRuleErrors counts a decision's rule errors (made in enforce mode) by what became of
// the step in the mode asked for.
func (s *GuardService) countRuleErrors(d schemas.Decision, mode string) {
	if len(d.RuleErrors) == 0 {
		return
	}
	outcome := "allowed"
	switch {
	case mode != schemas.ModeEnforce:
	case !d.Allowed:
		outcome = "blocked"
	default:
		outcome = "skipped"
	}
	s.metrics.ruleError(Guard, outcome, len(d.RuleErrors))
}

func (s *GuardService) handleOutput(ctx context.Context, data []byte) ([]byte, error) {
	var req event.GuardOutput
	if err := pyjson.Unmarshal(data, &req); err != nil {
		return nil, badRequest("invalid JSON: %v", err)
	}
	if err := sameAgent(ctx, req.Agent); err != nil {
		return nil, err
	}
	return s.inSession(ctx, req.Agent, req.Session, func(sess *guardSession) error {
		if err := checkIDs("step_id", req.StepID); err != nil {
			return badRequest("%v", err)
		}
		if err := sess.g.RecordOutput(req.StepID, req.Output); err != nil {
			return badRequest("%v", err)
		}
		return s.record(ctx, sess, req.Agent, req.Session, event.Output{TraceRef: sess.ref, StepID: req.StepID, Output: req.Output})
	})
}

func (s *GuardService) handleEnd(ctx context.Context, data []byte) ([]byte, error) {
	var req event.GuardEnd
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, badRequest("invalid JSON: %v", err)
	}
	if err := sameAgent(ctx, req.Agent); err != nil {
		return nil, err
	}
	return s.inSession(ctx, req.Agent, req.Session, func(sess *guardSession) error {
		if sess.g.Len() > 0 { // a session without checks has nothing to audit
			if err := s.record(ctx, sess, req.Agent, req.Session, event.End{TraceRef: sess.ref, Steps: sess.g.Len(), Reason: event.EndSent}); err != nil {
				return err
			}
		}
		s.drop(req.Agent, req.Session)
		return nil
	})
}

// handlePolicy stores a policy revision for a client whose credential may not write the
// policy bucket (an agent's local guard forwarding its record): the document must
// compile, and is stored only under its own content hash, so a client can neither
// replace another revision nor the default.
func (s *GuardService) handlePolicy(ctx context.Context, data []byte) ([]byte, error) {
	var req event.GuardPolicy
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, badRequest("invalid JSON: %v", err)
	}
	p, err := policies.ParseConverted(req.Document, "policy "+shortHash(req.Policy), "policy")
	if err != nil {
		return nil, badRequest("%s", oneLineErr(err))
	}
	c, err := evaluator.Compile(p)
	if err != nil {
		return nil, badRequest("%s", oneLineErr(err))
	}
	if c.Hash() != req.Policy {
		return nil, badRequest("the document's content hash is %s, not %s", c.Hash(), req.Policy)
	}
	if _, err := s.pol.Put(ctx, c); err != nil {
		return nil, unavailable("policy %s not stored: %v", shortHash(req.Policy), err)
	}
	return json.Marshal(map[string]string{"policy": c.Hash()})
}

func shortHash(h string) string { return h[:min(len(h), 12)] }

// oneLineErr joins the lines of an error (one per rule) with "; ".
func oneLineErr(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

// inSession runs fn with the session a request names, locked and caught up with the
// stream, and answers {} when it succeeds.
func (s *GuardService) inSession(ctx context.Context, agent, session string, fn func(*guardSession) error) ([]byte, error) {
	sess, err := s.session(ctx, agent, session, nil, nil, "")
	if err != nil {
		return nil, err
	}
	defer sess.mu.Unlock()
	if err := fn(sess); err != nil {
		return nil, err
	}
	return []byte("{}"), nil
}

// record stores an event of the session in the steps stream. When that fails the
// session's state is dropped, so that the next request starts again from the stream.
func (s *GuardService) record(ctx context.Context, sess *guardSession, agent, session string, p event.Payload) error {
	ev, err := event.New(p)
	if err != nil {
		return err
	}
	if sess.applied, err = s.steps.store(ctx, ev); err != nil {
		s.drop(agent, session)
		return unavailable("record %s: %v", ev.Kind, err)
	}
	return nil
}

func (s *GuardService) drop(agent, session string) {
	s.mu.Lock()
	delete(s.sessions, event.StepsSubject(agent, session))
	s.mu.Unlock()
}

// session returns the session's state, locked and caught up with the stream.
func (s *GuardService) session(ctx context.Context, agent, id string, seq *int, meta map[string]any, policy string) (*guardSession, error) {
	if err := checkIDs("session", id, "agent", agent, "policy", policy); err != nil {
		return nil, badRequest("%v", err)
	}
	subject := event.StepsSubject(agent, id)
	s.mu.Lock()
	sess := s.sessions[subject]
	if sess == nil {
		sess = &guardSession{ref: event.TraceRef{TraceID: id, AgentName: agent, Policy: policy}}
		s.sessions[subject] = sess
	}
	s.mu.Unlock()
	sess.mu.Lock()
	sess.last = time.Now()
	if err := s.catchUp(ctx, sess, subject, seq, meta); err != nil {
		sess.mu.Unlock()
		s.drop(agent, id)
		return nil, err
	}
	return sess, nil
}

// catchUp applies the session's events this instance has not seen. The caller's count of
// earlier checks says when that is needed; without it, the stream's last sequence does.
func (s *GuardService) catchUp(ctx context.Context, sess *guardSession, subject string, seq *int, meta map[string]any) error {
	fresh := sess.g == nil
	switch {
	case seq != nil && *seq == 0 && fresh:
		// A new session: nothing to read.
	case seq != nil && !fresh && *seq <= sess.g.Len():
		// Up to date.
	default:
		if !fresh && seq == nil {
			last, err := s.b.LastSeq(ctx, subject)
			if err != nil {
				return unavailable("read session: %v", err)
			}
			if last <= sess.applied {
				return nil
			}
		}
		events, err := s.b.ReadRange(ctx, bus.StepsStream, subject, sess.applied, math.MaxUint64)
		if err != nil {
			return unavailable("read session: %v", err)
		}
		for _, e := range events {
			if err := s.apply(ctx, sess, e); err != nil {
				return err
			}
		}
	}
	if sess.g == nil {
		return s.start(ctx, sess, meta)
	}
	return nil
}

// start begins the session's guard with the policy it names, or the default.
func (s *GuardService) start(ctx context.Context, sess *guardSession, meta map[string]any) error {
	c, err := s.pol.Compiled(ctx, sess.ref.Policy)
	if err != nil {
		return unavailable("not ready: %v", err)
	}
	sess.ref.Policy = c.Hash()
	if sess.ref.Run == "" {
		sess.ref.Run = event.NewRun()
	}
	g, err := c.NewGuard(evaluator.GuardOptions{TraceID: sess.ref.TraceID, AgentName: sess.ref.AgentName, AgentMetadata: meta, OnRuleError: s.OnRuleError,
		Judge: s.Judge, Logger: s.log})
	if err != nil {
		return err
	}
	sess.g = g
	return nil
}

// apply replays one stored event of the session into its guard.
func (s *GuardService) apply(ctx context.Context, sess *guardSession, e event.Envelope) error {
	sess.applied = e.Seq
	switch e.Kind {
	case event.KindStep:
		ev, err := event.Decode[event.Step](e)
		if err != nil || ev.Step == nil {
			return nil // the pipeline dead-letters it; the guard skips it
		}
		if ev.Seq == 0 || sess.g == nil {
			// The stream holds an earlier run of this session id; this one starts here.
			sess.ref.Policy, sess.ref.Run, sess.g = ev.Policy, ev.Run, nil
			if err := s.start(ctx, sess, ev.TraceMetadata); err != nil {
				return err
			}
		}
		if ev.Seq != sess.g.Len() {
			return nil
		}
		if err := sess.g.Replay(ev.Step); err != nil {
			return fmt.Errorf("replay step %s: %w", ev.Step.StepID, err)
		}
	case event.KindOutput:
		if ev, err := event.Decode[event.Output](e); err == nil && sess.g != nil {
			_ = sess.g.RecordOutput(ev.StepID, ev.Output) // an unknown step was refused when sent
		}
	case event.KindEnd:
		sess.g, sess.ref.Run = nil, "" // the next check starts a new run of the session
	}
	return nil
}
