package mcpproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"unicode"

	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
	"github.com/troy-audit/troy/sdk/agent"
)

// server is what the sessions of one proxied server share.
type server struct {
	name   string // metadata mcp_server
	agent  string // the agent of every session when set; else each client's name
	guards Guards
	prints *toolPrints
	log    *slog.Logger
}

// pending is a request of the client in flight to the server that the proxy waits on.
type pending struct {
	method string
	stepID string // tools/call: the checked step
	tool   string
}

// session is one MCP session: its guard (started at the first message that needs it),
// and the requests whose answers it waits on. The transports (stdio, HTTP) hand it each
// message both ways; it says what to forward and answers what it blocks.
type session struct {
	srv   *server
	agent string // overrides srv.agent: the agent an HTTP token is scoped to

	mu       sync.Mutex
	g        Guard
	client   string             // clientInfo.name of initialize
	inFlight map[string]pending // by id
}

func newSession(srv *server, agentName string) *session {
	return &session{srv: srv, agent: agentName, inFlight: map[string]pending{}}
}

// guard returns the session's guard, starting it at the first message that needs it: the
// agent is known from initialize by then.
func (s *session) guard(ctx context.Context) (Guard, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.g != nil {
		return s.g, nil
	}
	name := s.agent
	if name == "" {
		name = s.srv.agent
	}
	if name == "" {
		name = idText(s.client)
	}
	if name == "" {
		name = DefaultAgent
	}
	g, err := s.srv.guards.Start(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("mcp: start the guard: %w", err)
	}
	s.g = g
	s.srv.log.Info("mcp: session started", "session", g.Session(), "agent", name, "server", s.srv.name)
	return g, nil
}

// end ends the session (its report written) and releases its guard; a session that took
// no step has nothing to end.
func (s *session) end(ctx context.Context) (Result, error) {
	s.mu.Lock()
	g := s.g
	s.g = nil
	s.mu.Unlock()
	if g == nil {
		return Result{}, nil
	}
	ctx = context.WithoutCancel(ctx) // the reports are written after a signal too
	res := Result{Session: g.Session()}
	rep, err := g.Finish(ctx)
	res.Report = rep
	if err == nil {
		s.srv.log.Info("mcp: session ended", "session", res.Session, "report", rep.Markdown, "audit", rep.JSON)
	}
	return res, err
}

// idText makes a client's name usable as an id: printable, and not over the limit.
func idText(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return -1
		}
		return r
	}, strings.TrimSpace(s))
	for len(s) > schemas.MaxIDLength {
		s = s[:len(s)-1]
	}
	return strings.ToValidUTF8(s, "")
}

// fromClient handles one message of the client: forward says whether it goes on to the
// server; reply, when not nil, is the proxy's own answer to the client. An error ends the
// session.
func (s *session) fromClient(ctx context.Context, data []byte) (forward bool, reply []byte, err error) {
	m, err := decode(data)
	if err != nil {
		// What the proxy cannot read is not relayed: the server might read it otherwise.
		s.srv.log.Warn("mcp: client message refused", "err", err)
		code := codeParse
		if m.id != nil {
			code = codeInvalidRequest // it parsed, and its id gets the answer
		}
		return false, encodeReply(s.srv.log, errorResponse(m.id, code, "troy: "+err.Error())), nil
	}
	switch {
	case m.batch && m.calls > 0:
		s.srv.log.Warn("mcp: a batch holding tools/call refused", "calls", m.calls)
		return false, encodeReply(s.srv.log, errorResponse(nil, codeInvalidRequest, "troy: tools/call in a batch is not supported; send tool calls one at a time")), nil
	case m.method == methodInitialize:
		s.mu.Lock()
		s.client = clientName(m.params)
		s.mu.Unlock()
	case m.method == methodCall:
		return s.call(ctx, m)
	case m.method == methodList && m.id != nil:
		if _, err := s.guard(ctx); err != nil {
			return false, nil, err
		}
		s.mu.Lock()
		if len(s.inFlight) < maxInFlight { // past it the list is relayed unrecorded
			s.inFlight[m.idKey()] = pending{method: methodList}
		}
		s.mu.Unlock()
	}
	return true, nil, nil
}

