package mcpproxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/localguard"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/agent"
)

// Guard checks and records the steps of one MCP session: a guard in this process, or a
// deployment's guard service.
type Guard interface {
	// Check asks whether the step may be taken; a blocked step in enforce mode returns an
	// *agent.BlockedError, a guard that cannot answer an *agent.UnavailableError.
	Check(ctx context.Context, action string, input, metadata map[string]any, stepType string) (schemas.Decision, error)
	// RecordOutput records a checked step's result.
	RecordOutput(ctx context.Context, stepID string, output map[string]any) error
	// Session is the guard session's id: the trace's.
	Session() string
	// Finish ends the session (scored and reported, unless it is shared with other
	// proxies) and releases what the guard holds.
	Finish(ctx context.Context) (Report, error)
}

// Report says where a session's report is: files written here, or the deployment's.
type Report struct {
	Markdown, JSON string // the files this process wrote; empty otherwise
	Agent          string // the session's agent
	Deployment     bool   // the deployment writes the report (remote guard)
	Shared         bool   // the session is shared and was not ended here
}

// Guards start the guard of each MCP session, for the agent named.
type Guards interface {
	Start(ctx context.Context, agent string) (Guard, error)
}

// LocalGuards guard every session in this process (localguard), each with its own record
// and report.
type LocalGuards struct {
	Policy *evaluator.Compiled
	// Options of each session's guard; Agent is the session's, Session made up when empty.
	Options localguard.Options
	// ReportDir receives report.md and audit.json; empty: the data directory's
	// reports/<agent>/<session>/. Meant for one session (stdio).
	ReportDir string
}

// Start starts a session's local guard.
func (l LocalGuards) Start(ctx context.Context, agentName string) (Guard, error) {
	if l.Policy == nil {
		return nil, errors.New("mcp: no policy")
	}
	opts := l.Options
	opts.Agent = agentName
	g, err := localguard.New(ctx, l.Policy, opts)
	if err != nil {
		return nil, err
	}
	return &localGuard{Guard: g, dir: l.ReportDir, agent: agentName}, nil
}

type localGuard struct {
	*localguard.Guard
	dir   string
	agent string
}

func (g *localGuard) Finish(ctx context.Context) (Report, error) {
	rep, err := g.EndReport(ctx, g.dir)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return Report{Markdown: rep.Markdown, JSON: rep.JSON, Agent: g.agent}, errors.Join(err, g.Close(cctx))
}

// RemoteGuards guard every session with a deployment's guard service (troyctl serve).
type RemoteGuards struct {
	Conn *agent.Conn
	// Options of each session's guard (policy hash, mode, timeout, fail-open); Agent and
	// Session are set per session.
	Options agent.GuardOptions
	// Session, when set, is one guard session that every proxy naming it shares, so
	// that rules span the tools of several servers: a secret read through one and an
	// upload through another. A shared session is not ended when a client disconnects;
	// the deployment ends it after its idle timeout, or a guard's End does.
	Session string
}

// Start starts a session's guard on the deployment.
func (r RemoteGuards) Start(_ context.Context, agentName string) (Guard, error) {
	opts := r.Options
	opts.Agent = agentName
	opts.Session = r.Session
	if opts.Session == "" {
		opts.Session = newSessionID()
	} else {
		opts.Resume = true // other proxies may have checked steps in it already
	}
	return &remoteGuard{Guard: r.Conn.Guard(opts), session: opts.Session, agent: agentName, shared: r.Session != ""}, nil
}

type remoteGuard struct {
	*agent.Guard
	session, agent string
	shared         bool
}

func (g *remoteGuard) Session() string { return g.session }

func (g *remoteGuard) Finish(ctx context.Context) (Report, error) {
	rep := Report{Agent: g.agent, Deployment: true, Shared: g.shared}
	if g.shared {
		return rep, nil
	}
	return rep, g.End(ctx)
}

// newSessionID names a session the proxy starts: sortable by time, unique across proxies.
func newSessionID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "mcp-" + time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
}
