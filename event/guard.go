package event

// Subjects of the guard service (a NATS micro service named troy-guard).
const (
	GuardCheckSubject  = "troy.guard.check"
	GuardOutputSubject = "troy.guard.output"
	GuardEndSubject    = "troy.guard.end"
)

// GuardStep is the step an agent proposes.
type GuardStep struct {
	Action   string         `json:"action"`
	Type     string         `json:"type,omitempty"` // default tool_call
	Input    map[string]any `json:"input,omitempty"`
	Metadata map[string]any `json:"metadata,omitempty"`
}

// GuardCheck asks whether an agent may take a step. The session is the trace: every checked
// step is recorded in it, so guarded sessions are audited like any trace.
type GuardCheck struct {
	Session       string         `json:"session"`
	Agent         string         `json:"agent"`
	AgentMetadata map[string]any `json:"agent_metadata,omitempty"`
	Step          GuardStep      `json:"step"`
	Mode          string         `json:"mode,omitempty"`   // enforce (default), monitor or dry-run
	Policy        string         `json:"policy,omitempty"` // a policy hash; default the server's
	// Seq, when set, is how many checks the caller made before in this session, so that a
	// guard instance can tell whether others answered checks it has not seen.
	Seq *int `json:"seq,omitempty"`
}

// GuardOutput records a checked step's result after it ran.
type GuardOutput struct {
	Session string         `json:"session"`
	Agent   string         `json:"agent"`
	StepID  string         `json:"step_id"`
	Output  map[string]any `json:"output"`
}

// GuardEnd ends a session, so that it is scored and reported.
type GuardEnd struct {
	Session string `json:"session"`
	Agent   string `json:"agent"`
}
