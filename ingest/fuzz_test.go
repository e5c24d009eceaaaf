package ingest

import (
	"strings"
	"testing"

	"github.com/troy-audit/troy/schemas/pyjson"
)

// The trace decoder never panics, refuses with one line, and a trace it accepts is
// written by pyjson and read back to the same document.
func FuzzDecodeTrace(f *testing.F) {
	for _, seed := range []string{
		`{"trace_id": "t", "agent_name": "a", "steps": [{"step_id": "s1", "type": "tool_call", "description": "d", "input": {"n": 1e999999, "m": NaN, "big": 123456789012345678901234567890}, "output": {}, "metadata": {"x": -Infinity, "f": 5.0, "z": -0}}]}`,
		`{"trace_id": "t", "agent_name": "a", "steps": [{"step_id": "s1", "type": "llm_call", "description": "d", "timestamp": "2026-01-01T00:00:00Z", "parent_step_id": null}], "metadata": {"k": [1, 2.5, "NaN"]}}`,
		`{"trace_id": "t", "agent_name": "a", "steps": []}`,
		`{"trace_id": "t", "steps": [{"step_id": "s1", "type": "tool", "description": "d"}]}`,
		`{"trace_id": "t", "agent_name": "a", "steps": [{"step_id": "s1", "type": "tool_call", "description": "d", "input": {"n": -NaN}}]}`,
		"\xef\xbb\xbf{\"trace_id\": 1}",
		`{"trace_id": "t"} {}`,
		`[`,
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := DecodeTrace(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("a multi-line error: %q", err)
			}
			return
		}
		out, err := pyjson.Marshal(tr)
		if err != nil {
			t.Fatalf("an accepted trace does not encode: %v", err)
		}
		back, err := DecodeTrace(out)
		if err != nil {
			t.Fatalf("the trace written does not read back: %v\n%s", err, out)
		}
		again, err := pyjson.Marshal(back)
		if err != nil || string(again) != string(out) {
			t.Fatalf("written twice differently:\n%s\n%s", out, again)
		}
	})
}
