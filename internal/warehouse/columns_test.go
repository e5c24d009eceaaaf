package warehouse

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
)

type embedded struct {
	k1 string `ch:"k1"`
	k2 uint32 `ch:"k2"`
}

type everyColumn struct {
	embedded
	s   string    `ch:"s"`
	b   uint8     `ch:"b"`
	w   uint16    `ch:"w"`
	n   uint32    `ch:"n"`
	v   uint64    `ch:"v"`
	ts  time.Time `ch:"ts"`
	arr []string  `ch:"a.key"`
}

type untagged struct {
	s string `ch:"s"`
	t string
}

type signed struct {
	n int `ch:"n"`
}

type embeddedUntagged struct {
	embedded
	untagged
}

func TestPlanColumns(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rows := []everyColumn{
		{embedded{"a", 9}, "x", 1, 2, 3, 4, at, []string{"k"}},
		{embedded{"b", 10}, "y", 5, 6, 7, 8, at.Add(time.Second), nil},
	}
	c := mustPlan[everyColumn]().columns(rows)
	wantNames := []string{"k1", "k2", "s", "b", "w", "n", "v", "ts", "a.key"}
	wantData := []any{
		[]string{"a", "b"}, []uint32{9, 10},
		[]string{"x", "y"}, []uint8{1, 5}, []uint16{2, 6}, []uint32{3, 7}, []uint64{4, 8},
		[]time.Time{at, at.Add(time.Second)}, [][]string{{"k"}, nil},
	}
	if !reflect.DeepEqual(c.names, wantNames) {
		t.Errorf("names = %v, want %v", c.names, wantNames)
	}
	if !reflect.DeepEqual(c.data, wantData) {
		t.Errorf("data = %#v, want %#v", c.data, wantData)
	}
	if empty := mustPlan[everyColumn]().columns(nil); len(empty.data) != len(wantNames) || len(empty.data[2].([]string)) != 0 {
		t.Errorf("no rows: %#v", empty.data)
	}
}

func TestPlanRefusesRowTypes(t *testing.T) {
	tests := []struct {
		name string
		plan func() error
		want string
	}{
		{"untagged field", func() error { _, err := newPlan[untagged](); return err }, "field t: no ch tag"},
		{"unsupported type", func() error { _, err := newPlan[signed](); return err }, "field n: no column of type int"},
		{"untagged field of an embedded struct", func() error { _, err := newPlan[embeddedUntagged](); return err }, "embeddedUntagged, field t: no ch tag"},
		{"not a struct", func() error { _, err := newPlan[string](); return err }, "not a struct"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.plan(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one saying %q", err, tt.want)
			}
		})
	}
}

// The sink's step event is event.Step with the step's input and output as JSON:
// every other field must decode as the shared type does.
func TestStepEventDecodes(t *testing.T) {
	ts, parent := "2026-01-01T00:00:00Z", "s0"
	ref := event.TraceRef{TraceID: "t", AgentName: "a", Policy: "p", Run: "r"}
	tests := []struct {
		name               string
		step               schemas.Step
		wantIn, wantOut    string
		wantTS, wantParent bool
	}{
		{"full", schemas.Step{StepID: "s1", Type: schemas.StepToolCall, Description: "d", Input: map[string]any{"q": 1.0, "b": []any{1}},
			Output: map[string]any{"o": "x"}, Metadata: map[string]any{"k": 2}, Timestamp: &ts, ParentStepID: &parent},
			`{"b":[1],"q":1.0}`, `{"o":"x"}`, true, true},
		{"bare", schemas.Step{StepID: "s2", Type: schemas.StepLLMCall}, "{}", "{}", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := event.New(event.Step{TraceRef: ref, TraceMetadata: map[string]any{"env": "prod"}, Seq: 3, Step: &tt.step})
			if err != nil {
				t.Fatal(err)
			}
			var ev stepEvent
			if err := pyjson.Unmarshal(e.Data, &ev); err != nil {
				t.Fatal(err)
			}
			want, err := event.Decode[event.Step](e)
			if err != nil {
				t.Fatal(err)
			}
			want.Step.Input, want.Step.Output = nil, nil
			got := ev.stepPayload
			got.Step = &ev.Step.Step
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decoded %+v, want %+v", got, want)
			}
			if in, out := jsonText(ev.Step.Input), jsonText(ev.Step.Output); in != tt.wantIn || out != tt.wantOut {
				t.Errorf("input %s, output %s; want %s, %s", in, out, tt.wantIn, tt.wantOut)
			}
			if (ev.Step.Timestamp != nil) != tt.wantTS || (ev.Step.ParentStepID != nil) != tt.wantParent {
				t.Errorf("timestamp %v, parent %v", ev.Step.Timestamp, ev.Step.ParentStepID)
			}
		})
	}
}
