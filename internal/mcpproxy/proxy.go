// Package mcpproxy guards a Model Context Protocol server that speaks over stdio: it runs
// the server as its child and relays newline-delimited JSON-RPC between the client (on
// the proxy's stdin and stdout) and the server. Every tools/call request is checked by a
// local guard before it is forwarded; a blocked call is answered as a failed tool call and
// never reaches the server; an allowed call's result becomes the step's output; every
// tools/list result is recorded as an observation step. Everything else (notifications,
// progress, cancellation, sampling, resources, prompts, ...) is relayed byte for byte.
package mcpproxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/localguard"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
	"github.com/troy-audit/troy/sdk/agent"
)

const (
	methodCall       = "tools/call"
	methodList       = "tools/list"
	methodInitialize = "initialize"

	// DefaultMaxMessage bounds one JSON-RPC message (one line) in either direction.
	DefaultMaxMessage = 32 << 20
	// DefaultAgent names the agent when neither Options.Agent nor the client's
	// clientInfo.name does.
	DefaultAgent = "mcp-client"
	// stopGrace is how long the server has to exit after its stdin closes, and again
	// after SIGTERM, before it is killed (as MCP's stdio transport asks of clients).
	stopGrace = 5 * time.Second
)

// JSON-RPC error codes the proxy answers with itself.
const (
	codeParse          = -32700
	codeInvalidRequest = -32600
)

// Options configure a proxy run.
type Options struct {
	Command []string            // the server and its arguments; required
	Server  string              // metadata mcp_server; empty: the command's base name
	Agent   string              // the guard's agent; empty: the client's clientInfo.name
	Policy  *evaluator.Compiled // required
	Guard   localguard.Options  // Agent and Session are set by the proxy when empty
	// ReportDir receives report.md and audit.json; empty: the data directory's
	// reports/<agent>/<session>/.
	ReportDir  string
	MaxMessage int          // 0: DefaultMaxMessage
	Logger     *slog.Logger // nil discards; never stdout, which is the protocol
	Stderr     io.Writer    // the server's stderr; nil: os.Stderr
}

// Result is what a run leaves behind.
type Result struct {
	Session string
	Report  localguard.Report // zero when no step was taken
}

// pending is a request of the client in flight to the server that the proxy waits on.
type pending struct {
	method string
	stepID string // tools/call: the checked step
	tool   string
}

type proxy struct {
	opts Options
	log  *slog.Logger

	outMu sync.Mutex // serializes writes to the client
	out   *bufio.Writer

	mu       sync.Mutex
	g        *localguard.Guard
	client   string             // clientInfo.name of initialize
	inFlight map[string]pending // by id
	prints   *toolPrints        // the server's tools, as seen before and in this session
}

