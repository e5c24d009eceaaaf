// Package schemas holds troy's domain types: traces and their steps, violations, explanations,
// audit and batch results, guard decisions, and the JSON Schema documents for the trace and
// policy file formats.
//
// The JSON field names and their order are those of the Python tool troy grew from, so an
// audit.json written by either tool loads in the other. This package imports nothing outside
// the standard library; every other package may import it.
package schemas

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxIDLength bounds every id: an agent's name, a trace's (and a guarded session's) id, a
// run, a step's id. With it, every subject, de-duplication id and report path made of ids
// stays within NATS's and the file system's limits.
const MaxIDLength = 256

// CheckID says what is wrong with an id, if anything: it must be valid UTF-8, at most
// MaxIDLength bytes long, and free of control characters (which would forge lines in
// logs, reports and terminals).
func CheckID(id string) error {
	if len(id) > MaxIDLength {
		return fmt.Errorf("%d bytes long, over the %d-byte limit for ids", len(id), MaxIDLength)
	}
	if !utf8.ValidString(id) {
		return fmt.Errorf("not valid UTF-8")
	}
	for _, r := range id {
		if r < 0x20 || r >= 0x7f && r < 0xa0 {
			return fmt.Errorf("holds the control character %U; ids are printable text", r)
		}
	}
	return nil
}

// Step types. A step's Type is always one of these.
const (
	StepLLMCall     = "llm_call"
	StepToolCall    = "tool_call"
	StepDecision    = "decision"
	StepObservation = "observation"
)

// StepTypes lists the valid step types in the order the documentation gives them.
func StepTypes() []string {
	return []string{StepLLMCall, StepToolCall, StepDecision, StepObservation}
}

// ValidStepType reports whether t is one of StepTypes.
func ValidStepType(t string) bool { return slices.Contains(StepTypes(), t) }

// Severities, from most to least severe.
const (
	SeverityCritical = "critical"
	SeverityHigh     = "high"
	SeverityMedium   = "medium"
	SeverityLow      = "low"
)

// Severities lists the valid severities from most to least severe.
func Severities() []string {
	return []string{SeverityCritical, SeverityHigh, SeverityMedium, SeverityLow}
}

// Step is one action an agent took. The expr tags name the fields inside policy conditions.
type Step struct {
	StepID       string         `json:"step_id" expr:"step_id"`
	Type         string         `json:"type" expr:"type"`
	Description  string         `json:"description" expr:"description"`
	Input        map[string]any `json:"input" expr:"input"`
	Output       map[string]any `json:"output" expr:"output"`
	Metadata     map[string]any `json:"metadata" expr:"metadata"`
	Timestamp    *string        `json:"timestamp" expr:"timestamp"`
	ParentStepID *string        `json:"parent_step_id" expr:"parent_step_id"`
}

// Field returns the step's field with the given JSON name, for path lookups such as
// get(step, 'metadata.x'). Absent optional fields are reported as missing.
func (s *Step) Field(name string) (any, bool) {
	switch name {
	case "step_id":
		return s.StepID, true
	case "type":
		return s.Type, true
	case "description":
		return s.Description, true
	case "input":
		return s.Input, true
	case "output":
		return s.Output, true
	case "metadata":
		return s.Metadata, true
	case "timestamp":
		if s.Timestamp == nil {
			return nil, false
		}
		return *s.Timestamp, true
	case "parent_step_id":
		if s.ParentStepID == nil {
			return nil, false
		}
		return *s.ParentStepID, true
	}
	return nil, false
}

// Normalize replaces nil maps with empty ones so that the JSON form always carries objects,
// as the Python tool's does.
func (s *Step) Normalize() {
	if s.Input == nil {
		s.Input = map[string]any{}
	}
	if s.Output == nil {
		s.Output = map[string]any{}
	}
	if s.Metadata == nil {
		s.Metadata = map[string]any{}
	}
}

// Trace is one run of an agent: its steps in the order they happened.
type Trace struct {
	TraceID   string         `json:"trace_id"`
	AgentName string         `json:"agent_name"`
	Steps     []*Step        `json:"steps"`
	Metadata  map[string]any `json:"metadata"`
}

// Normalize replaces nil maps and slices in the trace and its steps with empty ones.
func (t *Trace) Normalize() {
	if t.Metadata == nil {
		t.Metadata = map[string]any{}
	}
	if t.Steps == nil {
		t.Steps = []*Step{}
	}
	for _, s := range t.Steps {
		s.Normalize()
	}
}

// Violation records that a rule's condition held at a step.
type Violation struct {
	RuleID          string `json:"rule_id"`
	RuleDescription string `json:"rule_description"`
	StepID          string `json:"step_id"`
	Severity        string `json:"severity"`
	Details         string `json:"details"`
}

// StepExplanation is an LLM's account of why the agent took a step.
type StepExplanation struct {
	StepID       string   `json:"step_id"`
	Summary      string   `json:"summary"`
	Rationale    string   `json:"rationale"`
	Alternatives []string `json:"alternatives"`
	RiskFactors  []string `json:"risk_factors"`
	DataAccessed []string `json:"data_accessed"`
	RawResponse  string   `json:"raw_response"`
	// Error says why the fields are empty: the model's reply held no JSON (it is kept in
	// RawResponse), or no reply came. Not in the Python tool's format; it ignores it.
	Error string `json:"error,omitempty"`
}

// TraceSummary is an LLM's account of a whole trace.
type TraceSummary struct {
	Overview    string   `json:"overview"`
	KeyActions  []string `json:"key_actions"`
	Concerns    []string `json:"concerns"`
	RawResponse string   `json:"raw_response"`
	Error       string   `json:"error,omitempty"` // as in StepExplanation
}

// RuleError counts the steps at which a rule's condition failed to evaluate, with the first
// failure. A failing condition never counts as a violation.
type RuleError struct {
	RuleID     string `json:"rule_id"`
	Count      int    `json:"count"`
	FirstStep  string `json:"first_step_id"`
	FirstError string `json:"first_error"`
}

// AuditInfo describes how an audit was made. It is troy's addition to the shared audit.json
// shape and is omitted when empty, so audit files written by the Python tool round-trip.
type AuditInfo struct {
	PolicyID         string      `json:"policy_id,omitempty"`
	PolicyHash       string      `json:"policy_hash,omitempty"`
	Rules            int         `json:"rules,omitempty"`
	Explanations     string      `json:"explanations,omitempty"`
	ExplanationsNote string      `json:"explanations_note,omitempty"`
	RuleErrors       []RuleError `json:"rule_errors,omitempty"`
	LLM              *LLMUsage   `json:"llm,omitempty"`
}

// PolicyRules describes a policy revision by its rules, with the weights the scorer gives
// them, for stores of results that keep the rules beside the violations.
type PolicyRules struct {
	Hash, ID string
	Rules    []RuleInfo
}

// RuleInfo is one rule of a policy revision.
type RuleInfo struct {
	ID, Severity, Description string
	Weight                    int
}

// LLMUsage counts what explaining a trace asked of the model.
type LLMUsage struct {
	Model string `json:"model"`
	// Calls reached the model; Cached were answered from the cache; Failed got no usable
	// reply after retries; Skipped were not made because the run's budget was spent.
	Calls            int `json:"calls"`
	Cached           int `json:"cached"`
	Failed           int `json:"failed,omitempty"`
	Skipped          int `json:"skipped,omitempty"`
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	// Redacted counts the distinct sensitive values replaced before sending, by kind.
	Redacted map[string]int `json:"redacted,omitempty"`
}

// AuditResult is everything an audit found about one trace; it is the content of audit.json.
type AuditResult struct {
	Trace        *Trace            `json:"trace"`
	Explanations []StepExplanation `json:"explanations"`
	Summary      *TraceSummary     `json:"summary"`
	Violations   []Violation       `json:"violations"`
	RiskScore    int               `json:"risk_score"`
	Info         *AuditInfo        `json:"audit_info,omitempty"`
}

// Normalize replaces nil slices with empty ones so the JSON form matches the Python tool's.
func (r *AuditResult) Normalize() {
	if r.Explanations == nil {
		r.Explanations = []StepExplanation{}
	}
	if r.Violations == nil {
		r.Violations = []Violation{}
	}
	for i := range r.Explanations {
		e := &r.Explanations[i]
		e.Alternatives = orEmpty(e.Alternatives)
		e.RiskFactors = orEmpty(e.RiskFactors)
		e.DataAccessed = orEmpty(e.DataAccessed)
	}
	if r.Summary != nil {
		r.Summary.KeyActions = orEmpty(r.Summary.KeyActions)
		r.Summary.Concerns = orEmpty(r.Summary.Concerns)
	}
	if r.Trace != nil {
		r.Trace.Normalize()
	}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// SkippedFile names an input that a batch could not audit and why.
type SkippedFile struct {
	File  string `json:"file"`
	Error string `json:"error"`
}

// BatchResult is the content of batch.json.
type BatchResult struct {
	Results []AuditResult `json:"results"`
	Skipped []SkippedFile `json:"skipped"`
}

// Guard modes.
const (
	ModeEnforce = "enforce"
	ModeMonitor = "monitor"
	ModeDryRun  = "dry-run"
)

// Modes lists the valid guard modes.
func Modes() []string { return []string{ModeEnforce, ModeMonitor, ModeDryRun} }

// Decision is the guard's answer about one proposed step.
type Decision struct {
	StepID     string      `json:"step_id"`
	Allowed    bool        `json:"allowed"`
	Violations []Violation `json:"violations"`
	RiskScore  int         `json:"risk_score"`
	Mode       string      `json:"mode"`
	// RuleErrors lists the rules whose condition could not be evaluated at this step (it
	// read a key of a missing value, compared a string with a number...): the guard cannot
	// tell whether the step violates them. In enforce mode the step is then blocked, unless
	// the policy or the guard says OnRuleErrorSkip. Not in the Python tool's Decision,
	// which skipped such rules silently.
	RuleErrors []StepRuleError `json:"rule_errors"`
	// MissingMetadata names step metadata keys that rules read and that no step of the
	// session has carried so far, each once per session: a hint to pass a metadata_fn.
	MissingMetadata []MissingMetadata `json:"missing_metadata,omitempty"`
}

// StepRuleError is a rule whose condition could not be evaluated at one step, and why.
type StepRuleError struct {
	RuleID string `json:"rule_id"`
	Error  string `json:"error"`
}

// What a guard in enforce mode does with a step at which a rule could not be evaluated.
const (
	// OnRuleErrorBlock blocks the step: the guard fails closed, as when it cannot be
	// reached. The default.
	OnRuleErrorBlock = "block"
	// OnRuleErrorSkip takes the rule as not violated, as the Python tool did; the
	// decision still lists the rule error.
	OnRuleErrorSkip = "skip"
)

// OnRuleErrors lists the valid settings of what to do on a rule error.
func OnRuleErrors() []string { return []string{OnRuleErrorBlock, OnRuleErrorSkip} }

// MissingMetadata is a metadata key a rule reads that the session's steps lack.
type MissingMetadata struct {
	RuleID string `json:"rule_id"`
	Key    string `json:"key"`
}

// Explanation states, as AuditInfo.Explanations records them.
const (
	ExplanationsOn  = "on"
	ExplanationsOff = "off"
)

// GuardStep is the step an agent proposes.
type GuardStep struct {
	Action   string         `json:"action"`
	Type     string         `json:"type,omitempty"` // default tool_call
	Input    map[string]any `json:"input,omitempty"`
	Metadata map[string]any `json:"metadata,omitempty"`
}

// Token encodes an id as one token of a NATS subject or a file name, reversibly: letters, digits, '-' and
// '_' stay, every other byte becomes ~ and two hex digits, and the empty id is "~".
func Token(id string) string {
	if id == "" {
		return "~"
	}
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
			continue
		}
		const hex = "0123456789abcdef"
		b.WriteByte('~')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// ParseToken reverses Token.
func ParseToken(tok string) (string, error) {
	if tok == "~" {
		return "", nil
	}
	var b strings.Builder
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != '~' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(tok) {
			return "", fmt.Errorf("token %q: truncated escape at byte %d", tok, i)
		}
		v, err := strconv.ParseUint(tok[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("token %q: bad escape at byte %d", tok, i)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}
