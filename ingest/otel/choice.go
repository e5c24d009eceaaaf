package otel

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	"github.com/troy-audit/troy/schemas"
)

// choiceSuffix ends the id of the decision step made of a model call's choice of tools:
// span ids are hexadecimal, so it never names a span.
const choiceSuffix = "-choice"

// maxChoiceWalk bounds the values visited looking for tool calls in a model's reply.
const maxChoiceWalk = 10000

// toolCall is one tool the model chose to call.
type toolCall struct {
	Name      string
	Arguments any
	ID        string
}

// choiceStep is the decision a model call made when its reply asks for tools: the
// step after the model call, its child, with the tools chosen (output.choice, the
// names; output.tool_calls, each with its arguments) and, when the span lists them, the
// tools offered (input.options). Conventions record the choice in the reply's messages
// (GenAI parts of type tool_call, OpenInference's message.tool_calls, the OpenAI shape
// function.name and function.arguments) or apart (the AI SDK's ai.response.toolCalls).
// A reply with no tool call makes no decision step.
func choiceStep(c *converter, llm *schemas.Step, attrs map[string]any, end int64) *schemas.Step {
	calls := findToolCalls(c, llm.Output)
	if len(calls) == 0 {
		return nil
	}
	names := make([]string, 0, len(calls))
	list := make([]any, 0, len(calls))
	for _, tc := range calls {
		names = append(names, tc.Name)
		call := map[string]any{"name": tc.Name, "arguments": tc.Arguments}
		if tc.ID != "" {
			call["id"] = tc.ID
		}
		list = append(list, call)
	}
	parent := llm.StepID
	s := &schemas.Step{
		StepID:       llm.StepID + choiceSuffix,
		Type:         schemas.StepDecision,
		Description:  "Call " + strings.Join(names, ", "),
		Input:        map[string]any{},
		Output:       map[string]any{"choice": names[0], "tool_calls": list},
		Metadata:     map[string]any{DerivedFrom: llm.StepID},
		ParentStepID: &parent,
	}
	if len(names) > 1 {
		s.Output["choice"] = names
	}
	if opts := offeredTools(c, attrs); len(opts) > 0 {
		s.Input["options"] = opts
	}
	if model, ok := llm.Metadata["model"]; ok {
		s.Metadata["model"] = model
	}
	switch {
	case end > 0:
		ts := timestamp(end)
		s.Timestamp = &ts
	case llm.Timestamp != nil:
		ts := *llm.Timestamp
		s.Timestamp = &ts
	}
	return s
}

// findToolCalls walks a model call's output for the tool calls it holds, in order.
func findToolCalls(c *converter, output map[string]any) []toolCall {
	var calls []toolCall
	budget := maxChoiceWalk
	var walk func(v any, inCalls bool, depth int)
	walk = func(v any, inCalls bool, depth int) {
		budget--
		if budget < 0 || depth > c.maxDepth {
			return
		}
		switch v := v.(type) {
		case map[string]any:
			if tc, ok := asToolCall(c, v, inCalls); ok {
				calls = append(calls, tc)
				return
			}
			for _, k := range slices.Sorted(maps.Keys(v)) {
				walk(v[k], k == "tool_calls" || k == "toolCalls", depth+1)
			}
		case []any:
			for _, e := range v {
				walk(e, inCalls, depth+1)
			}
		}
	}
	walk(output, false, 0)
	return calls
}

// asToolCall reads one tool call in any convention's shape. inCalls says the value is in
// a list of tool calls, where a bare {"name", "arguments"} is one (the older GenAI
// conventions' flattened gen_ai.completion.N.tool_calls.M.*).
func asToolCall(c *converter, m map[string]any, inCalls bool) (toolCall, bool) {
	str := func(v any) string { s, _ := v.(string); return s }
	switch {
	case m["type"] == "tool_call" && str(m["name"]) != "":
		return toolCall{Name: str(m["name"]), Arguments: c.parsed(m["arguments"]), ID: str(m["id"])}, true
	case str(m["toolName"]) != "":
		args, ok := m["args"]
		if !ok {
			args = m["input"]
		}
		return toolCall{Name: str(m["toolName"]), Arguments: c.parsed(args), ID: str(m["toolCallId"])}, true
	}
	if inner, ok := m["tool_call"].(map[string]any); ok { // OpenInference
		tc, ok := asToolCall(c, inner, true)
		if ok && tc.ID == "" {
			tc.ID = str(m["id"])
		}
		return tc, ok
	}
	if fn, ok := m["function"].(map[string]any); ok && str(fn["name"]) != "" { // OpenAI
		return toolCall{Name: str(fn["name"]), Arguments: c.parsed(fn["arguments"]), ID: str(m["id"])}, true
	}
	if inCalls && str(m["name"]) != "" {
		return toolCall{Name: str(m["name"]), Arguments: c.parsed(m["arguments"]), ID: str(m["id"])}, true
	}
	return toolCall{}, false
}

// offeredTools are the names of the tools a model call offered the model, where the span
// lists them: gen_ai.tool.definitions, OpenInference's llm.tools.N.tool.json_schema, the
// AI SDK's ai.prompt.tools.
func offeredTools(c *converter, attrs map[string]any) []any {
	var defs []any
	if v, ok := attrs["gen_ai.tool.definitions"]; ok {
		defs, _ = c.parsed(v).([]any)
	}
	if v, ok := attrs["ai.prompt.tools"].([]any); ok && defs == nil {
		defs = v
	}
	if defs == nil {
		if list, _ := unflatten(attrs, "llm.tools"); list != nil {
			defs, _ = list.([]any)
		}
	}
	var names []any
	for _, d := range defs {
		d = c.parsed(d)
		m, ok := d.(map[string]any)
		if !ok {
			continue
		}
		if t, ok := m["tool"].(map[string]any); ok { // OpenInference: tool.json_schema
			if m, ok = c.parsed(t["json_schema"]).(map[string]any); !ok {
				continue
			}
		}
		if fn, ok := m["function"].(map[string]any); ok {
			m = fn
		}
		if name, ok := m["name"].(string); ok && name != "" {
			names = append(names, name)
		}
	}
	return names
}

// DerivedFrom is the metadata key of a step made of another span's step (the decision a
// model call's reply made): the id of that step.
const DerivedFrom = "otel.derived_from"

// SortSteps orders a trace's steps by time, as parts of a trace are merged, keeping each
// decision a model call's reply made right after that call: an instrumentation may end a
// model call's span (and so date its choice) after the tools it chose started.
func SortSteps(steps []*schemas.Step, stamp func(*schemas.Step) int64) {
	ids := make(map[string]bool, len(steps))
	for _, s := range steps {
		ids[s.StepID] = true
	}
	derived := map[string][]*schemas.Step{}
	rest := make([]*schemas.Step, 0, len(steps))
	for _, s := range steps {
		if src, ok := s.Metadata[DerivedFrom].(string); ok && src != s.StepID && ids[src] && s.Type == schemas.StepDecision {
			derived[src] = append(derived[src], s)
			continue
		}
		rest = append(rest, s)
	}
	slices.SortStableFunc(rest, func(a, b *schemas.Step) int { return cmp.Compare(stamp(a), stamp(b)) })
	out := steps[:0]
	for _, s := range rest {
		out = append(out, s)
		out = append(out, derived[s.StepID]...)
	}
}
