package evaluate_test

import (
	"context"
	"errors"
	"testing"

	"github.com/troy-audit/troy/event"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/evaltest"
	"github.com/troy-audit/troy/internal/pipeline/evaluate"
)

// FuzzStageEvents feeds the evaluator stage events whose bodies are anything (as any
// publisher on troy.steps.> could send): it never panics, an event it cannot use is a
// permanent error (dead-lettered, not retried forever), and what it emits is well formed
// and within the part limit.
//
//	go test ./pipeline/evaluate -run XXX -fuzz FuzzStageEvents -fuzztime 10m
func FuzzStageEvents(f *testing.F) {
	step := `{"trace_id":"t","agent_name":"a","run":"r","seq":0,"step":{"step_id":"s0","type":"tool_call","description":"bash","input":{"cmd":"ls"}}}`
	f.Add([]byte(step), []byte(`{"trace_id":"t","agent_name":"a","run":"r","step_id":"s0","output":{"x":1}}`), []byte(`{"trace_id":"t","agent_name":"a","run":"r","steps":1}`), byte(0))
	f.Add([]byte(`{"trace_id":"t","seq":0,"step":{"step_id":"\u0000","type":"llm_call"}}`), []byte(`{}`), []byte(`{"steps":-1}`), byte(1))
	f.Add([]byte(`{"trace_id":"t","seq":1e999999,"step":null}`), []byte(`[]`), []byte(`{"trace_id":"t","steps":99999999999}`), byte(2))
	f.Add([]byte(`{"trace_id":"`+string(make([]byte, 300))+`","seq":0}`), []byte(`nul`), []byte(`{"trace_id":"t","agent_name":"a","steps":1,"reason":"idle"}`), byte(3))
	c, err := evaluator.Compile(evaltest.PolicyOf("step.type == 'tool_call' and step.description == 'bash'", "any(next_steps, .type == 'llm_call')", "len(prev_steps) > 0"))
	if err != nil {
		f.Fatal(err)
	}
	kinds := []event.Kind{event.KindStep, event.KindOutput, event.KindEnd, "telemetry"}
	f.Fuzz(func(t *testing.T, first, second, third []byte, order byte) {
		s := &stream{}
		subject := event.StepsSubject("a", "t")
		for i, data := range [][]byte{first, second, third} {
			kind := kinds[(int(order)>>(2*i))&3]
			if i == 0 && order&64 == 0 {
				kind = event.KindStep
			}
			s.events = append(s.events, event.Envelope{Subject: subject, Kind: kind, Data: data, Seq: uint64(i + 1)})
		}
		stage := evaluate.NewStage(policyFunc(c), s.read)
		for _, in := range s.events {
			out, err := stage.Handle(context.Background(), in)
			var perm *event.Permanent
			if err != nil && in.Kind == "telemetry" && !errors.As(err, &perm) {
				t.Fatalf("an unknown kind is not permanent: %v", err)
			}
			for _, o := range out {
				if len(o.Data) > event.MaxPartSize || o.Subject == "" || o.Kind == "" {
					t.Fatalf("emitted %s on %q of %d bytes", o.Kind, o.Subject, len(o.Data))
				}
			}
		}
	})
}