// maxInFlight bounds the requests a session waits on: each is kept until its answer,
// which a server may never give.
const maxInFlight = 4096

// call checks a tools/call; a blocked call is answered here and not forwarded.
func (s *session) call(ctx context.Context, m message) (bool, []byte, error) {
	g, err := s.guard(ctx)
	if err != nil {
		return false, nil, err
	}
	answer := func(v rpcResponse) []byte {
		if m.id == nil { // a notification gets no answer
			return nil
		}
		return encodeReply(s.srv.log, v)
	}
	s.mu.Lock()
	busy := len(s.inFlight) >= maxInFlight
	s.mu.Unlock()
	if busy {
		return false, answer(errorResponse(m.id, codeInvalidRequest, fmt.Sprintf("troy: %d requests are waiting for the server's answers; send more when they are answered", maxInFlight))), nil
	}
	c, err := decodeCall(m.params)
	if err != nil {
		return false, answer(errorResponse(m.id, -32602, "troy: "+err.Error())), nil
	}
	meta := map[string]any{"mcp_server": s.srv.name, "mcp_tool": c.name}
	d, err := g.Check(ctx, c.name, c.args, meta, schemas.StepToolCall)
	var blocked *agent.BlockedError
	var unavailable *agent.UnavailableError
	switch {
	case err == nil:
	case errors.As(err, &blocked):
		s.srv.log.Warn("mcp: tool call blocked", "tool", c.name, "step", d.StepID, "reason", reason(d))
		return false, answer(blockedResult(m.id, "troy blocked this tool call: "+reason(d))), nil
	case errors.As(err, &unavailable) && d.Allowed:
		s.srv.log.Error("mcp: tool call not checked; allowed (fail open)", "tool", c.name, "err", err)
	default:
		s.srv.log.Error("mcp: tool call not checked; blocked", "tool", c.name, "err", err)
		return false, answer(blockedResult(m.id, "troy could not check this tool call: "+err.Error())), nil
	}
	if m.id != nil && d.StepID != "" {
		s.mu.Lock()
		s.inFlight[m.idKey()] = pending{method: methodCall, stepID: d.StepID, tool: c.name}
		s.mu.Unlock()
	}
	return true, nil, nil
}

// reason is the policy's reason for a blocked decision: its violations' rules and
// descriptions.
func reason(d schemas.Decision) string {
	var parts []string
	for _, v := range d.Violations {
		parts = append(parts, fmt.Sprintf("%s (%s): %s", v.RuleID, v.Severity, v.RuleDescription))
	}
	for _, e := range d.RuleErrors {
		parts = append(parts, fmt.Sprintf("%s could not be evaluated: %s", e.RuleID, e.Error))
	}
	if len(parts) == 0 {
		return "the policy does not allow it"
	}
	return strings.Join(parts, "; ")
}

// fromServer reads one message of the server on its way to the client, recording the
// answers to the requests the session waits on. It never stops the message.
func (s *session) fromServer(ctx context.Context, data []byte) {
	m, err := decode(data)
	if err != nil || !m.isResponse() {
		return
	}
	s.mu.Lock()
	req, ok := s.inFlight[m.idKey()]
	delete(s.inFlight, m.idKey())
	g := s.g
	s.mu.Unlock()
	if !ok || g == nil {
		return
	}
	switch req.method {
	case methodCall:
		output, err := outputOf(m)
		if err == nil {
			err = g.RecordOutput(ctx, req.stepID, output)
		}
		if err != nil {
			s.srv.log.Warn("mcp: tool result not recorded", "tool", req.tool, "step", req.stepID, "err", err)
		}
	case methodList:
		if m.result == nil {
			return
		}
		tools, err := toolsOf(m.result)
		if err != nil {
			s.srv.log.Warn("mcp: tools/list result not recorded", "err", err)
			return
		}
		s.observeTools(ctx, g, tools)
	}
}

