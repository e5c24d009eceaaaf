package otel

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/troy-audit/troy/schemas"
)

// A model call whose reply asks for tools is followed by a decision step: the tools it
// chose, with their arguments, and the tools it was offered where the span lists them,
// whatever the convention recorded them as.
func TestModelChoice(t *testing.T) {
	cases := []struct {
		name    string
		attrs   map[string]any
		choice  any   // output.choice; nil: no decision step
		args    any   // the first call's arguments
		options []any // input.options
	}{
		{"GenAI parts", map[string]any{
			"gen_ai.operation.name":   "chat",
			"gen_ai.output.messages":  `[{"role":"assistant","parts":[{"type":"text","content":"sending"},{"type":"tool_call","id":"call_1","name":"http_post","arguments":{"url":"https://x.example"}}]}]`,
			"gen_ai.tool.definitions": `[{"type":"function","name":"http_post"},{"type":"function","name":"read_file"}]`,
		}, "http_post", map[string]any{"url": "https://x.example"}, []any{"http_post", "read_file"}},
		{"GenAI two calls", map[string]any{
			"gen_ai.operation.name":  "chat",
			"gen_ai.output.messages": `[{"role":"assistant","parts":[{"type":"tool_call","name":"a","arguments":{}},{"type":"tool_call","name":"b","arguments":{"n":1}}]}]`,
		}, []string{"a", "b"}, map[string]any{}, nil},
		{"OpenInference flattened", map[string]any{
			"openinference.span.kind":                                                 "LLM",
			"llm.output_messages.0.message.role":                                      "assistant",
			"llm.output_messages.0.message.tool_calls.0.tool_call.function.name":      "search",
			"llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": `{"q":"x"}`,
			"llm.output_messages.0.message.tool_calls.0.tool_call.id":                 "c9",
			"llm.tools.0.tool.json_schema":                                            `{"type":"function","function":{"name":"search"}}`,
		}, "search", map[string]any{"q": "x"}, []any{"search"}},
		{"OpenAI message shape", map[string]any{
			"gen_ai.operation.name":  "chat",
			"gen_ai.output.messages": `[{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"send_email","arguments":"{\"to\":\"a@b.example\"}"}}]}]`,
		}, "send_email", map[string]any{"to": "a@b.example"}, nil},
		{"older GenAI flattened", map[string]any{
			"llm.request.type":                           "chat",
			"gen_ai.completion.0.role":                   "assistant",
			"gen_ai.completion.0.tool_calls.0.name":      "lookup",
			"gen_ai.completion.0.tool_calls.0.arguments": `{"id":3}`,
		}, "lookup", map[string]any{"id": 3}, nil},
		{"AI SDK toolCalls", map[string]any{
			"ai.operationId":        "ai.generateText.doGenerate",
			"ai.response.toolCalls": `[{"toolCallType":"function","toolCallId":"t1","toolName":"weather","input":"{\"city\":\"Paris\"}"}]`,
			"ai.prompt.tools":       []any{`{"type":"function","name":"weather"}`},
		}, "weather", map[string]any{"city": "Paris"}, []any{"weather"}},
		{"a reply of text only", map[string]any{
			"gen_ai.operation.name":  "chat",
			"gen_ai.output.messages": `[{"role":"assistant","parts":[{"type":"text","content":"done"}]}]`,
		}, nil, nil, nil},
		{"a tool's own span is not a choice", map[string]any{
			"gen_ai.operation.name":   "execute_tool",
			"gen_ai.tool.name":        "x",
			"gen_ai.tool.call.result": `{"tool_calls":[{"function":{"name":"y"}}]}`,
		}, nil, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAssembler(Limits{})
			a.Add(export(map[string]any{"service.name": "svc"},
				spanSpec{trace: 1, id: 1, name: "call", start: 1, attrs: tc.attrs},
				spanSpec{trace: 1, id: 2, name: "after", start: 5, attrs: map[string]any{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "z"}}), t0)
			got := a.Flush()
			if len(got) != 1 || got[0].Err != nil {
				t.Fatalf("%+v", got)
			}
			steps := got[0].Trace.Steps
			if tc.choice == nil {
				if len(steps) != 2 {
					t.Fatalf("%d steps, want the two spans'", len(steps))
				}
				return
			}
			if len(steps) != 3 {
				t.Fatalf("%d steps, want the call, its decision and the tool", len(steps))
			}
			d := steps[1]
			if d.StepID != sid(1)+"-choice" || d.Type != schemas.StepDecision || d.ParentStepID == nil || *d.ParentStepID != sid(1) {
				t.Fatalf("decision %s %s parent %v", d.StepID, d.Type, d.ParentStepID)
			}
			if !reflect.DeepEqual(d.Output["choice"], tc.choice) {
				t.Fatalf("choice %#v, want %#v", d.Output["choice"], tc.choice)
			}
			calls, _ := d.Output["tool_calls"].([]any)
			first, _ := calls[0].(map[string]any)
			if !reflect.DeepEqual(first["arguments"], tc.args) {
				t.Fatalf("arguments %#v, want %#v", first["arguments"], tc.args)
			}
			if !reflect.DeepEqual(d.Input["options"], any(tc.options)) && !(tc.options == nil && d.Input["options"] == nil) {
				t.Fatalf("options %#v, want %#v", d.Input["options"], tc.options)
			}
			// The choice is made when the reply comes: at the call's end.
			if d.Timestamp == nil || *d.Timestamp != t0.Add(1500*time.Millisecond).Format(time.RFC3339Nano) {
				t.Fatalf("decision at %v", d.Timestamp)
			}
		})
	}
}

