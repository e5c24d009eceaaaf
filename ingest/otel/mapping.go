package otel

import (
	"fmt"
	"maps"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/troy-audit/troy/schemas"
)

// Role is what a span is to troy.
type Role int

const (
	// RoleIgnored is a span of no GenAI convention (an HTTP call, a database query): not a
	// step; its children are re-parented past it.
	RoleIgnored Role = iota
	// RoleContainer is a GenAI span that groups steps (a chain, a workflow, a task) without
	// being one.
	RoleContainer
	// RoleAgent is the agent's own span (invoke_agent): it names the agent.
	RoleAgent
	// RoleStep is a step.
	RoleStep
)

// kind is a span's role and, for a step, its type.
type kind struct {
	role     Role
	stepType string
}

var (
	ignored   = kind{role: RoleIgnored}
	container = kind{role: RoleContainer}
	agentSpan = kind{role: RoleAgent}
)

func step(t string) kind { return kind{role: RoleStep, stepType: t} }

// classify decides a span's role from its attributes, the most specific convention first:
// OpenInference, OpenLLMetry, the Vercel AI SDK, then the GenAI semantic conventions.
func classify(attrs map[string]any) kind {
	if k, ok := attrs["openinference.span.kind"].(string); ok {
		switch strings.ToUpper(k) {
		case "LLM":
			return step(schemas.StepLLMCall)
		case "TOOL":
			return step(schemas.StepToolCall)
		case "RETRIEVER", "EMBEDDING", "RERANKER":
			return step(schemas.StepObservation)
		case "GUARDRAIL", "EVALUATOR":
			return step(schemas.StepDecision)
		case "AGENT":
			return agentSpan
		}
		return container
	}
	if k, ok := attrs["traceloop.span.kind"].(string); ok {
		switch k {
		case "tool":
			return step(schemas.StepToolCall)
		case "agent":
			return agentSpan
		}
		// OpenLLMetry's LangChain.js instrumentation marks a tool's run as a task and an
		// agent's as a workflow, with the GenAI operation beside it, which says more.
		if g, ok := genAIKind(attrs); ok && g.role != RoleContainer {
			return g
		}
		return container
	}
	if op, ok := attrs["ai.operationId"].(string); ok {
		switch {
		case op == "ai.toolCall":
			return step(schemas.StepToolCall)
		case strings.HasSuffix(op, ".doGenerate"), strings.HasSuffix(op, ".doStream"):
			return step(schemas.StepLLMCall)
		case strings.HasSuffix(op, ".doEmbed"):
			return step(schemas.StepObservation)
		}
		return container
	}
	if k, ok := genAIKind(attrs); ok {
		return k
	}
	// Older GenAI conventions and OpenLLMetry's model spans: no operation name, but the
	// request's model or a flattened prompt.
	if _, ok := attrs["llm.request.type"]; ok {
		return step(schemas.StepLLMCall)
	}
	if _, ok := attrs["gen_ai.request.model"]; ok {
		return step(schemas.StepLLMCall)
	}
	for k := range attrs {
		if strings.HasPrefix(k, "gen_ai.") || strings.HasPrefix(k, "llm.") {
			return container
		}
	}
	return ignored
}

// genAIKind is a span's role by the GenAI conventions' gen_ai.operation.name, when it has one.
func genAIKind(attrs map[string]any) (kind, bool) {
	op, ok := attrs["gen_ai.operation.name"].(string)
	if !ok {
		return kind{}, false
	}
	switch op {
	case "chat", "text_completion", "generate_content", "completion":
		return step(schemas.StepLLMCall), true
	case "execute_tool":
		return step(schemas.StepToolCall), true
	case "invoke_agent", "create_agent":
		return agentSpan, true
	case "embeddings", "retrieval":
		return step(schemas.StepObservation), true
	}
	return container, true
}

// node is one span as the assembler keeps it: its ids and, for a step, the step.
type node struct {
	spanID, parentID string
	role             Role
	start            int64 // unix nanoseconds; 0 when the span has none
	step             *schemas.Step
	choice           *schemas.Step  // the decision a model call's reply made: the tools it chose
	choiceAt         int64          // when it was made: the call's end, in unix nanoseconds
	agentName        string         // the agent a span names (agent spans, or attributes of steps)
	agentMeta        map[string]any // an agent span's attributes, for the trace's metadata
	service          string         // the resource's service.name
	size             int64
}

