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
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/troy-audit/troy/localguard"
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
	Command []string // the server and its arguments; required
	Server  string   // metadata mcp_server; empty: the command's base name
	Agent   string   // the guard's agent; empty: the client's clientInfo.name
	Guards  Guards   // required: the guard of each session
	// DataDir keeps the fingerprints of the server's tools (mcp/); empty means
	// localguard.DefaultDataDir.
	DataDir    string
	MaxMessage int          // 0: DefaultMaxMessage
	Logger     *slog.Logger // nil discards; never stdout, which is the protocol
	Stderr     io.Writer    // the server's stderr; nil: os.Stderr
}

// Result is what a session leaves behind.
type Result struct {
	Session string
	Report  Report // zero when no step was taken
}

// newServer fills in the defaults of what every transport needs.
func newServer(name, agentName, dataDir string, guards Guards, log *slog.Logger) *server {
	if dataDir == "" {
		dataDir = localguard.DefaultDataDir
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &server{name: name, agent: agentName, guards: guards, prints: newToolPrints(dataDir, name), log: log}
}

// stdio relays one client's session over stdio.
type stdio struct {
	s          *session
	maxMessage int
	outMu      sync.Mutex // serializes writes to the client
	out        *bufio.Writer
}

// Run relays between the client (in, out) and the server until the client closes in, the
// server exits or ctx ends; then it stops the server and ends the session (its report
// written).
func Run(ctx context.Context, opts Options, in io.Reader, out io.Writer) (Result, error) {
	if len(opts.Command) == 0 {
		return Result{}, errors.New("mcp: no server command: give it after --")
	}
	if opts.Guards == nil {
		return Result{}, errors.New("mcp: no guard")
	}
	if opts.Server == "" {
		opts.Server = ServerName(opts.Command)
	}
	if opts.MaxMessage <= 0 {
		opts.MaxMessage = DefaultMaxMessage
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	srv := newServer(opts.Server, opts.Agent, opts.DataDir, opts.Guards, opts.Logger)
	p := &stdio{s: newSession(srv, ""), maxMessage: opts.MaxMessage, out: bufio.NewWriter(out)}
	log := srv.log

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
	log.Info("mcp: server started", "server", opts.Server, "pid", cmd.Process.Pid)

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
		log.Info("mcp: the client disconnected; stopping the server")
	case err := <-serverDone:
		runErr, relayed = err, true
		log.Warn("mcp: the server closed its stdout")
	case <-ctx.Done():
		log.Info("mcp: stopping", "why", context.Cause(ctx))
	}
	stopReading()
	toServer.Close()
	serverFirst := relayed
	if err := stop(cmd, serverDone, relayed); err != nil {
		if serverFirst && runErr == nil {
			// The server ended the run: its failure is the run's.
			runErr = fmt.Errorf("mcp: the server %q exited: %w", opts.Command[0], err)
		} else {
			log.Warn("mcp: the server exited", "err", err)
		}
	}
	res, endErr := p.s.end(ctx)
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

// fromClient relays the client's messages to the server, checking each tools/call first.
func (p *stdio) fromClient(ctx context.Context, in io.Reader, toServer io.Writer) error {
	lines := make(chan Line)
	go ReadLines(ctx, in, p.maxMessage, lines)
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
			p.s.srv.log.Warn("mcp: client message over the limit; dropped", "limit", p.maxMessage)
			p.reply(encodeReply(p.s.srv.log, errorResponse(nil, codeInvalidRequest, fmt.Sprintf("troy: message longer than %d bytes; dropped", p.maxMessage))))
			continue
		}
		if len(bytes.TrimSpace(l.Data)) == 0 {
			continue
		}
		forward, reply, err := p.s.fromClient(ctx, l.Data)
		if err != nil {
			return err
		}
		if reply != nil {
			p.reply(reply)
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

// fromServer relays the server's messages to the client, recording the results of the
// requests the session waits on. A message over the limit is relayed unread, as it comes,
// so that the proxy holds no more than the limit and the client still gets its answer.
func (p *stdio) fromServer(ctx context.Context, r io.Reader) error {
	// Read here rather than on a goroutine of its own: a hop less per message, and the
	// stream ends when the server is stopped.
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		data, long, err := p.serverLine(br)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("mcp: read the server: %w", err)
		}
		if long != nil {
			p.s.srv.log.Warn("mcp: a server message over the limit was relayed unread", "limit", p.maxMessage)
			p.s.unread(ctx, long.id(), p.maxMessage)
			continue
		}
		p.s.fromServer(ctx, data)
		if err := p.write(data); err != nil {
			return err
		}
	}
}

// longLine is what the proxy keeps of a line over the limit: its first and last bytes,
// where a JSON-RPC message's id is.
type longLine struct{ head, tail []byte }

// keepEnds is how much of each end of a long line is kept.
const keepEnds = 1 << 10

// serverLine reads one line of the server without its line ending. A line over the limit
// is copied to the client as it is read, its newline included, and only its ends kept.
func (p *stdio) serverLine(br *bufio.Reader) (data []byte, long *longLine, err error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if long == nil && len(buf)+len(chunk) > p.maxMessage+1 { // +1: the newline
			long = &longLine{head: bytes.Clone(buf[:min(len(buf), keepEnds)])}
			p.outMu.Lock() // the proxy's own replies wait until the line has passed
			p.out.Write(buf)
			buf = nil
		}
		if long != nil {
			p.out.Write(chunk)
			long.tail = append(long.tail, chunk...)
			if len(long.tail) > 2*keepEnds {
				long.tail = append(long.tail[:0], long.tail[len(long.tail)-keepEnds:]...)
			}
			if len(long.head) < keepEnds {
				long.head = append(long.head, chunk[:min(len(chunk), keepEnds-len(long.head))]...)
			}
		} else {
			buf = append(buf, chunk...)
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == nil || err == io.EOF && (len(buf) > 0 || long != nil):
			if long == nil {
				return trimEOL(buf), nil, nil
			}
			if err == io.EOF {
				p.out.WriteByte('\n')
			}
			flushErr := p.out.Flush()
			p.outMu.Unlock()
			if flushErr != nil {
				return nil, nil, fmt.Errorf("mcp: write to the client: %w", flushErr)
			}
			long.tail = trimEOL(long.tail)
			return nil, long, nil
		default:
			if long != nil {
				p.out.Flush()
				p.outMu.Unlock()
			}
			return nil, nil, err
		}
	}
}

