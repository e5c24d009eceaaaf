package otel

import (
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// singleSpans splits the exports of an OTLP JSON file into one export per span, each with
// its resource and scope.
func singleSpans(t *testing.T, path string) []ptrace.Traces {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []ptrace.Traces
	for _, line := range splitLines(data) {
		td, err := DecodeJSON(line)
		if err != nil {
			t.Fatal(err)
		}
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, sp := range ss.Spans().All() {
					one := ptrace.NewTraces()
					r := one.ResourceSpans().AppendEmpty()
					rs.Resource().CopyTo(r.Resource())
					s := r.ScopeSpans().AppendEmpty()
					ss.Scope().CopyTo(s.Scope())
					sp.CopyTo(s.Spans().AppendEmpty())
					out = append(out, one)
				}
			}
		}
	}
	return out
}

// stepIDs lists every step id of the traces taken, with repeats.
func stepIDs(t *testing.T, traces []Trace) []string {
	t.Helper()
	var ids []string
	for _, tr := range traces {
		if tr.Err != nil {
			t.Fatalf("trace %s: %v", tr.TraceID, tr.Err)
		}
		for _, s := range tr.Trace.Steps {
			ids = append(ids, s.StepID)
		}
	}
	slices.Sort(ids)
	return ids
}

// Spans in any order, each sent up to three times, give the trace the file gives in
// order: the same steps, parents and order.
func TestAssembleAnyOrderWithDuplicates(t *testing.T) {
	const path = "testdata/genai-agent.otlp.jsonl"
	data, _ := os.ReadFile(path)
	want, _ := assembleLines(t, data)
	spans := singleSpans(t, path)
	for seed := range uint64(50) {
		r := rand.New(rand.NewPCG(seed, 1))
		var feed []ptrace.Traces
		for _, s := range spans {
			for range 1 + r.IntN(3) {
				feed = append(feed, s)
			}
		}
		r.Shuffle(len(feed), func(i, j int) { feed[i], feed[j] = feed[j], feed[i] })
		a := NewAssembler(Limits{})
		for _, td := range feed {
			if res := a.Add(td, t0); res.Err != nil {
				t.Fatal(res.Err)
			}
		}
		got := a.Flush()
		if len(got) != len(want) {
			t.Fatalf("seed %d: %d traces, want %d", seed, len(got), len(want))
		}
		for i := range want {
			if !traceEqual(got[i], want[i]) {
				t.Fatalf("seed %d: trace %d differs", seed, i)
			}
		}
		if st := a.Stats(); st.Duplicates != int64(len(feed)-len(spans)) || st.Steps != 8 || st.Ignored != 2 {
			t.Fatalf("seed %d: %+v (fed %d, %d distinct)", seed, st, len(feed), len(spans))
		}
	}
}

func traceEqual(a, b Trace) bool {
	if a.Err != nil || b.Err != nil || a.Trace.TraceID != b.Trace.TraceID || a.Trace.AgentName != b.Trace.AgentName || len(a.Trace.Steps) != len(b.Trace.Steps) {
		return false
	}
	for i, s := range a.Trace.Steps {
		o := b.Trace.Steps[i]
		if s.StepID != o.StepID || s.Type != o.Type || s.Description != o.Description || (s.ParentStepID == nil) != (o.ParentStepID == nil) ||
			(s.ParentStepID != nil && *s.ParentStepID != *o.ParentStepID) {
			return false
		}
	}
	return true
}

// A trace is taken when its root arrives; spans after that come out as late parts with
// their steps only, and spans already taken, retried, are duplicates: every step span
// comes out exactly once.
func TestAssembleLateSpans(t *testing.T) {
	spans := singleSpans(t, "testdata/openinference.otlp.jsonl")
	// The SDK exports a span when it ends: the root (the agent) is last. Send it first.
	root := spans[len(spans)-1]
	rest := spans[:len(spans)-1]
	a := NewAssembler(Limits{})
	a.Add(root, t0)
	a.Add(rest[0], t0)
	first := a.Ready()
	// The model call and the decision its reply made (a tool call).
	if len(first) != 1 || first[0].Late || len(first[0].Trace.Steps) != 2 {
		t.Fatalf("first part: %+v", first)
	}
	all := slices.Clone(first)
	for _, td := range rest[1:] {
		a.Add(td, t0)
	}
	// The trace was taken at its root: the late part is ready at once, with nothing to
	// wait for (the receiver holds it for stragglers).
	late := a.Ready()
	if len(late) != 1 || !late[0].Late || late[0].TraceID != first[0].TraceID {
		t.Fatalf("late part: %+v", late)
	}
	all = append(all, late...)
	// The whole export retried: all duplicates, nothing comes out.
	for _, td := range spans {
		a.Add(td, t0)
	}
	if got := a.Flush(); len(got) != 0 {
		t.Fatalf("a retry came out again: %+v", got)
	}
	ids := stepIDs(t, all)
	if len(ids) != 5 || len(slices.Compact(slices.Clone(ids))) != 5 {
		t.Fatalf("step ids %v", ids)
	}
	if st := a.Stats(); st.Late != 4 || st.Duplicates != int64(len(spans)) {
		t.Fatalf("%+v", st)
	}
}

