package event

import (
	"encoding/json"

	"github.com/troy-audit/troy/schemas"
)

// Subjects of the guard service (a NATS micro service named troy-guard): each is a prefix
// followed by the agent's subject token, so that NATS permissions can let an agent call
// the guard for its own sessions only. The service listens on the prefix with a wildcard.
const (
	GuardCheckPrefix  = "troy.guard.check"
	GuardOutputPrefix = "troy.guard.output"
	GuardEndPrefix    = "troy.guard.end"
	// GuardPolicyPrefix is where an agent's client hands the guard service a policy
	// revision to store, one an agent's credential may not write itself: the service
	// stores it only under its own content hash.
	GuardPolicyPrefix = "troy.guard.policy"
)

// GuardCheckSubject is where agent's checks go.
func GuardCheckSubject(agent string) string { return GuardCheckPrefix + "." + schemas.Token(agent) }

// GuardOutputSubject is where agent's outputs of checked steps go.
func GuardOutputSubject(agent string) string { return GuardOutputPrefix + "." + schemas.Token(agent) }

// GuardEndSubject is where agent's sessions are ended.
func GuardEndSubject(agent string) string { return GuardEndPrefix + "." + schemas.Token(agent) }

// GuardPolicySubject is where agent's client stores a policy revision through the guard.
func GuardPolicySubject(agent string) string { return GuardPolicyPrefix + "." + schemas.Token(agent) }

// GuardPolicy asks the guard service to store a policy revision: Document is the policy
// as troy stores it (its JSON), Policy the content hash it must have.
type GuardPolicy struct {
	Policy   string          `json:"policy"`
	Document json.RawMessage `json:"document"`
}

// GuardSubjectAgent is the agent token at the end of a guard subject.
func GuardSubjectAgent(subject string) string {
	for _, p := range []string{GuardCheckPrefix, GuardOutputPrefix, GuardEndPrefix, GuardPolicyPrefix} {
		if len(subject) > len(p)+1 && subject[:len(p)+1] == p+"." {
			return subject[len(p)+1:]
		}
	}
	return ""
}

// GuardCheck asks whether an agent may take a step. The session is the trace: every checked
// step is recorded in it, so guarded sessions are audited like any trace.
type GuardCheck struct {
	Session       string            `json:"session"`
	Agent         string            `json:"agent"`
	AgentMetadata map[string]any    `json:"agent_metadata,omitempty"`
	Step          schemas.GuardStep `json:"step"`
	Mode          string            `json:"mode,omitempty"`   // enforce (default), monitor or dry-run
	Policy        string            `json:"policy,omitempty"` // a policy hash; default the server's
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
