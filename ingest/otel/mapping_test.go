package otel

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/troy-audit/troy/schemas"
)

// spanSpec is a span to build with pdata: ids as small numbers, attributes as Go values.
type spanSpec struct {
	trace, id, parent byte
	name              string
	start             int // seconds after a fixed time
	attrs             map[string]any
}

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func traceID(b byte) pcommon.TraceID { return pcommon.TraceID{15: b} }
func spanID(b byte) pcommon.SpanID   { return pcommon.SpanID{7: b} }

// export builds one export of one resource holding the spans.
func export(resource map[string]any, specs ...spanSpec) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	if err := rs.Resource().Attributes().FromRaw(resource); err != nil {
		panic(err)
	}
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("test")
	for _, sp := range specs {
		s := ss.Spans().AppendEmpty()
		s.SetTraceID(traceID(sp.trace))
		s.SetSpanID(spanID(sp.id))
		if sp.parent != 0 {
			s.SetParentSpanID(spanID(sp.parent))
		}
		s.SetName(sp.name)
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(t0.Add(time.Duration(sp.start) * time.Second)))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(t0.Add(time.Duration(sp.start)*time.Second + 500*time.Millisecond)))
		if err := s.Attributes().FromRaw(sp.attrs); err != nil {
			panic(err)
		}
	}
	return td
}

func sid(b byte) string { return spanID(b).String() }