// attributes converts a span's attributes (and its GenAI events', under the events' names)
// into plain values, failing past the limits.
func (c *converter) attributes(span ptrace.Span, lim Limits) (map[string]any, error) {
	n := span.Attributes().Len()
	for _, ev := range span.Events().All() {
		n += ev.Attributes().Len()
	}
	if n > lim.MaxAttributes {
		return nil, fmt.Errorf("%d attributes, over the limit of %d", n, lim.MaxAttributes)
	}
	attrs := make(map[string]any, n)
	for k, v := range span.Attributes().All() {
		c.size += int64(len(k))
		attrs[k] = c.value(v, 1)
	}
	// Older GenAI conventions put prompts and completions in events
	// (gen_ai.content.prompt with gen_ai.prompt); their attributes count as the span's.
	for _, ev := range span.Events().All() {
		if !strings.HasPrefix(ev.Name(), "gen_ai.") {
			continue
		}
		for k, v := range ev.Attributes().All() {
			if _, ok := attrs[k]; !ok {
				c.size += int64(len(k))
				attrs[k] = c.value(v, 1)
			}
		}
	}
	if c.tooDeep {
		return nil, fmt.Errorf("a value nested deeper than %d levels", lim.MaxDepth)
	}
	return attrs, nil
}

// mapSpan turns one span into a node. resource holds the resource's attributes.
func mapSpan(span ptrace.Span, scope pcommon.InstrumentationScope, resource map[string]any, lim Limits) (*node, error) {
	c := &converter{maxDepth: lim.MaxDepth}
	attrs, err := c.attributes(span, lim)
	if err != nil {
		return nil, err
	}
	n := &node{
		spanID: span.SpanID().String(),
		start:  int64(span.StartTimestamp()),
		size:   c.size + spanOverhead + int64(len(span.Name())),
	}
	if !span.ParentSpanID().IsEmpty() {
		n.parentID = span.ParentSpanID().String()
	}
	k := classify(attrs)
	n.role = k.role
	n.agentName = agentName(attrs)
	n.service, _ = resource["service.name"].(string)
	switch k.role {
	case RoleAgent:
		n.agentMeta = attrs
		return n, nil
	case RoleStep:
	default:
		return n, nil
	}
	s := &schemas.Step{
		StepID:   n.spanID,
		Type:     k.stepType,
		Input:    map[string]any{},
		Output:   map[string]any{},
		Metadata: map[string]any{},
	}
	if n.start > 0 {
		ts := timestamp(n.start)
		s.Timestamp = &ts
	}
	used := map[string]bool{}
	take := func(key string) (any, bool) {
		v, ok := attrs[key]
		if ok {
			used[key] = true
		}
		return v, ok
	}
	// Input and output: each convention's attributes, the first found.
	toolName := ""
	switch k.stepType {
	case schemas.StepToolCall:
		toolName = toolIO(c, s, take)
	case schemas.StepLLMCall:
		llmIO(c, s, attrs, take, used)
	case schemas.StepObservation:
		// OpenInference's retrieved documents, flattened as retrieval.documents.N.document.*.
		if docs, keys := unflatten(attrs, "retrieval.documents"); docs != nil {
			s.Output["documents"] = docs
			for _, k := range keys {
				used[k] = true
			}
		}
	}
	genericIO(c, s, take)
	if span.Status().Code() == ptrace.StatusCodeError && len(s.Output) == 0 {
		// A failed call's output is its error, as the SDK's adapters record it.
		s.Output["error"] = errorMessage(span)
	}
	s.Description = description(k.stepType, attrs, toolName, span.Name())
	for key, v := range attrs {
		if !used[key] {
			s.Metadata[key] = v
		}
	}
	for _, f := range []string{"network_zone", "data_classification", "permission_level"} {
		for _, key := range []string{"troy." + f, f} {
			if v, ok := attrs[key].(string); ok && v != "" {
				s.Metadata[f] = v
				break
			}
		}
	}
	if model := modelName(attrs); model != "" && s.Metadata["model"] == nil {
		s.Metadata["model"] = model
	}
	s.Metadata["otel.span_name"] = span.Name()
	s.Metadata["otel.span_kind"] = span.Kind().String()
	if sn := scope.Name(); sn != "" {
		s.Metadata["otel.scope.name"] = sn
	}
	if code := span.Status().Code(); code != ptrace.StatusCodeUnset {
		s.Metadata["otel.status_code"] = code.String()
		if msg := span.Status().Message(); msg != "" {
			s.Metadata["otel.status_message"] = msg
		}
	}
	end := int64(span.EndTimestamp())
	if end >= n.start && n.start > 0 {
		s.Metadata["otel.duration_ms"] = float64(end-n.start) / 1e6
	}
	n.step = s
	if k.stepType == schemas.StepLLMCall {
		if end < n.start {
			end = 0
		}
		n.choice = choiceStep(c, s, attrs, end)
		n.choiceAt = end
	}
	return n, nil
}

