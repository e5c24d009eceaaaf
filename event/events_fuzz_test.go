package event

import (
	"testing"

	"github.com/troy-audit/troy/schemas"
)

// FuzzReadBack feeds what a stage reads back from the streams (a trace's step and output
// events, a verdict's parts, subject tokens) with bodies that are anything: nothing
// panics, a verdict is whole or an error, and subject tokens stay reversible.
//
//	go test ./event -run XXX -fuzz FuzzReadBack -fuzztime 10m
func FuzzReadBack(f *testing.F) {
	f.Add([]byte(`{"trace_id":"t","agent_name":"a","run":"r","seq":0,"step":{"step_id":"s0","type":"tool_call","description":"d"}}`),
		[]byte(`{"trace_id":"t","run":"r","part":0,"first":0,"violations":[{"rule_id":"x"}]}`), "a.b c", 1)
	f.Add([]byte(`{"run":"r","seq":-1,"step":{}}`), []byte(`{"run":"r","part":5,"first":-3,"violations":null}`), "~zz", 2)
	f.Add([]byte(`{"run":"r","step_id":"s0","output":{"n":NaN}}`), []byte(`{"run":"r","part":0,"first":1,"violations":[{}]}`), "~", 0)
	f.Fuzz(func(t *testing.T, data, part []byte, id string, parts int) {
		for _, kind := range []Kind{KindStep, KindOutput} {
			a := NewAssembler("r")
			_ = a.Add(Envelope{Kind: kind, Data: data})
			if tr, err := a.Trace(); err == nil && len(tr.Steps) == 0 {
				t.Fatal("a trace without steps")
			}
		}
		ev := &Evaluated{TraceRef: TraceRef{Run: "r"}, Parts: parts % 8, Violations: parts % 5}
		c := NewVerdictCollector(ev)
		_ = c.Add(Envelope{Kind: KindVerdict, Data: part})
		if vs, err := c.Violations(); err == nil && len(vs) != ev.Violations {
			t.Fatalf("a verdict of %d violations, counted %d", len(vs), ev.Violations)
		}
		if back, err := schemas.ParseToken(schemas.Token(id)); err != nil || back != id {
			t.Fatalf("%q: token %q reads back as %q (%v)", id, schemas.Token(id), back, err)
		}
		_, _ = schemas.ParseToken(id)
	})
}
