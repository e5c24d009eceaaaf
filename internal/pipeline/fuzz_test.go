package pipeline_test

import (
	"strings"
	"testing"

	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/schemas/pyjson"
)

// The guard's request decoder never panics, answers every bad request with one line, and
// what it accepts is a valid request whose values encode again.
func FuzzDecodeCheck(f *testing.F) {
	for _, seed := range []string{
		`{"session": "s", "agent": "a", "step": {"action": "pay", "input": {"amount": 1e999999}}}`,
		`{"session": "s", "agent": "a", "seq": 3, "mode": "monitor", "step": {"action": "x", "type": "llm_call", "metadata": {"n": NaN, "m": -Infinity, "big": 123456789012345678901234567890}}}`,
		`{"session": "s", "step": {"action": "x", "input": {"a": [1, 2.5, -0, -0.0, 1E5, "NaN"]}}, "agent_metadata": {"k": {"l": null}}}`,
		`{"session": "", "step": {}}`,
		`{"session": "s", "step": {"action": "x", "type": "tool"}}`,
		`{"session": "s", "step": {"action": "x"}, "seq": -1}`,
		`[1, 2]`,
		`{"session": "s", "step": {"action": "x", "input": {"a": -NaN}}}`,
		`{"session": "s"`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := pipeline.DecodeCheck(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("a multi-line error: %q", err)
			}
			return
		}
		if req.Session == "" || req.Step.Action == "" || req.Mode == "" || req.Step.Type == "" {
			t.Fatalf("accepted an invalid request: %+v", req)
		}
		if _, err := pyjson.Marshal(req); err != nil {
			t.Fatalf("an accepted request does not encode: %v", err)
		}
	})
}
