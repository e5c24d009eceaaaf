package policies

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// JudgeKey is the key of a rule that asks the configured model for its verdict: where the
// rule's condition holds, the model is asked whether the step is what the user asked for,
// and the rule is violated when it says no. The condition is the deterministic
// pre-filter that bounds what is asked.
const JudgeKey = "judge"

// What a guard does with a step when the model judge gives no answer (an error, its
// deadline passed, the budget spent).
const (
	// JudgeOnErrorBlock denies the step: the judge fails closed. The default.
	JudgeOnErrorBlock = "block"
	// JudgeOnErrorAllow allows the step; the decision records that the judge did not
	// answer, and the guard logs it.
	JudgeOnErrorAllow = "allow"
)

// What happens to a judge rule where no model is configured at all.
const (
	// JudgeWithoutModelError records each case as a rule error saying no model judged
	// it (in the guard, on_error then decides). The default: a judge a policy relies on
	// does not go missing unseen.
	JudgeWithoutModelError = "error"
	// JudgeWithoutModelSkip leaves the rule out, silently: for a judge that only adds to
	// what the deterministic rules decide, as in a bundled template.
	JudgeWithoutModelSkip = "skip"
)

// JudgeWithoutModels lists the values of a judge's without_model.
func JudgeWithoutModels() []string { return []string{JudgeWithoutModelError, JudgeWithoutModelSkip} }

// JudgeOnErrors lists the values of a judge's on_error.
func JudgeOnErrors() []string { return []string{JudgeOnErrorBlock, JudgeOnErrorAllow} }

// DefaultJudgeQuestion is what the model judge asks when a rule does not say.
const DefaultJudgeQuestion = "Is this action what the user asked for, given the trace so far?"

// DefaultJudgeTimeout bounds the guard's wait for the model judge when a rule does not say.
const DefaultJudgeTimeout = 10 * time.Second

// maxJudgeTimeout bounds a rule's deadline: a guard that waits longer holds the agent.
const maxJudgeTimeout = 10 * time.Minute

// Judge is a rule's model judge.
type Judge struct {
	// Question is asked about the step, with the user's request and the trace so far.
	Question string
	// OnError is JudgeOnErrorBlock or JudgeOnErrorAllow: what the guard does when the
	// judge gives no answer.
	OnError string
	// Timeout is the guard's deadline for the judge's answer.
	Timeout time.Duration
	// WithoutModel is JudgeWithoutModelError or JudgeWithoutModelSkip: what becomes of
	// the rule where no model is configured.
	WithoutModel string
}

// parseJudge validates a rule's judge object; its error names the field and what was
// expected.
func parseJudge(raw json.RawMessage) (*Judge, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("%s: expected an object with question, on_error, timeout and without_model, got %s", JudgeKey, kind(raw))
	}
	j := &Judge{Question: DefaultJudgeQuestion, OnError: JudgeOnErrorBlock, Timeout: DefaultJudgeTimeout, WithoutModel: JudgeWithoutModelError}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := obj[k]
		var s string
		isString := json.Unmarshal(v, &s) == nil && !bytes.Equal(bytes.TrimSpace(v), []byte("null"))
		switch k {
		case "question":
			if !isString || strings.TrimSpace(s) == "" {
				return nil, fmt.Errorf("%s.question: expected a non-empty string, got %s", JudgeKey, kind(v))
			}
			j.Question = s
		case "on_error":
			if !isString || !slices.Contains(JudgeOnErrors(), s) {
				return nil, fmt.Errorf("%s.on_error: expected %s, got %s", JudgeKey, quotedList(JudgeOnErrors()), kindOrValue(v))
			}
			j.OnError = s
		case "without_model":
			if !isString || !slices.Contains(JudgeWithoutModels(), s) {
				return nil, fmt.Errorf("%s.without_model: expected %s, got %s", JudgeKey, quotedList(JudgeWithoutModels()), kindOrValue(v))
			}
			j.WithoutModel = s
		case "timeout":
			if !isString {
				return nil, fmt.Errorf("%s.timeout: expected a duration such as \"10s\", got %s", JudgeKey, kind(v))
			}
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 || d > maxJudgeTimeout {
				return nil, fmt.Errorf("%s.timeout: expected a duration above 0 and at most %s, such as \"10s\", got %q", JudgeKey, maxJudgeTimeout, s)
			}
			j.Timeout = d
		default:
			return nil, fmt.Errorf("%s.%s: unknown field; a judge has question, on_error, timeout and without_model", JudgeKey, k)
		}
	}
	return j, nil
}

// MarshalJSON writes the judge with every field, in a fixed order (the timeout as Go
// writes durations).
func (j *Judge) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"question":`)
	writeJSON(&b, j.Question)
	b.WriteString(`,"on_error":`)
	writeJSON(&b, j.OnError)
	b.WriteString(`,"timeout":`)
	writeJSON(&b, j.Timeout.String())
	b.WriteString(`,"without_model":`)
	writeJSON(&b, j.WithoutModel)
	b.WriteByte('}')
	return b.Bytes(), nil
}

// JudgeRules lists the ids of the policy's rules that have a model judge, in rule order.
func (p *Policy) JudgeRules() []string {
	var out []string
	for _, r := range p.Rules {
		if r.Judge != nil {
			out = append(out, r.RuleID)
		}
	}
	return out
}