// unread notes that the answer with id (nil: not known) was over the limit and relayed
// unread: a tools/call's step gets an output that says so, so that its report does not
// read as if the call had answered nothing.
func (s *session) unread(ctx context.Context, id json.RawMessage, limit int) {
	if id == nil {
		return
	}
	key := idKey(id)
	s.mu.Lock()
	req, ok := s.inFlight[key]
	delete(s.inFlight, key)
	g := s.g
	s.mu.Unlock()
	if !ok || g == nil || req.method != methodCall {
		return
	}
	note := map[string]any{"unrecorded": fmt.Sprintf("the server's answer was longer than %d bytes; relayed to the client unread", limit)}
	if err := g.RecordOutput(ctx, req.stepID, note); err != nil {
		s.srv.log.Warn("mcp: tool result not recorded", "tool", req.tool, "step", req.stepID, "err", err)
	}
}

// observeTools records a tools/list answer as an observation step whose output is the
// tools, so that later rules can read them; metadata mcp_tools_changed names the tools
// whose description or input schema differs from the one seen earlier (the "rug pull").
func (s *session) observeTools(ctx context.Context, g Guard, tools []any) {
	changed, err := s.srv.prints.observe(s.srv.name, tools)
	if err != nil {
		s.srv.log.Warn("mcp: the tools seen before", "err", err)
	}
	if len(changed) > 0 {
		s.srv.log.Warn("mcp: tools changed their description or input schema", "server", s.srv.name, "tools", changed)
	}
	names := make([]any, 0, len(changed))
	for _, n := range changed {
		names = append(names, n)
	}
	meta := map[string]any{"mcp_server": s.srv.name, "mcp_tools_changed": names}
	d, err := g.Check(ctx, methodList, map[string]any{}, meta, schemas.StepObservation)
	var blocked *agent.BlockedError
	if err != nil && !errors.As(err, &blocked) {
		s.srv.log.Warn("mcp: tools/list not recorded", "err", err)
		return
	}
	if blocked != nil {
		// The list is relayed all the same: what a policy finds in it shows in the report,
		// and the tools' calls are checked one by one.
		s.srv.log.Warn("mcp: the policy flags the server's tools", "reason", reason(d))
	}
	if err := g.RecordOutput(ctx, d.StepID, map[string]any{"tools": tools}); err != nil {
		s.srv.log.Warn("mcp: tools/list output not recorded", "err", err)
	}
}

// outputOf is what a tools/call answer records: its result, or its error.
func outputOf(m message) (map[string]any, error) {
	if m.result == nil {
		var e any
		if err := pyjson.Unmarshal(m.err, &e); err != nil {
			return nil, fmt.Errorf("tools/call error: %w", err)
		}
		return map[string]any{"error": e}, nil
	}
	var out map[string]any
	if err := pyjson.Unmarshal(m.result, &out); err != nil {
		return nil, fmt.Errorf("tools/call result: %w", err)
	}
	return out, nil
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type rpcResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

func errorResponse(id json.RawMessage, code int, msg string) rpcResponse {
	if id == nil {
		id = json.RawMessage("null")
	}
	return rpcResponse{JSONRPC: "2.0", ID: id, Error: &rpcError{Code: code, Message: msg}}
}

// blockedResult is a failed tool call as MCP has a tool report one: a result with isError
// and the reason as its text, which the model gets to read.
func blockedResult(id json.RawMessage, text string) rpcResponse {
	return rpcResponse{JSONRPC: "2.0", ID: id, Result: map[string]any{
		"content": []any{map[string]any{"type": "text", "text": text}},
		"isError": true,
	}}
}

// encodeReply encodes a message of the proxy's own.
func encodeReply(log *slog.Logger, v rpcResponse) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		log.Error("mcp: encode an answer", "err", err)
		return nil
	}
	return data
}