// A late step whose parent step was in the part taken before keeps that parent.
func TestAssembleLateParent(t *testing.T) {
	a := NewAssembler(Limits{})
	a.Add(export(nil,
		spanSpec{trace: 1, id: 1, name: "tool", attrs: map[string]any{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "t"}}), t0)
	if got := a.Ready(); len(got) != 1 {
		t.Fatalf("%+v", got)
	}
	a.Add(export(nil,
		spanSpec{trace: 1, id: 2, parent: 1, name: "chat", attrs: map[string]any{"gen_ai.operation.name": "chat"}},
		spanSpec{trace: 1, id: 3, parent: 9, name: "chat", attrs: map[string]any{"gen_ai.operation.name": "chat"}}), t0)
	got := a.Flush()
	if len(got) != 1 || !got[0].Late || len(got[0].Trace.Steps) != 2 {
		t.Fatalf("%+v", got)
	}
	if p := got[0].Trace.Steps[0].ParentStepID; p == nil || *p != sid(1) {
		t.Fatalf("parent %v", p)
	}
	if p := got[0].Trace.Steps[1].ParentStepID; p != nil {
		t.Fatalf("an unknown parent kept: %v", *p)
	}
}

// Past MaxPendingBytes the oldest open traces are closed; a trace with no step is dropped
// and counted; spans without ids are refused.
func TestAssembleBounds(t *testing.T) {
	a := NewAssembler(Limits{MaxPendingBytes: 1000})
	for i := byte(1); i <= 10; i++ {
		a.Add(export(nil, spanSpec{trace: i, id: 1, parent: 7, name: "c", attrs: map[string]any{"gen_ai.operation.name": "chat"}}), t0)
	}
	got := a.Ready()
	if len(got) == 0 || got[0].TraceID != traceID(1).String() || a.pendingBytes > 1000 {
		t.Fatalf("%d taken, %d bytes pending", len(got), a.pendingBytes)
	}
	a.Add(export(map[string]any{"service.name": "billing"}, spanSpec{trace: 20, id: 1, name: "GET /", attrs: map[string]any{"http.route": "/"}}), t0)
	if got := a.Ready(); len(got) != 0 || a.Stats().EmptyTraces != 1 || a.Stats().Ignored != 1 {
		t.Fatalf("%+v %+v", got, a.Stats())
	}
	td := export(nil, spanSpec{trace: 0, id: 1, name: "x"}, spanSpec{trace: 3, id: 0, name: "y"})
	res := a.Add(td, t0)
	if res.Rejected != 2 || res.Err == nil || res.Err.Error() != "resourceSpans[0].scopeSpans[0].spans[0].traceId: expected a 16-byte trace id, got none" {
		t.Fatalf("%+v", res)
	}
}

// Forged parents in a cycle end.
func TestAssembleParentCycle(t *testing.T) {
	a := NewAssembler(Limits{})
	a.Add(export(nil,
		spanSpec{trace: 1, id: 1, parent: 2, name: "a", attrs: map[string]any{"openinference.span.kind": "CHAIN"}},
		spanSpec{trace: 1, id: 2, parent: 1, name: "b", attrs: map[string]any{"openinference.span.kind": "CHAIN"}},
		spanSpec{trace: 1, id: 3, parent: 1, name: "c", attrs: map[string]any{"openinference.span.kind": "LLM"}}), t0)
	got := a.Flush()
	if len(got) != 1 || len(got[0].Trace.Steps) != 1 || got[0].Trace.Steps[0].ParentStepID != nil {
		t.Fatalf("%+v", got)
	}
}