// timestamp is a step's timestamp of unix nanoseconds.
func timestamp(ns int64) string {
	return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
}

type taker func(key string) (any, bool)

// toolIO: the tool's arguments are the step's input, its result the output. It returns
// the tool's name when only its result gives it (a LangChain ToolMessage).
func toolIO(c *converter, s *schemas.Step, take taker) (name string) {
	for _, key := range []string{"gen_ai.tool.call.arguments", "ai.toolCall.args", "traceloop.entity.input", "input.value"} {
		if v, ok := take(key); ok {
			putObject(s.Input, "arguments", c.parsed(soleArg(c.parsed(v))))
			break
		}
	}
	for _, key := range []string{"gen_ai.tool.call.result", "ai.toolCall.result", "traceloop.entity.output", "output.value"} {
		if v, ok := take(key); ok {
			result := c.parsed(v)
			if msg, ok := toolMessage(result); ok {
				// LangChain's serialized ToolMessage: its content is the result.
				result = c.parsed(msg["content"])
				name, _ = msg["name"].(string)
				if id, ok := msg["tool_call_id"].(string); ok && id != "" {
					s.Metadata["gen_ai.tool.call.id"] = id
				}
			}
			putObject(s.Output, "result", result)
			break
		}
	}
	if id, ok := take("gen_ai.tool.call.id"); ok {
		s.Metadata["gen_ai.tool.call.id"] = id
	}
	return name
}

// soleArg unwraps the arguments OpenLLMetry's LangChain.js instrumentation records,
// {"args": [input]}, to the input; any other value is returned as it is.
func soleArg(v any) any {
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		if args, ok := m["args"].([]any); ok && len(args) == 1 {
			return args[0]
		}
	}
	return v
}

// toolMessage finds a LangChain ToolMessage as LangChain.js serializes it
// ({"lc": 1, "type": "constructor", "id": [..., "ToolMessage"], "kwargs": {...}}), alone
// or as the only key of an object (OpenInference's {"output": ...}), and returns its
// kwargs: name, content, tool_call_id.
func toolMessage(v any) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	if len(m) == 1 {
		if inner, ok := m["output"].(map[string]any); ok {
			m = inner
		}
	}
	id, _ := m["id"].([]any)
	kwargs, ok := m["kwargs"].(map[string]any)
	if !ok || m["type"] != "constructor" || len(id) == 0 || id[len(id)-1] != "ToolMessage" {
		return nil, false
	}
	return kwargs, true
}

