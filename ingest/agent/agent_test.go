package agent_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/bus"
	"github.com/troy-audit/troy/ingest/agent"
	"github.com/troy-audit/troy/schemas"
)

// The publisher refuses ids troy would refuse, before sending anything.
func TestTraceRefusesIDsTroyRefuses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	conn := agent.On(b)
	step := &schemas.Step{StepID: "s1", Type: schemas.StepToolCall, Description: "ls"}
	for _, tc := range []struct {
		trace, agent, step, want string
	}{
		{strings.Repeat("z", 4100), "bot", "s1", "trace_id: 4100 bytes long"},
		{"t", "bot\n", "s1", "agent_name: holds the control character U+000A"},
		{"t", "bot", strings.Repeat("s", 300), "step_id: 300 bytes long"},
	} {
		step.StepID = tc.step
		err := conn.StartTrace(tc.trace, tc.agent, nil, "").Step(ctx, step)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("trace %.20q, agent %q, step %.20q: %v, want %q", tc.trace, tc.agent, tc.step, err, tc.want)
		}
	}
	if !b.Connected() {
		t.Fatal("the connection was lost")
	}
}
