package event

import (
	"fmt"
	"strconv"

	"github.com/troy-audit/troy/schemas"
)

// TraceRef names a trace in events: its id, its agent, the policy revision (a content hash)
// its steps are evaluated with, and the run: an id of this sending of the trace, so that a
// trace sent again (an archive audited twice) is a new trace, not more of the old one.
type TraceRef struct {
	TraceID   string `json:"trace_id"`
	AgentName string `json:"agent_name"`
	Policy    string `json:"policy,omitempty"`
	Run       string `json:"run,omitempty"`
}

// Check says which id of the reference breaks the rules of schemas.CheckID, if any.
func (r TraceRef) Check() error {
	for _, f := range []struct{ name, id string }{{"trace_id", r.TraceID}, {"agent_name", r.AgentName}, {"policy", r.Policy}, {"run", r.Run}} {
		if err := schemas.CheckID(f.id); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	return nil
}

func (r TraceRef) stepsSubject() string { return StepsSubject(r.AgentName, r.TraceID) }

func (r TraceRef) resultSubject(k Kind) string { return ResultSubject(k, r.AgentName, r.TraceID) }

// Step is one step of a trace, in order: Seq is its 0-based position. The trace's
// metadata rides along with each step, so any step can start a trace. Its
// de-duplication id is its position, not its step id: a trace may repeat a step id, and a
// retried send of the same position is still stored once.
type Step struct {
	TraceRef
	TraceMetadata map[string]any `json:"trace_metadata,omitempty"`
	Seq           int            `json:"seq"`
	Step          *schemas.Step  `json:"step"`
}

func (Step) kind() Kind        { return KindStep }
func (e Step) subject() string { return e.stepsSubject() }
func (e Step) msgID() string   { return MsgID(KindStep, e.TraceRef, strconv.Itoa(e.Seq)) }

// Output attaches an output to a step already sent, as the guard records a tool's
// result after allowing the call.
type Output struct {
	TraceRef
	StepID string         `json:"step_id"`
	Output map[string]any `json:"output"`
}

func (Output) kind() Kind        { return KindOutput }
func (e Output) subject() string { return e.stepsSubject() }
func (e Output) msgID() string   { return MsgID(KindOutput, e.TraceRef, e.StepID) }

// EndReason says why a trace ended.
type EndReason string

// End reasons.
const (
	EndSent EndReason = "end"  // the sender ended the trace
	EndIdle EndReason = "idle" // it was closed after a time without events
)

// End marks a trace complete; Steps is how many steps it has.
type End struct {
	TraceRef
	Steps  int       `json:"steps"`
	Reason EndReason `json:"reason,omitempty"`
}

func (End) kind() Kind        { return KindEnd }
func (e End) subject() string { return e.stepsSubject() }
func (e End) msgID() string   { return MsgID(KindEnd, e.TraceRef, "") }

// Violation reports a violation the moment it is known: at the step's arrival for
// rules that read no later step, at the trace's end for the others. Subscribe to
// troy.results.violation.> for real-time alerts.
type Violation struct {
	TraceRef
	StepIndex int               `json:"step_index"`
	Violation schemas.Violation `json:"violation"`
}

func (Violation) kind() Kind        { return KindViolation }
func (e Violation) subject() string { return e.resultSubject(KindViolation) }

// msgID is the step's position and the rule: step ids may repeat.
func (e Violation) msgID() string {
	return MsgID(KindViolation, e.TraceRef, strconv.Itoa(e.StepIndex)+"|"+e.Violation.RuleID)
}

// Evaluated is the verdict of a finished trace, counted: how many violations it has, by
// severity and of which rules, and the rules that failed. The violations themselves, in
// step then rule order, are VerdictPart events on troy.results.verdict.<agent>.<trace>,
// Parts of them: no event grows with the trace, so no trace is too long for the pipeline.
type Evaluated struct {
	TraceRef
	Steps      int `json:"steps"`
	Violations int `json:"violation_count"`
	Parts      int `json:"verdict_parts"`
	// Rules are the distinct rules violated, in policy order: all a score needs.
	Rules      []string            `json:"violated_rules,omitempty"`
	BySeverity map[string]int      `json:"by_severity,omitempty"`
	RuleErrors []schemas.RuleError `json:"rule_errors,omitempty"`
}

func (Evaluated) kind() Kind        { return KindEvaluated }
func (e Evaluated) subject() string { return e.resultSubject(KindEvaluated) }
func (e Evaluated) msgID() string   { return MsgID(KindEvaluated, e.TraceRef, "") }

// VerdictPart holds violations of a finished trace's verdict, from position First on.
// Steps is the trace's length, so that a reader knows what to read back with it.
type VerdictPart struct {
	TraceRef
	Steps      int                 `json:"steps"`
	Part       int                 `json:"part"`
	First      int                 `json:"first"`
	Violations []schemas.Violation `json:"violations"`
}

// Scored is a finished trace's risk score.
type Scored struct {
	Evaluated
	RiskScore int `json:"risk_score"`
}

func (Scored) kind() Kind        { return KindScored }
func (e Scored) subject() string { return e.resultSubject(KindScored) }
func (e Scored) msgID() string   { return MsgID(KindScored, e.TraceRef, "") }

// Explanation is a model's explanation of one step of a finished trace.
type Explanation struct {
	TraceRef
	StepIndex   int                     `json:"step_index"`
	Explanation schemas.StepExplanation `json:"explanation"`
}

func (Explanation) kind() Kind        { return KindExplanation }
func (e Explanation) subject() string { return e.resultSubject(KindExplanation) }
func (e Explanation) msgID() string {
	return MsgID(KindExplanation, e.TraceRef, strconv.Itoa(e.StepIndex))
}

// Explained is a scored trace with its explanations: State is schemas.ExplanationsOn when
// a model was asked (the step explanations are Explanation events on
// troy.results.explanation.<agent>.<trace>, Count of them), schemas.ExplanationsOff with
// the reason in Note otherwise.
type Explained struct {
	Scored
	State   string                `json:"explanations"`
	Note    string                `json:"explanations_note,omitempty"`
	Count   int                   `json:"explained_steps"`
	Summary *schemas.TraceSummary `json:"summary,omitempty"`
	LLM     *schemas.LLMUsage     `json:"llm,omitempty"`
}

func (Explained) kind() Kind        { return KindExplained }
func (e Explained) subject() string { return e.resultSubject(KindExplained) }
func (e Explained) msgID() string   { return MsgID(KindExplained, e.TraceRef, "") }

// Audit assembles the audit of the trace from what the stages found: vs is its verdict,
// steps its step explanations, info describes the policy.
func (e *Explained) Audit(t *schemas.Trace, vs []schemas.Violation, steps []schemas.StepExplanation, info schemas.AuditInfo) *schemas.AuditResult {
	info.Explanations, info.ExplanationsNote, info.RuleErrors, info.LLM = e.State, e.Note, e.RuleErrors, e.LLM
	r := &schemas.AuditResult{Trace: t, Explanations: steps, Summary: e.Summary, Violations: vs, RiskScore: e.RiskScore, Info: &info}
	r.Normalize()
	return r
}

// Reported says where a finished trace's reports were written.
type Reported struct {
	TraceRef
	RiskScore  int    `json:"risk_score"`
	Violations int    `json:"violations"`
	Report     string `json:"report"`
	AuditJSON  string `json:"audit_json"`
}

func (Reported) kind() Kind        { return KindReported }
func (e Reported) subject() string { return e.resultSubject(KindReported) }
func (e Reported) msgID() string   { return MsgID(KindReported, e.TraceRef, "") }

// DeadLetter is an event that could not be handled, with the reason. Trace names the
// trace the event belonged to, when it could be read, so that whoever waits for the trace
// learns at once that it will not finish.
type DeadLetter struct {
	Trace      *TraceRef `json:"trace,omitempty"`
	Stage      string    `json:"stage"`
	Subject    string    `json:"subject"`
	Kind       Kind      `json:"kind,omitempty"`
	Error      string    `json:"error"`
	Deliveries int       `json:"deliveries"`
	Data       []byte    `json:"data"`
	Truncated  bool      `json:"truncated,omitempty"` // Data is the start of a bigger event
}

func (DeadLetter) kind() Kind        { return KindDead }
func (e DeadLetter) subject() string { return DeadSubject(e.Stage) }
func (DeadLetter) msgID() string     { return "" } // each failure is its own letter
