package schemas_test

import (
	"strings"
	"testing"

	"github.com/troy-audit/troy/schemas"
)

func TestStepField(t *testing.T) {
	ts := "2026-01-01T00:00:00Z"
	s := &schemas.Step{StepID: "s", Type: "tool_call", Timestamp: &ts, Metadata: map[string]any{"k": 1}}
	if v, ok := s.Field("timestamp"); !ok || v != ts {
		t.Errorf("timestamp: %v %v", v, ok)
	}
	if _, ok := s.Field("parent_step_id"); ok {
		t.Errorf("absent parent_step_id should be missing")
	}
	if _, ok := s.Field("nope"); ok {
		t.Errorf("unknown fields are missing")
	}
}

func TestCheckID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want string // in the error; empty for a valid id
	}{
		{"", ""},
		{"run-42", ""},
		{"ünï ✓ a.b/c*>", ""},
		{strings.Repeat("z", schemas.MaxIDLength), ""},
		{strings.Repeat("é", schemas.MaxIDLength/2), ""},
		{strings.Repeat("z", schemas.MaxIDLength+1), "257 bytes long, over the 256-byte limit"},
		{strings.Repeat("z", 4100), "4100 bytes long"},
		{"a\nb", "control character U+000A"},
		{"a\x1b[31mred", "control character U+001B"},
		{"a\x7f", "control character U+007F"},
		{"a\u0085", "control character U+0085"},
		{"a\xffb", "not valid UTF-8"},
	} {
		err := schemas.CheckID(tc.id)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckID(%.40q) = %v, want %q", tc.id, err, tc.want)
		}
	}
}