// Where a response's id is: first after "jsonrpc" (as Python's and Go's SDKs write
// responses), or last before the closing brace (as the TypeScript SDK does).
var (
	idAtHead = regexp.MustCompile(`^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*(-?[0-9]+|"(?:[^"\\]|\\.)*")\s*,`)
	idAtTail = regexp.MustCompile(`[,{]\s*"id"\s*:\s*(-?[0-9]+|"(?:[^"\\]|\\.)*")\s*(?:,\s*"jsonrpc"\s*:\s*"2\.0"\s*)?\}\s*$`)
)

// id is the id of the response a long line holds, when its ends tell; nil otherwise.
func (l *longLine) id() json.RawMessage {
	if m := idAtHead.FindSubmatch(l.head); m != nil {
		return json.RawMessage(m[1])
	}
	if m := idAtTail.FindSubmatch(l.tail); m != nil {
		return json.RawMessage(m[1])
	}
	return nil
}

// reply writes a message of the proxy's own to the client.
func (p *stdio) reply(data []byte) {
	if data == nil {
		return
	}
	if err := p.write(data); err != nil {
		p.s.srv.log.Warn("mcp: write to the client", "err", err)
	}
}

func (p *stdio) write(data []byte) error {
	p.outMu.Lock()
	defer p.outMu.Unlock()
	p.out.Write(data)
	p.out.WriteByte('\n')
	if err := p.out.Flush(); err != nil {
		return fmt.Errorf("mcp: write to the client: %w", err)
	}
	return nil
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
