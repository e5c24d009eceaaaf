package explainer

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/troy-audit/troy/schemas"
)

const systemPrompt = "You audit the executions of AI agents for security and compliance reviewers. " +
	"You are given recorded steps of an agent (LLM calls, tool calls, decisions, observations). " +
	"Infer what the agent did and why, from the evidence only. Values such as [EMAIL_1] are " +
	"placeholders for redacted data; refer to them as they are. Answer with one JSON object and nothing else."

const stepQuestion = `Explain why the agent took the step marked CURRENT, using the steps around it.

Respond with JSON only: one object with these keys.
"summary": one or two sentences on what the step did.
"rationale": why the agent most likely took it, given what came before and after.
"alternatives": a list of strings, other actions the agent could have taken.
"risk_factors": a list of strings, security, privacy or compliance risks of this step (empty if none).
"data_accessed": a list of strings, the data the step read, produced or sent.`

const summaryQuestion = `Summarise this agent execution for an auditor.

Respond with JSON only: one object with these keys.
"overview": a short paragraph on what the agent did and whether it reached its goal.
"key_actions": a list of strings, the actions that mattered, in order.
"concerns": a list of strings, security, privacy or compliance concerns (empty if none).`

// neighbourChars bounds what a step before or after the current one contributes.
const neighbourChars = 400

// truncate shortens s to at most n bytes (on a rune boundary), saying how much was cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("…[truncated %d characters]", len(s)-cut)
}

// oneLine describes a neighbouring step briefly.
func oneLine(i int, s *schemas.Step) string {
	line := fmt.Sprintf("%d. [%s] %s: %s", i+1, s.Type, s.StepID, s.Description)
	if len(s.Input) > 0 {
		line += " | input " + compact(s.Input)
	}
	if len(s.Output) > 0 {
		line += " | output " + compact(s.Output)
	}
	return truncate(line, neighbourChars)
}

// stepPrompt asks for the explanation of step i of a (redacted) trace within budget
// characters: the step in full (each field cut to fit), then as many of its nearest
// neighbours as fit, earlier and later.
func stepPrompt(t *schemas.Trace, i, budget int) string {
	s := t.Steps[i]
	field := budget / 8
	var b strings.Builder
	fmt.Fprintf(&b, "Agent: %s\nTrace: %s\n", t.AgentName, t.TraceID)
	if len(t.Metadata) > 0 {
		fmt.Fprintf(&b, "Trace metadata: %s\n", truncate(compact(t.Metadata), field))
	}
	fmt.Fprintf(&b, "\nCURRENT step %d of %d (step_id %s)\nType: %s\nDescription: %s\n", i+1, len(t.Steps), s.StepID, s.Type, truncate(s.Description, field))
	fmt.Fprintf(&b, "Input: %s\nOutput: %s\nMetadata: %s\n",
		truncate(compact(orEmptyMap(s.Input)), 2*field), truncate(compact(orEmptyMap(s.Output)), 2*field), truncate(compact(orEmptyMap(s.Metadata)), field))

	// Nearest neighbours first, alternating, until the budget is spent.
	var before, after []string
	left := budget - b.Len() - len(stepQuestion)
	lo, hi := i-1, i+1
	for left > 0 && (lo >= 0 || hi < len(t.Steps)) {
		if lo >= 0 {
			l := oneLine(lo, t.Steps[lo])
			if left -= len(l) + 1; left < 0 {
				break
			}
			before = append(before, l)
			lo--
		}
		if hi < len(t.Steps) {
			l := oneLine(hi, t.Steps[hi])
			if left -= len(l) + 1; left < 0 {
				break
			}
			after = append(after, l)
			hi++
		}
	}
	b.WriteString("\nSteps before it:\n")
	if lo >= 0 {
		fmt.Fprintf(&b, "(%d earlier steps not shown)\n", lo+1)
	}
	for j := len(before) - 1; j >= 0; j-- {
		b.WriteString(before[j] + "\n")
	}
	if len(before) == 0 && lo < 0 {
		b.WriteString("(none: this is the first step)\n")
	}
	b.WriteString("\nSteps after it:\n")
	for _, l := range after {
		b.WriteString(l + "\n")
	}
	if hi < len(t.Steps) {
		fmt.Fprintf(&b, "(%d later steps not shown)\n", len(t.Steps)-hi)
	}
	if len(after) == 0 && hi >= len(t.Steps) {
		b.WriteString("(none: this is the last step)\n")
	}
	b.WriteString("\n" + stepQuestion)
	return b.String()
}

// summaryPrompt asks for the summary of a (redacted) trace within budget characters:
// every step in a line, or the first and last ones with a note of how many are left out.
func summaryPrompt(t *schemas.Trace, budget int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Agent: %s\nTrace: %s (%d steps)\n", t.AgentName, t.TraceID, len(t.Steps))
	if len(t.Metadata) > 0 {
		fmt.Fprintf(&b, "Trace metadata: %s\n", truncate(compact(t.Metadata), budget/8))
	}
	b.WriteString("\nSteps:\n")
	lines := make([]string, len(t.Steps))
	total := 0
	for i, s := range t.Steps {
		lines[i] = oneLine(i, s)
		total += len(lines[i]) + 1
	}
	left := budget - b.Len() - len(summaryQuestion)
	if total <= left {
		b.WriteString(strings.Join(lines, "\n") + "\n")
	} else {
		// Keep the start and the end, which say what the agent set out to do and how it ended.
		var head, tail []string
		for lo, hi := 0, len(lines)-1; lo <= hi; {
			if left -= len(lines[lo]) + 1; left < 0 {
				break
			}
			head = append(head, lines[lo])
			lo++
			if lo > hi {
				break
			}
			if left -= len(lines[hi]) + 1; left < 0 {
				break
			}
			tail = append(tail, lines[hi])
			hi--
		}
		b.WriteString(strings.Join(head, "\n") + "\n")
		fmt.Fprintf(&b, "(%d steps in the middle not shown)\n", len(lines)-len(head)-len(tail))
		for j := len(tail) - 1; j >= 0; j-- {
			b.WriteString(tail[j] + "\n")
		}
	}
	b.WriteString("\n" + summaryQuestion)
	return b.String()
}

func orEmptyMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// redactTrace returns a copy of the trace with every sensitive value replaced, ids and
// names included; the caller keeps the original to map answers back to its steps.
func redactTrace(t *schemas.Trace, r *Redactor) *schemas.Trace {
	out := &schemas.Trace{TraceID: r.String(t.TraceID), AgentName: r.String(t.AgentName), Metadata: r.fields(t.Metadata), Steps: make([]*schemas.Step, len(t.Steps))}
	for i, s := range t.Steps {
		c := *s
		c.StepID = r.String(s.StepID)
		if s.ParentStepID != nil {
			p := r.String(*s.ParentStepID)
			c.ParentStepID = &p
		}
		c.Description = r.String(s.Description)
		c.Input, c.Output, c.Metadata = r.fields(s.Input), r.fields(s.Output), r.fields(s.Metadata)
		out.Steps[i] = &c
	}
	return out
}