// llmIO: the messages sent to the model are the input, its reply the output.
func llmIO(c *converter, s *schemas.Step, attrs map[string]any, take taker, used map[string]bool) {
	for _, key := range []string{"gen_ai.input.messages", "ai.prompt.messages", "gen_ai.prompt"} {
		if v, ok := take(key); ok {
			s.Input["messages"] = c.parsed(v)
			break
		}
	}
	if v, ok := take("gen_ai.system_instructions"); ok {
		s.Input["system_instructions"] = c.parsed(v)
	}
	if v, ok := take("ai.prompt"); ok {
		putObject(s.Input, "prompt", c.parsed(v))
	}
	for _, key := range []string{"gen_ai.output.messages", "gen_ai.completion"} {
		if v, ok := take(key); ok {
			s.Output["messages"] = c.parsed(v)
			break
		}
	}
	if v, ok := take("ai.response.text"); ok {
		s.Output["text"] = v
	}
	if v, ok := take("ai.response.toolCalls"); ok {
		s.Output["tool_calls"] = c.parsed(v)
	}
	// Flattened lists: OpenInference's llm.input_messages.N.message.*, OpenLLMetry's and
	// older GenAI conventions' gen_ai.prompt.N.* and gen_ai.completion.N.*.
	for _, f := range []struct{ prefix, dest string }{
		{"llm.input_messages", "input"},
		{"gen_ai.prompt", "input"},
		{"llm.output_messages", "output"},
		{"gen_ai.completion", "output"},
	} {
		dest := s.Input
		if f.dest == "output" {
			dest = s.Output
		}
		if _, done := dest["messages"]; done {
			continue
		}
		if list, keys := unflatten(attrs, f.prefix); list != nil {
			dest["messages"] = list
			for _, k := range keys {
				used[k] = true
			}
		}
	}
}

// genericIO: OpenInference's input.value and output.value, and OpenLLMetry's entity input
// and output, where the convention's own attributes gave nothing.
func genericIO(c *converter, s *schemas.Step, take taker) {
	if len(s.Input) == 0 {
		for _, key := range []string{"input.value", "traceloop.entity.input"} {
			if v, ok := take(key); ok {
				putObject(s.Input, "value", c.parsed(v))
				break
			}
		}
	}
	if len(s.Output) == 0 {
		for _, key := range []string{"output.value", "traceloop.entity.output"} {
			if v, ok := take(key); ok {
				putObject(s.Output, "value", c.parsed(v))
				break
			}
		}
	}
}

// putObject merges an object's keys into dest (a tool's arguments are its input), or puts
// any other value under key.
func putObject(dest map[string]any, key string, v any) {
	if m, ok := v.(map[string]any); ok {
		maps.Copy(dest, m)
		return
	}
	dest[key] = v
}

// description is what the step did, as policies match it: the tool's name for a tool
// call, the model's for a model call, the span's name otherwise.
// A tool's name from its result (toolName) comes before OpenLLMetry's entity name, which
// LangChain.js instrumentation sets to the tool's class (DynamicStructuredTool).
func description(stepType string, attrs map[string]any, toolName, spanName string) string {
	if stepType == schemas.StepToolCall {
		for _, key := range []string{"gen_ai.tool.name", "tool.name", "ai.toolCall.name"} {
			if v, ok := attrs[key].(string); ok && v != "" {
				return v
			}
		}
		if toolName != "" {
			return toolName
		}
		if v, ok := attrs["traceloop.entity.name"].(string); ok && v != "" {
			return v
		}
	}
	if stepType == schemas.StepLLMCall {
		if m := modelName(attrs); m != "" {
			return m
		}
	}
	return spanName
}

func modelName(attrs map[string]any) string {
	for _, key := range []string{"gen_ai.request.model", "gen_ai.response.model", "llm.model_name", "ai.model.id"} {
		if v, ok := attrs[key].(string); ok && v != "" {
			return v
		}
	}
	return ""
}

func agentName(attrs map[string]any) string {
	for _, key := range []string{"gen_ai.agent.name", "agent.name"} {
		if v, ok := attrs[key].(string); ok && v != "" {
			return v
		}
	}
	if k, _ := attrs["traceloop.span.kind"].(string); k == "agent" {
		if v, ok := attrs["traceloop.entity.name"].(string); ok {
			return v
		}
	}
	return ""
}

// errorMessage is why a span failed: its status message, or its exception event's.
func errorMessage(span ptrace.Span) string {
	if msg := span.Status().Message(); msg != "" {
		return msg
	}
	for _, ev := range span.Events().All() {
		if ev.Name() == "exception" {
			if v, ok := ev.Attributes().Get("exception.message"); ok {
				return v.AsString()
			}
		}
	}
	return "error"
}
