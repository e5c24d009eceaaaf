package localguard_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/troy-audit/troy/localguard"
	"github.com/troy-audit/troy/sdk/agent"
	"github.com/troy-audit/troy/sdk/servetest"
	"github.com/troy-audit/troy/sdk/wire"
)

// With only an agent's credential, a local guard still forwards its record to a serve
// that requires credentials: the policy bucket refuses the agent, so the policy goes
// through the guard service, which stores it under its content hash; the deployment then
// audits the session with it.
func TestLocalGuardForwardsWithAnAgentCredential(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := servetest.StartAuth(t)
	creds := s.Creds(t, "agent", "bot")
	c := compilePolicy(t, testPolicy)
	g, err := localguard.New(ctx, c, localguard.Options{Session: "agent-creds", Agent: "bot", DataDir: t.TempDir(),
		Forward: agent.Options{URL: s.NATS, Auth: wire.Auth{CredsFile: creds}}})
	if err != nil {
		t.Fatal(err)
	}
	for i, cc := range checkCases {
		d, err := g.Check(ctx, cc.action, cc.input, cc.metadata, "")
		var blocked *agent.BlockedError
		if err != nil && !errors.As(err, &blocked) {
			t.Fatalf("check %d: %v", i, err)
		}
		if err := g.RecordOutput(ctx, d.StepID, map[string]any{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.End(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(ctx); err != nil { // waits until the deployment acknowledged everything
		t.Fatalf("%v\n%s", err, s.Log())
	}
	steps, audit := s.Steps(t, "agent-creds")
	if len(steps) != len(checkCases) || audit.Trace.AgentName != "bot" {
		t.Fatalf("the deployment's report has %d steps of agent %q, want %d of bot", len(steps), audit.Trace.AgentName, len(checkCases))
	}
	if audit.Info == nil || audit.Info.PolicyHash != c.Hash() {
		t.Fatalf("audited with policy %+v, want the local guard's %s", audit.Info, c.Hash())
	}
}