// Run relays between the client (in, out) and the server until the client closes in, the
// server exits or ctx ends; then it stops the server, ends the session (report.md and
// audit.json written) and closes the guard.
func Run(ctx context.Context, opts Options, in io.Reader, out io.Writer) (Result, error) {
	if len(opts.Command) == 0 {
		return Result{}, errors.New("mcp: no server command: give it after --")
	}
	if opts.Policy == nil {
		return Result{}, errors.New("mcp: no policy")
	}
	if opts.Server == "" {
		opts.Server = ServerName(opts.Command)
	}
	if opts.MaxMessage <= 0 {
		opts.MaxMessage = DefaultMaxMessage
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	dataDir := opts.Guard.DataDir
	if dataDir == "" {
		dataDir = localguard.DefaultDataDir
	}
	p := &proxy{opts: opts, log: opts.Logger, out: bufio.NewWriter(out), inFlight: map[string]pending{},
		prints: newToolPrints(dataDir, opts.Server)}

	cmd := exec.Command(opts.Command[0], opts.Command[1:]...)
	cmd.Stderr = opts.Stderr
	ownGroup(cmd)
	toServer, err := cmd.StdinPipe()
	if err != nil {
		return Result{}, fmt.Errorf("mcp: server stdin: %w", err)
	}
	fromServer, err := cmd.StdoutPipe()
	if err != nil {
		return Result{}, fmt.Errorf("mcp: server stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("mcp: start the server %q: %w", opts.Command[0], err)
	}
	p.log.Info("mcp: server started", "server", opts.Server, "pid", cmd.Process.Pid)

	serverDone := make(chan error, 1) // the server's stdout has ended
	go func() { serverDone <- p.fromServer(ctx, fromServer) }()
	clientDone := make(chan error, 1) // the client's stdin has ended
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	go func() { clientDone <- p.fromClient(readCtx, in, toServer) }()

	var runErr error
	relayed := false // the server's stdout has ended
	select {
	case err := <-clientDone:
		runErr = err
		p.log.Info("mcp: the client disconnected; stopping the server")
	case err := <-serverDone:
		runErr, relayed = err, true
		p.log.Warn("mcp: the server closed its stdout")
	case <-ctx.Done():
		p.log.Info("mcp: stopping", "why", context.Cause(ctx))
	}
	stopReading()
	toServer.Close()
	serverFirst := relayed
	if err := stop(cmd, serverDone, relayed); err != nil {
		if serverFirst && runErr == nil {
			// The server ended the run: its failure is the run's.
			runErr = fmt.Errorf("mcp: the server %q exited: %w", opts.Command[0], err)
		} else {
			p.log.Warn("mcp: the server exited", "err", err)
		}
	}
	res, endErr := p.end(ctx)
	return res, errors.Join(runErr, endErr)
}

// stop ends the server as MCP's stdio transport asks of a client: its stdin is closed
// (before stop), then it gets stopGrace to exit, then SIGTERM, then SIGKILL, each sent to
// its process group (a runner such as npx starts the server as its own child). The
// server's stdout is read to its end first, so that its last answers reach the client.
func stop(cmd *exec.Cmd, serverDone <-chan error, relayed bool) error {
	wait := func() bool {
		if relayed {
			return true
		}
		t := time.NewTimer(stopGrace)
		defer t.Stop()
		select {
		case <-serverDone:
			relayed = true
		case <-t.C:
		}
		return relayed
	}
	if !wait() {
		signalGroup(cmd, syscall.SIGTERM)
		if !wait() {
			signalGroup(cmd, syscall.SIGKILL)
			wait()
		}
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.Exited() && exit.ExitCode() == 0 {
		return nil
	}
	return err
}

// end ends the session (its reports written) and closes the guard.
func (p *proxy) end(ctx context.Context) (Result, error) {
	p.mu.Lock()
	g := p.g
	p.mu.Unlock()
	if g == nil {
		return Result{}, nil
	}
	ctx = context.WithoutCancel(ctx) // the reports are written after a signal too
	res := Result{Session: g.Session()}
	rep, err := g.EndReport(ctx, p.opts.ReportDir)
	if err == nil {
		res.Report = rep
		p.log.Info("mcp: session ended", "session", res.Session, "report", rep.Markdown, "audit", rep.JSON)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return res, errors.Join(err, g.Close(cctx))
}

// ServerName is the mcp_server a command gets by default: the package a runner (npx,
// node, uvx, python, docker run, ...) starts, else the command's base name.
func ServerName(command []string) string {
	base := func(s string) string {
		s = strings.TrimRight(s, `/\`)
		if i := strings.LastIndexAny(s, `/\`); i >= 0 {
			s = s[i+1:]
		}
		return s
	}
	name := base(command[0])
	switch strings.TrimSuffix(name, ".exe") {
	case "npx", "node", "uvx", "uv", "python", "python3", "deno", "bun", "bunx", "pipx", "docker":
		for _, a := range command[1:] {
			if a == "" || strings.HasPrefix(a, "-") || a == "run" || a == "exec" {
				continue
			}
			// A script inside an installed package is named by its package.
			if _, rest, ok := strings.Cut(filepath.ToSlash(a), "node_modules/"); ok {
				parts := strings.Split(rest, "/")
				if strings.HasPrefix(parts[0], "@") && len(parts) > 1 {
					return parts[1]
				}
				return parts[0]
			}
			return base(a)
		}
	}
	return name
}

// guard returns the session's guard, starting it at the first message that needs it: the
// agent is known from initialize by then.
func (p *proxy) guard(ctx context.Context) (*localguard.Guard, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.g != nil {
		return p.g, nil
	}
	opts := p.opts.Guard
	if opts.Agent == "" {
		opts.Agent = p.opts.Agent
	}
	if opts.Agent == "" {
		opts.Agent = idText(p.client)
	}
	if opts.Agent == "" {
		opts.Agent = DefaultAgent
	}
	if opts.Logger == nil {
		opts.Logger = p.log
	}
	g, err := localguard.New(ctx, p.opts.Policy, opts)
	if err != nil {
		return nil, fmt.Errorf("mcp: start the guard: %w", err)
	}
	p.g = g
	p.log.Info("mcp: session started", "session", g.Session(), "agent", opts.Agent, "server", p.opts.Server)
	return g, nil
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

// fromClient relays the client's messages to the server, checking each tools/call first.
func (p *proxy) fromClient(ctx context.Context, in io.Reader, toServer io.Writer) error {
	lines := make(chan Line)
	go ReadLines(ctx, in, p.opts.MaxMessage, lines)
	w := bufio.NewWriter(toServer)
	for {
		var l Line
		select {
		case <-ctx.Done():
			return nil
		case l = <-lines:
		}
		if l.Err == io.EOF {
			return nil
		}
		if l.Err != nil {
			return fmt.Errorf("mcp: read the client: %w", l.Err)
		}
		if l.TooLong {
			p.log.Warn("mcp: client message over the limit; dropped", "limit", p.opts.MaxMessage)
			p.reply(errorResponse(nil, codeInvalidRequest, fmt.Sprintf("troy: message longer than %d bytes; dropped", p.opts.MaxMessage)))
			continue
		}
		if len(strings.TrimSpace(string(l.Data))) == 0 {
			continue
		}
		forward, err := p.fromClientMessage(ctx, l.Data)
		if err != nil {
			return err
		}
		if !forward {
			continue
		}
		w.Write(l.Data)
		w.WriteByte('\n')
		if err := w.Flush(); err != nil {
			return fmt.Errorf("mcp: write to the server: %w", err)
		}
	}
}

// fromClientMessage handles one message of the client and says whether it goes on to the
// server. An error ends the run.
func (p *proxy) fromClientMessage(ctx context.Context, data []byte) (bool, error) {
	m, err := decode(data)
	if err != nil {
		// What the proxy cannot read is not relayed: the server might read it otherwise.
		p.log.Warn("mcp: client message is not JSON-RPC; answered with a parse error", "err", err)
		p.reply(errorResponse(nil, codeParse, "troy: "+err.Error()))
		return false, nil
	}
	switch {
	case m.batch && m.calls > 0:
		p.log.Warn("mcp: a batch holding tools/call refused", "calls", m.calls)
		p.reply(errorResponse(nil, codeInvalidRequest, "troy: tools/call in a batch is not supported; send tool calls one at a time"))
		return false, nil
	case m.method == methodInitialize:
		p.mu.Lock()
		p.client = clientName(m.params)
		p.mu.Unlock()
	case m.method == methodCall:
		return p.call(ctx, m)
	case m.method == methodList && m.id != nil:
		if _, err := p.guard(ctx); err != nil {
			return false, err
		}
		p.mu.Lock()
		p.inFlight[m.idKey()] = pending{method: methodList}
		p.mu.Unlock()
	}
	return true, nil
}

// call checks a tools/call; a blocked call is answered here and not forwarded.
func (p *proxy) call(ctx context.Context, m message) (bool, error) {
	g, err := p.guard(ctx)
	if err != nil {
		return false, err
	}
	c, err := decodeCall(m.params)
	if err != nil {
		if m.id != nil {
			p.reply(errorResponse(m.id, -32602, "troy: "+err.Error()))
		}
		return false, nil
	}
	meta := map[string]any{"mcp_server": p.opts.Server, "mcp_tool": c.name}
	d, err := g.CheckStep(ctx, evaluator.CheckRequest{GuardStep: schemas.GuardStep{Action: c.name, Input: c.args, Metadata: meta, Type: schemas.StepToolCall}})
	var blocked *agent.BlockedError
	var unavailable *agent.UnavailableError
	switch {
	case err == nil:
	case errors.As(err, &blocked):
		p.log.Warn("mcp: tool call blocked", "tool", c.name, "step", d.StepID, "reason", reason(d))
		if m.id != nil {
			p.reply(blockedResult(m.id, "troy blocked this tool call: "+reason(d)))
		}
		return false, nil
	case errors.As(err, &unavailable) && d.Allowed:
		p.log.Error("mcp: tool call not recorded; allowed (fail open)", "tool", c.name, "err", err)
	default:
		p.log.Error("mcp: tool call not checked; blocked", "tool", c.name, "err", err)
		if m.id != nil {
			p.reply(blockedResult(m.id, "troy could not check this tool call: "+err.Error()))
		}
		return false, nil
	}
	if m.id != nil && d.StepID != "" {
		p.mu.Lock()
		p.inFlight[m.idKey()] = pending{method: methodCall, stepID: d.StepID, tool: c.name}
		p.mu.Unlock()
	}
	return true, nil
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

// fromServer relays the server's messages to the client, recording the results of the
// requests the proxy waits on.
func (p *proxy) fromServer(ctx context.Context, r io.Reader) error {
	// Read here rather than on a goroutine of its own: a hop less per message, and the
	// stream ends when the server is stopped.
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		data, tooLong, err := ReadBoundedLine(br, p.opts.MaxMessage)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("mcp: read the server: %w", err)
		}
		if tooLong {
			p.log.Error("mcp: server message over the limit; dropped", "limit", p.opts.MaxMessage)
			continue
		}
		if m, err := decode(data); err == nil && m.isResponse() {
			p.record(ctx, m)
		}
		if err := p.write(data); err != nil {
			return err
		}
	}
}

// record records the answer to a request the proxy waits on.
func (p *proxy) record(ctx context.Context, m message) {
	p.mu.Lock()
	req, ok := p.inFlight[m.idKey()]
	delete(p.inFlight, m.idKey())
	g := p.g
	p.mu.Unlock()
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
			p.log.Warn("mcp: tool result not recorded", "tool", req.tool, "step", req.stepID, "err", err)
		}
	case methodList:
		if m.result == nil {
			return
		}
		tools, err := toolsOf(m.result)
		if err != nil {
			p.log.Warn("mcp: tools/list result not recorded", "err", err)
			return
		}
		p.observeTools(ctx, g, tools)
	}
}

// observeTools records a tools/list answer as an observation step whose output is the
// tools, so that later rules can read them; metadata mcp_tools_changed names the tools
// whose description or input schema differs from the one seen earlier in the session or in
// the server's last session (the "rug pull").
func (p *proxy) observeTools(ctx context.Context, g *localguard.Guard, tools []any) {
	changed, err := p.prints.observe(p.opts.Server, tools)
	if err != nil {
		p.log.Warn("mcp: the tools seen before", "err", err)
	}
	if len(changed) > 0 {
		p.log.Warn("mcp: tools changed their description or input schema", "server", p.opts.Server, "tools", changed)
	}
	names := make([]any, 0, len(changed))
	for _, n := range changed {
		names = append(names, n)
	}
	meta := map[string]any{"mcp_server": p.opts.Server, "mcp_tools_changed": names}
	d, err := g.CheckStep(ctx, evaluator.CheckRequest{GuardStep: schemas.GuardStep{Action: methodList, Input: map[string]any{}, Metadata: meta, Type: schemas.StepObservation}})
	var blocked *agent.BlockedError
	if err != nil && !errors.As(err, &blocked) {
		p.log.Warn("mcp: tools/list not recorded", "err", err)
		return
	}
	if blocked != nil {
		// The list is relayed all the same: what a policy finds in it shows in the report,
		// and the tools' calls are checked one by one.
		p.log.Warn("mcp: the policy flags the server's tools", "reason", reason(d))
	}
	if err := g.RecordOutput(ctx, d.StepID, map[string]any{"tools": tools}); err != nil {
		p.log.Warn("mcp: tools/list output not recorded", "err", err)
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

// reply writes a message of the proxy's own to the client.
func (p *proxy) reply(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		p.log.Error("mcp: encode an answer", "err", err)
		return
	}
	if err := p.write(data); err != nil {
		p.log.Warn("mcp: write to the client", "err", err)
	}
}

func (p *proxy) write(data []byte) error {
	p.outMu.Lock()
	defer p.outMu.Unlock()
	p.out.Write(data)
	p.out.WriteByte('\n')
	if err := p.out.Flush(); err != nil {
		return fmt.Errorf("mcp: write to the client: %w", err)
	}
	return nil
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

// Line is one line read, or the error that ended reading.
type Line struct {
	Data    []byte // the line's own bytes, without its line ending
	TooLong bool   // the line was over the limit and was discarded
	Err     error
}

// ReadLines sends the lines of r (without their line endings) until it ends or ctx does;
// a line over max is read to its end and sent as TooLong, without its data.
func ReadLines(ctx context.Context, r io.Reader, max int, out chan<- Line) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		data, tooLong, err := ReadBoundedLine(br, max)
		select {
		case out <- Line{Data: data, TooLong: tooLong, Err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// ReadBoundedLine reads one line without its line ending; a line over max bytes is read
// to its end and discarded (tooLong), so that one over-long message costs no memory and
// the stream goes on. It serves every line-delimited protocol troyctl speaks on stdio.
func ReadBoundedLine(br *bufio.Reader, max int) (data []byte, tooLong bool, err error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > max+1 { // +1: the newline
				tooLong, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		switch {
		case err == nil:
			return trimEOL(buf), tooLong, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && (len(buf) > 0 || tooLong):
			return trimEOL(buf), tooLong, nil // a last line without newline
		default:
			return nil, false, err
		}
	}
}

func trimEOL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
