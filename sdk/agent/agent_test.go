package agent_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/agent"
)

// unconnected is a client whose server is not there yet: nothing it sends can arrive, so
// what it refuses, it refuses before sending.
func unconnected(t *testing.T) *agent.Conn {
	t.Helper()
	nc, err := nats.Connect("nats://127.0.0.1:1", nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return agent.New(nc)
}

// The publisher refuses ids troy would refuse, before sending anything.
func TestTraceRefusesIDsTroyRefuses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn := unconnected(t)
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
}

// A check nobody answers is a refusal, unless the guard was built to fail open; either
// way the error says troy could not answer.
func TestUnansweredCheckFollowsFailOpen(t *testing.T) {
	conn := unconnected(t)
	for _, failOpen := range []bool{false, true} {
		g := conn.Guard(agent.GuardOptions{Session: "s", Agent: "bot", Timeout: 50 * time.Millisecond, FailOpen: failOpen})
		d, err := g.Check(context.Background(), "ls", nil, nil, schemas.StepToolCall)
		var unavailable *agent.UnavailableError
		if !strings.Contains(err.Error(), "troy guard unavailable") || !errors.As(err, &unavailable) || d.Allowed != failOpen {
			t.Errorf("fail open %v: allowed %v, %v", failOpen, d.Allowed, err)
		}
	}
}

// Connect needs a URL, and says so.
func TestConnectNeedsAURL(t *testing.T) {
	if _, err := agent.Connect(context.Background(), agent.Options{}); err == nil || !strings.Contains(err.Error(), "a NATS URL is required") {
		t.Fatalf("got %v", err)
	}
}