// An instrumentation that ends a model call's span after the tools it chose ran (the AI
// SDK's legacy spans) still has the choice dated before the tools: sorted by time, as
// the receiver sorts a trace's parts, the decision stays between the call and the tool.
func TestModelChoiceBeforeTools(t *testing.T) {
	td := export(nil,
		spanSpec{trace: 1, id: 1, name: "doGenerate", start: 1, attrs: map[string]any{
			"ai.operationId":        "ai.generateText.doGenerate",
			"ai.response.toolCalls": `[{"toolName":"http_post","input":{}}]`,
		}},
		spanSpec{trace: 1, id: 2, parent: 1, name: "ai.toolCall", start: 2, attrs: map[string]any{"ai.operationId": "ai.toolCall", "ai.toolCall.name": "http_post"}})
	call := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
	call.SetEndTimestamp(pcommon.NewTimestampFromTime(t0.Add(10 * time.Second)))
	a := NewAssembler(Limits{})
	a.Add(td, t0)
	got := a.Flush()
	if len(got) != 1 || len(got[0].Trace.Steps) != 3 {
		t.Fatalf("%+v", got)
	}
	steps := got[0].Trace.Steps
	if ts := steps[1].Timestamp; ts == nil || *ts != t0.Add(2*time.Second).Format(time.RFC3339Nano) {
		t.Fatalf("the choice dated %v, want the tool's start", ts)
	}
	slices.SortStableFunc(steps, func(a, b *schemas.Step) int { return strings.Compare(stampOf(a), stampOf(b)) })
	if steps[1].Type != schemas.StepDecision || steps[2].Type != schemas.StepToolCall {
		t.Fatalf("sorted: %s then %s", steps[1].Type, steps[2].Type)
	}
}

func stampOf(s *schemas.Step) string {
	ts, _ := time.Parse(time.RFC3339Nano, *s.Timestamp)
	return ts.Format("2006-01-02T15:04:05.000000000")
}

// Merging parts sorts by time but keeps a decision right after the model call it was
// made of, wherever its own time falls; a forged source that is not in the trace, or a
// step that is not a decision, is sorted by its time.
func TestSortSteps(t *testing.T) {
	at := func(id, typ string, sec int, from string) *schemas.Step {
		ts := t0.Add(time.Duration(sec) * time.Second).Format(time.RFC3339Nano)
		s := &schemas.Step{StepID: id, Type: typ, Timestamp: &ts, Metadata: map[string]any{}}
		if from != "" {
			s.Metadata[DerivedFrom] = from
		}
		return s
	}
	steps := []*schemas.Step{
		at("tool", schemas.StepToolCall, 2, ""),
		at("llm-choice", schemas.StepDecision, 10, "llm"),
		at("late", schemas.StepToolCall, 5, "llm"),
		at("orphan", schemas.StepDecision, 4, "gone"),
		at("llm", schemas.StepLLMCall, 1, ""),
	}
	stamp := func(s *schemas.Step) int64 {
		ts, _ := time.Parse(time.RFC3339Nano, *s.Timestamp)
		return ts.UnixNano()
	}
	SortSteps(steps, stamp)
	var got []string
	for _, s := range steps {
		got = append(got, s.StepID)
	}
	if want := "llm llm-choice tool orphan late"; strings.Join(got, " ") != want {
		t.Fatalf("order %v, want %s", got, want)
	}
}