// TestMapping maps one span of each convention under an agent span, and checks the step.
func TestMapping(t *testing.T) {
	type want struct {
		typ, desc string
		input     map[string]any
		output    map[string]any
		meta      map[string]any // keys that must be there, with these values
	}
	cases := []struct {
		name  string
		attrs map[string]any
		want  *want // nil: not a step
	}{
		{"genai chat", map[string]any{
			"gen_ai.operation.name":      "chat",
			"gen_ai.request.model":       "gpt-4o",
			"gen_ai.input.messages":      `[{"role":"user","parts":[{"type":"text","content":"hi"}]}]`,
			"gen_ai.output.messages":     `[{"role":"assistant","parts":[{"type":"text","content":"hello"}]}]`,
			"gen_ai.system_instructions": `[{"type":"text","content":"be brief"}]`,
			"gen_ai.usage.input_tokens":  12,
		}, &want{schemas.StepLLMCall, "gpt-4o",
			map[string]any{
				"messages":            []any{map[string]any{"role": "user", "parts": []any{map[string]any{"type": "text", "content": "hi"}}}},
				"system_instructions": []any{map[string]any{"type": "text", "content": "be brief"}},
			},
			map[string]any{"messages": []any{map[string]any{"role": "assistant", "parts": []any{map[string]any{"type": "text", "content": "hello"}}}}},
			map[string]any{"gen_ai.usage.input_tokens": 12, "model": "gpt-4o", "gen_ai.operation.name": "chat"}}},
		{"genai text_completion", map[string]any{"gen_ai.operation.name": "text_completion", "gen_ai.request.model": "m"},
			&want{schemas.StepLLMCall, "m", map[string]any{}, map[string]any{}, nil}},
		{"genai generate_content", map[string]any{"gen_ai.operation.name": "generate_content", "gen_ai.response.model": "gemini"},
			&want{schemas.StepLLMCall, "gemini", map[string]any{}, map[string]any{}, nil}},
		{"genai execute_tool", map[string]any{
			"gen_ai.operation.name":      "execute_tool",
			"gen_ai.tool.name":           "send_email",
			"gen_ai.tool.call.arguments": `{"to":"a@example.com","amount":12.5}`,
			"gen_ai.tool.call.result":    `"sent"`,
			"troy.network_zone":          "external",
			"data_classification":        "pii",
			"permission_level":           "admin",
		}, &want{schemas.StepToolCall, "send_email",
			map[string]any{"to": "a@example.com", "amount": 12.5},
			map[string]any{"result": `"sent"`},
			map[string]any{"network_zone": "external", "data_classification": "pii", "permission_level": "admin", "gen_ai.tool.name": "send_email"}}},
		{"genai tool arguments not JSON", map[string]any{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "t", "gen_ai.tool.call.arguments": "rm -rf /"},
			&want{schemas.StepToolCall, "t", map[string]any{"arguments": "rm -rf /"}, map[string]any{}, nil}},
		{"genai embeddings", map[string]any{"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "e"},
			&want{schemas.StepObservation, "x", map[string]any{}, map[string]any{}, nil}},
		{"genai invoke_agent", map[string]any{"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "a"}, nil},
		{"genai create_agent", map[string]any{"gen_ai.operation.name": "create_agent"}, nil},
		{"older genai: events-free prompt attributes", map[string]any{
			"gen_ai.system":               "openai",
			"gen_ai.request.model":        "gpt-3.5-turbo",
			"gen_ai.prompt.0.role":        "user",
			"gen_ai.prompt.0.content":     "hi",
			"gen_ai.prompt.1.role":        "assistant",
			"gen_ai.prompt.1.content":     "yes?",
			"gen_ai.completion.0.role":    "assistant",
			"gen_ai.completion.0.content": "hello",
		}, &want{schemas.StepLLMCall, "gpt-3.5-turbo",
			map[string]any{"messages": []any{map[string]any{"role": "user", "content": "hi"}, map[string]any{"role": "assistant", "content": "yes?"}}},
			map[string]any{"messages": []any{map[string]any{"role": "assistant", "content": "hello"}}},
			map[string]any{"gen_ai.system": "openai"}}},
		{"openinference LLM", map[string]any{
			"openinference.span.kind":                                            "LLM",
			"llm.model_name":                                                     "gpt-4o-mini",
			"llm.input_messages.0.message.role":                                  "user",
			"llm.input_messages.0.message.content":                               "find it",
			"llm.output_messages.0.message.role":                                 "assistant",
			"llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "search",
			"llm.token_count.prompt":                                             7,
		}, &want{schemas.StepLLMCall, "gpt-4o-mini",
			map[string]any{"messages": []any{map[string]any{"role": "user", "content": "find it"}}},
			map[string]any{"messages": []any{map[string]any{"role": "assistant", "tool_calls": []any{map[string]any{"function": map[string]any{"name": "search"}}}}}},
			map[string]any{"llm.token_count.prompt": 7}}},
		{"openinference TOOL", map[string]any{"openinference.span.kind": "TOOL", "tool.name": "search", "input.value": `{"q":"x"}`, "output.value": "found"},
			&want{schemas.StepToolCall, "search", map[string]any{"q": "x"}, map[string]any{"result": "found"}, map[string]any{"tool.name": "search"}}},
		{"openinference RETRIEVER", map[string]any{"openinference.span.kind": "RETRIEVER", "input.value": "q", "retrieval.documents.0.document.content": "d0", "retrieval.documents.1.document.content": "d1"},
			&want{schemas.StepObservation, "x", map[string]any{"value": "q"}, map[string]any{"documents": []any{map[string]any{"content": "d0"}, map[string]any{"content": "d1"}}}, nil}},
		{"openinference EMBEDDING", map[string]any{"openinference.span.kind": "EMBEDDING"}, &want{schemas.StepObservation, "x", map[string]any{}, map[string]any{}, nil}},
		{"openinference RERANKER", map[string]any{"openinference.span.kind": "RERANKER"}, &want{schemas.StepObservation, "x", map[string]any{}, map[string]any{}, nil}},
		{"openinference GUARDRAIL", map[string]any{"openinference.span.kind": "GUARDRAIL", "output.value": `{"passed":false}`},
			&want{schemas.StepDecision, "x", map[string]any{}, map[string]any{"passed": false}, nil}},
		{"openinference EVALUATOR", map[string]any{"openinference.span.kind": "EVALUATOR"}, &want{schemas.StepDecision, "x", map[string]any{}, map[string]any{}, nil}},
		{"openinference CHAIN", map[string]any{"openinference.span.kind": "CHAIN"}, nil},
		{"openinference AGENT", map[string]any{"openinference.span.kind": "AGENT"}, nil},
		{"openllmetry tool", map[string]any{"traceloop.span.kind": "tool", "traceloop.entity.name": "lookup", "traceloop.entity.input": `{"args":[],"kwargs":{"id":3}}`, "traceloop.entity.output": `{"ok":true}`},
			&want{schemas.StepToolCall, "lookup", map[string]any{"args": []any{}, "kwargs": map[string]any{"id": 3}}, map[string]any{"ok": true}, nil}},
		// As @traceloop/instrumentation-langchain 0.27.0 records a LangChain.js tool: a task
		// named after the tool's class, the input wrapped in args, a ToolMessage as output.
		{"openllmetry langchain.js tool", map[string]any{
			"gen_ai.operation.name":   "execute_tool",
			"gen_ai.provider.name":    "langchain",
			"traceloop.span.kind":     "task",
			"traceloop.entity.name":   "DynamicStructuredTool",
			"traceloop.entity.input":  `{"args":["{\"url\":\"https://crm.example.io/v1\",\"body\":{\"email\":\"jane@example.com\"}}"]}`,
			"traceloop.entity.output": `{"lc":1,"type":"constructor","id":["langchain_core","messages","ToolMessage"],"kwargs":{"status":"success","content":"{\"status\":200}","tool_call_id":"call_1","name":"http_post","metadata":{},"additional_kwargs":{},"response_metadata":{}}}`,
		}, &want{schemas.StepToolCall, "http_post",
			map[string]any{"url": "https://crm.example.io/v1", "body": map[string]any{"email": "jane@example.com"}},
			map[string]any{"status": 200},
			map[string]any{"gen_ai.tool.call.id": "call_1", "traceloop.entity.name": "DynamicStructuredTool", "traceloop.span.kind": "task"}}},
		{"openllmetry langchain.js tool that failed", map[string]any{
			"gen_ai.operation.name": "execute_tool", "traceloop.span.kind": "task", "traceloop.entity.name": "DynamicStructuredTool",
			"traceloop.entity.input": `{"args":["plain text"]}`,
		}, &want{schemas.StepToolCall, "DynamicStructuredTool", map[string]any{"arguments": "plain text"}, map[string]any{}, nil}},
		{"openllmetry langchain.js chain", map[string]any{"gen_ai.operation.name": "workflow", "traceloop.span.kind": "workflow", "traceloop.workflow.name": "RunnableSequence"}, nil},
		{"openllmetry langchain.js agent executor", map[string]any{"gen_ai.operation.name": "invoke_agent", "traceloop.span.kind": "workflow"}, nil},
		// As @arizeai/openinference-instrumentation-langchain 4.1.1 records a LangChain.js tool.
		{"openinference langchain.js tool", map[string]any{
			"openinference.span.kind": "TOOL",
			"tool.name":               "http_post",
			"input.value":             `{"url":"https://crm.example.io/v1"}`,
			"input.mime_type":         "application/json",
			"output.value":            `{"output":{"lc":1,"type":"constructor","id":["langchain_core","messages","ToolMessage"],"kwargs":{"status":"success","content":"sent","tool_call_id":"call_2","name":"http_post"}}}`,
		}, &want{schemas.StepToolCall, "http_post", map[string]any{"url": "https://crm.example.io/v1"}, map[string]any{"result": "sent"},
			map[string]any{"gen_ai.tool.call.id": "call_2", "input.mime_type": "application/json"}}},
		{"openllmetry workflow", map[string]any{"traceloop.span.kind": "workflow", "traceloop.entity.name": "w"}, nil},
		{"openllmetry task", map[string]any{"traceloop.span.kind": "task"}, nil},
		{"openllmetry model call", map[string]any{"llm.request.type": "chat", "gen_ai.request.model": "gpt-4", "gen_ai.prompt.0.content": "p"},
			&want{schemas.StepLLMCall, "gpt-4", map[string]any{"messages": []any{map[string]any{"content": "p"}}}, map[string]any{}, map[string]any{"llm.request.type": "chat"}}},
		{"vercel doGenerate", map[string]any{"ai.operationId": "ai.generateText.doGenerate", "ai.model.id": "gpt-4o", "ai.prompt.messages": `[{"role":"user","content":"hi"}]`, "ai.response.text": "hello"},
			&want{schemas.StepLLMCall, "gpt-4o", map[string]any{"messages": []any{map[string]any{"role": "user", "content": "hi"}}}, map[string]any{"text": "hello"}, nil}},
		{"vercel doStream", map[string]any{"ai.operationId": "ai.streamText.doStream", "ai.model.id": "m"}, &want{schemas.StepLLMCall, "m", map[string]any{}, map[string]any{}, nil}},
		{"vercel toolCall", map[string]any{"ai.operationId": "ai.toolCall", "ai.toolCall.name": "weather", "ai.toolCall.args": `{"city":"Paris"}`, "ai.toolCall.result": `{"t":18}`},
			&want{schemas.StepToolCall, "weather", map[string]any{"city": "Paris"}, map[string]any{"t": 18}, map[string]any{"ai.toolCall.name": "weather"}}},
		{"vercel generateText", map[string]any{"ai.operationId": "ai.generateText"}, nil},
		{"not GenAI", map[string]any{"http.request.method": "GET"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAssembler(Limits{})
			td := export(map[string]any{"service.name": "svc"},
				spanSpec{trace: 1, id: 1, name: "agent", attrs: map[string]any{"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "helper"}},
				spanSpec{trace: 1, id: 2, parent: 1, name: "x", start: 1, attrs: tc.attrs},
				spanSpec{trace: 1, id: 3, parent: 2, name: "after", start: 2, attrs: map[string]any{"gen_ai.operation.name": "chat"}})
			if res := a.Add(td, t0); res.Err != nil || res.Accepted != 3 {
				t.Fatalf("%+v", res)
			}
			traces := a.Ready()
			if len(traces) != 1 || traces[0].Err != nil {
				t.Fatalf("%+v", traces)
			}
			tr := traces[0].Trace
			if tr.AgentName != "helper" || tr.TraceID != traceID(1).String() {
				t.Fatalf("agent %q, trace %q", tr.AgentName, tr.TraceID)
			}
			// The decisions a model call's reply made are tested apart (TestModelChoice).
			tr.Steps = slices.DeleteFunc(tr.Steps, func(s *schemas.Step) bool { return s.Metadata["otel.derived_from"] != nil })
			last := tr.Steps[len(tr.Steps)-1]
			if tc.want == nil {
				// Not a step: the one after it is re-parented to no step.
				if len(tr.Steps) != 1 || last.ParentStepID != nil {
					t.Fatalf("steps %d, parent %v", len(tr.Steps), last.ParentStepID)
				}
				return
			}
			if len(tr.Steps) != 2 || last.ParentStepID == nil || *last.ParentStepID != sid(2) {
				t.Fatalf("steps %d, parent of the last %v", len(tr.Steps), last.ParentStepID)
			}
			s := tr.Steps[0]
			w := tc.want
			if s.StepID != sid(2) || s.Type != w.typ || s.Description != w.desc || s.ParentStepID != nil {
				t.Fatalf("step %s %s %q parent %v", s.StepID, s.Type, s.Description, s.ParentStepID)
			}
			if *s.Timestamp != "2026-03-02T09:00:01Z" {
				t.Fatalf("timestamp %s", *s.Timestamp)
			}
			if !reflect.DeepEqual(s.Input, w.input) {
				t.Errorf("input %#v, want %#v", s.Input, w.input)
			}
			if !reflect.DeepEqual(s.Output, w.output) {
				t.Errorf("output %#v, want %#v", s.Output, w.output)
			}
			for k, v := range w.meta {
				if !reflect.DeepEqual(s.Metadata[k], v) {
					t.Errorf("metadata[%s] = %#v, want %#v", k, s.Metadata[k], v)
				}
			}
			// What went to input or output is not repeated in metadata.
			for k := range s.Metadata {
				if strings.HasSuffix(k, ".arguments") || strings.HasSuffix(k, "input.value") || strings.Contains(k, "messages") {
					t.Errorf("metadata holds %s", k)
				}
			}
			if s.Metadata["otel.span_name"] != "x" || s.Metadata["otel.duration_ms"] != 500.0 {
				t.Errorf("otel metadata %v %v", s.Metadata["otel.span_name"], s.Metadata["otel.duration_ms"])
			}
		})
	}
}

// The agent's name: gen_ai.agent.name, OpenInference's agent.name, then the service.
func TestAgentName(t *testing.T) {
	for _, tc := range []struct {
		name  string
		agent map[string]any
		want  string
	}{
		{"genai", map[string]any{"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "g"}, "g"},
		{"openinference", map[string]any{"openinference.span.kind": "AGENT", "agent.name": "o"}, "o"},
		{"openllmetry", map[string]any{"traceloop.span.kind": "agent", "traceloop.entity.name": "l"}, "l"},
		{"service", map[string]any{"http.route": "/"}, "svc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAssembler(Limits{})
			a.Add(export(map[string]any{"service.name": "svc", "troy.permission_level": "admin"},
				spanSpec{trace: 1, id: 1, name: "root", attrs: tc.agent},
				spanSpec{trace: 1, id: 2, parent: 1, name: "c", attrs: map[string]any{"gen_ai.operation.name": "chat"}}), t0)
			got := a.Ready()
			if len(got) != 1 || got[0].Trace.AgentName != tc.want || got[0].Trace.Metadata["permission_level"] != "admin" {
				t.Fatalf("%+v", got)
			}
		})
	}
}

// Limits: too many attributes, a value nested too deep, a trace over its size; each
// refused with where it was.
func TestLimits(t *testing.T) {
	many := map[string]any{"gen_ai.operation.name": "chat"}
	for i := range 20 {
		many[strings.Repeat("k", i+1)] = i
	}
	deep := any("x")
	for range 12 {
		deep = map[string]any{"d": deep}
	}
	for _, tc := range []struct {
		name  string
		lim   Limits
		attrs map[string]any
		want  string
	}{
		{"attributes", Limits{MaxAttributes: 10}, many, "resourceSpans[0].scopeSpans[0].spans[0]: 21 attributes, over the limit of 10"},
		{"depth", Limits{MaxDepth: 5}, map[string]any{"gen_ai.operation.name": "chat", "x": deep}, "nested deeper than 5 levels"},
		{"trace size", Limits{MaxTraceBytes: 300}, map[string]any{"gen_ai.operation.name": "chat", "x": strings.Repeat("a", 400)}, "over the 300-byte limit of a trace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAssembler(tc.lim)
			res := a.Add(export(nil, spanSpec{trace: 1, id: 1, name: "s", attrs: tc.attrs}), t0)
			if res.Rejected != 1 || res.Err == nil || !strings.Contains(res.Err.Error(), tc.want) {
				t.Fatalf("%+v", res)
			}
			got := a.Flush()
			if len(got) != 1 || got[0].Err == nil || got[0].Trace != nil {
				t.Fatalf("the trace is not failed: %+v", got)
			}
			// Retried, its spans are duplicates: no part of it comes out.
			a.Add(export(nil, spanSpec{trace: 1, id: 1, name: "s", attrs: tc.attrs}), t0)
			if got := a.Flush(); len(got) != 0 || a.Stats().Duplicates != 1 {
				t.Fatalf("a retry of a failed trace: %+v %+v", got, a.Stats())
			}
		})
	}
	// A JSON string nested deeper than the limit stays a string.
	a := NewAssembler(Limits{MaxDepth: 3})
	a.Add(export(nil, spanSpec{trace: 1, id: 1, name: "s", attrs: map[string]any{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.call.arguments": `{"a":{"b":{"c":{"d":1}}}}`}}), t0)
	got := a.Flush()
	if len(got) != 1 || got[0].Trace.Steps[0].Input["arguments"] != `{"a":{"b":{"c":{"d":1}}}}` {
		t.Fatalf("%+v", got[0].Trace.Steps[0].Input)
	}
}

func TestUnflattenBounds(t *testing.T) {
	// An index far beyond the attributes is kept as a key, never a list of that length.
	got, _ := unflatten(map[string]any{"p.9999999.x": 1, "p.0.x": 2}, "p")
	m, ok := got.(map[string]any)
	if !ok || len(m) != 2 {
		t.Fatalf("%#v", got)
	}
	got, _ = unflatten(map[string]any{"p.1": "b", "p.0": "a"}, "p")
	if !reflect.DeepEqual(got, []any{"a", "b"}) {
		t.Fatalf("%#v", got)
	}
	// A key that is both a leaf and a branch keeps the branch.
	got, _ = unflatten(map[string]any{"p.a": 1, "p.a.b": 2}, "p")
	if !reflect.DeepEqual(got, map[string]any{"a": map[string]any{"b": 2}}) {
		t.Fatalf("%#v", got)
	}
}

func TestDecodeProtoErrors(t *testing.T) {
	if _, err := DecodeProto([]byte{0x0a, 0xff}); err == nil || !strings.HasPrefix(err.Error(), "not an OTLP trace export: ") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("%v", err)
	}
}

// A failed call with no result has its error as output: the status message, else the
// exception event's message.
func TestFailedCall(t *testing.T) {
	for _, tc := range []struct {
		status, exception, want string
	}{
		{"timeout", "", "timeout"},
		{"", "connection refused", "connection refused"},
		{"", "", "error"},
	} {
		td := export(nil, spanSpec{trace: 1, id: 1, name: "t", attrs: map[string]any{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "fetch"}})
		sp := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
		sp.Status().SetCode(ptrace.StatusCodeError)
		sp.Status().SetMessage(tc.status)
		if tc.exception != "" {
			ev := sp.Events().AppendEmpty()
			ev.SetName("exception")
			ev.Attributes().PutStr("exception.message", tc.exception)
		}
		a := NewAssembler(Limits{})
		a.Add(td, t0)
		got := a.Flush()
		s := got[0].Trace.Steps[0]
		if s.Output["error"] != tc.want || s.Metadata["otel.status_code"] != "Error" {
			t.Fatalf("%+v: output %v, metadata %v", tc, s.Output, s.Metadata)
		}
	}
}
