package mcpproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// headerSession is the Streamable HTTP transport's session header.
const headerSession = "Mcp-Session-Id"

// DefaultSessionIdle is how long an HTTP session may go without a request before it is
// ended (scored and reported): clients need not end their sessions with DELETE.
const DefaultSessionIdle = 30 * time.Minute

// Defaults of HTTPOptions' bounds: sessions kept, sessions of one agent, bodies read at
// once.
const (
	DefaultMaxSessions      = 1024
	DefaultMaxAgentSessions = 64
	DefaultMaxReading       = 16
)

// bodyReadTimeout bounds the reading of one request's body.
const bodyReadTimeout = 30 * time.Second

// HTTPOptions configure a proxy of a Streamable HTTP MCP server.
type HTTPOptions struct {
	Upstream string      // the server's MCP endpoint, such as http://127.0.0.1:3001/mcp; required
	Header   http.Header // set on every request to the server (its own credentials)
	Server   string      // metadata mcp_server; empty: the upstream's host
	Agent    string      // the agent of sessions whose request names none (WithAgent); empty: clientInfo.name
	Guards   Guards      // required: the guard of each session
	DataDir  string      // keeps the fingerprints of the server's tools (mcp/)
	// MaxMessage bounds a request's body, a JSON answer and one event of a stream;
	// 0: DefaultMaxMessage.
	MaxMessage int
	// SessionIdle ends sessions without a request for this long; 0: DefaultSessionIdle.
	SessionIdle time.Duration
	// MaxSessions bounds the sessions kept at once; a request that would open one more
	// is answered 503. 0: DefaultMaxSessions.
	MaxSessions int
	// MaxAgentSessions bounds the sessions of one agent, so that one cannot take every
	// place; 0: DefaultMaxAgentSessions.
	MaxAgentSessions int
	// MaxReading bounds the request bodies read at once (each up to MaxMessage); more
	// wait up to 5s, then get 503. 0: DefaultMaxReading.
	MaxReading int
	Logger     *slog.Logger
	// Transport reaches the server; nil: a clone of http.DefaultTransport.
	Transport http.RoundTripper
	// OnEnd hears of every ended session, with its report or the error that kept it
	// from being written.
	OnEnd func(Result, error)
}

// HTTP proxies one Streamable HTTP MCP server: every POSTed tools/call is checked before
// it is forwarded, and answers (JSON or event streams) are relayed as they come, with
// tools/call results and tools/list answers recorded on their way. Sessions are the
// server's (its Mcp-Session-Id), each bound to the agent that opened it.
type HTTP struct {
	opts     HTTPOptions
	srv      *server
	upstream *url.URL
	rp       *httputil.ReverseProxy

	reading chan struct{} // a place per body being read

	mu       sync.Mutex
	sessions map[sessionKey]*httpSession
	owners   map[string]string // a server's session id -> the agent whose session it is
	closed   bool
}

type sessionKey struct{ agent, id string }

type httpSession struct {
	*session
	last time.Time // of its last request, under HTTP.mu
}

type agentKey struct{}

// WithAgent names the agent a request speaks for, such as the one its bearer token is
// scoped to: its session's steps are that agent's, and another agent's requests cannot
// use the session.
func WithAgent(ctx context.Context, agentName string) context.Context {
	return context.WithValue(ctx, agentKey{}, agentName)
}

func agentOf(ctx context.Context) string {
	a, _ := ctx.Value(agentKey{}).(string)
	return a
}

// NewHTTP builds the proxy of opts.Upstream.
func NewHTTP(opts HTTPOptions) (*HTTP, error) {
	u, err := url.Parse(opts.Upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("mcp: --upstream %q: expected the server's http:// or https:// MCP endpoint, such as http://127.0.0.1:3001/mcp", opts.Upstream)
	}
	if opts.Guards == nil {
		return nil, errors.New("mcp: no guard")
	}
	if opts.Server == "" {
		opts.Server = u.Host
	}
	if opts.MaxMessage <= 0 {
		opts.MaxMessage = DefaultMaxMessage
	}
	if opts.SessionIdle <= 0 {
		opts.SessionIdle = DefaultSessionIdle
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	if opts.MaxAgentSessions <= 0 {
		opts.MaxAgentSessions = DefaultMaxAgentSessions
	}
	if opts.MaxReading <= 0 {
		opts.MaxReading = DefaultMaxReading
	}
	if opts.Transport == nil {
		opts.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	p := &HTTP{opts: opts, upstream: u, sessions: map[sessionKey]*httpSession{}, owners: map[string]string{},
		reading: make(chan struct{}, opts.MaxReading),
		srv:     newServer(opts.Server, opts.Agent, opts.DataDir, opts.Guards, opts.Logger)}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      opts.Transport,
		FlushInterval:  -1, // event streams reach the client event by event
		ModifyResponse: p.tapResponse,
		ErrorHandler:   p.upstreamError,
		ErrorLog:       slog.NewLogLogger(p.srv.log.Handler(), slog.LevelWarn),
	}
	return p, nil
}

// Path is the path the proxy serves: the upstream endpoint's.
func (p *HTTP) Path() string {
	if p.upstream.Path == "" {
		return "/"
	}
	return p.upstream.Path
}

// exchange is what a request forwarded to the server carries to its answer.
type exchange struct {
	s        *httpSession
	key      sessionKey
	register bool // a session the proxy does not hold yet: kept when the server accepts it
	opens    bool // an initialize without a session: the answer names the session
}

type exchangeKey struct{}

func (p *HTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != p.Path() {
		http.Error(w, "troy: the MCP endpoint is "+p.Path(), http.StatusNotFound)
		return
	}
	switch r.Method {
	case http.MethodPost, http.MethodGet, http.MethodDelete:
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		http.Error(w, "troy: method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ctx := r.Context()
	var err error
	key := sessionKey{agent: agentOf(ctx), id: r.Header.Get(headerSession)}
	x := &exchange{key: key}
	var body []byte
	if r.Method == http.MethodPost {
		var ok bool
		if body, ok = p.readBody(w, r); !ok {
			return
		}
		m, _ := decode(body)
		x.opens = key.id == "" && m.method == methodInitialize
	} else {
		// MCP gives GET and DELETE no body: one is not relayed, lest a server read a
		// tools/call the guard never saw.
		r.Body, r.ContentLength = http.NoBody, 0
	}
	if x.s, x.register, err = p.session(key, x.opens); err != nil {
		status := http.StatusServiceUnavailable
		if errors.Is(err, errNotYours) {
			// As the server answers a session it does not know: the client starts anew.
			status = http.StatusNotFound
		} else {
			w.Header().Set("Retry-After", "1")
		}
		http.Error(w, "troy: "+err.Error(), status)
		return
	}
	if body != nil {
		forward, reply, err := x.s.fromClient(ctx, body)
		if err != nil {
			p.srv.log.Error("mcp: a client message", "err", err)
			writeRPC(w, http.StatusInternalServerError, encodeReply(p.srv.log, errorResponse(nil, -32603, "troy: "+err.Error())))
			return
		}
		if !forward {
			if reply == nil {
				w.WriteHeader(http.StatusAccepted) // a notification, dropped
				return
			}
			writeRPC(w, http.StatusOK, reply)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(ctx, exchangeKey{}, x)))
}

// readBody reads a POST's body within the size limit and its own deadline, answering the
// client itself when it cannot.
func (p *HTTP) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case p.reading <- struct{}{}:
		defer func() { <-p.reading }()
	case <-t.C:
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("troy: %d requests are being read; try again", cap(p.reading)), http.StatusServiceUnavailable)
		return nil, false
	case <-r.Context().Done():
		return nil, false
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(bodyReadTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(p.opts.MaxMessage)))
	_ = rc.SetReadDeadline(time.Time{}) // an event stream's answer may take long
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writeRPC(w, http.StatusRequestEntityTooLarge, encodeReply(p.srv.log, errorResponse(nil, codeInvalidRequest, fmt.Sprintf("troy: message longer than %d bytes; dropped", p.opts.MaxMessage))))
		return nil, false
	case err != nil:
		http.Error(w, "troy: read the request: "+err.Error(), http.StatusBadRequest)
		return nil, false
	}
	return body, true
}

func writeRPC(w http.ResponseWriter, status int, data []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

// session finds the session of key, or starts one (fresh: an initialize opens it). A
// session the proxy does not hold is kept only when the server accepts the request
// (register), so that made-up session ids hold no place.
func (p *HTTP) session(key sessionKey, fresh bool) (s *httpSession, register bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, false, errors.New("the proxy is stopping")
	}
	now := time.Now()
	if !fresh {
		if s := p.sessions[key]; s != nil {
			s.last = now
			return s, false, nil
		}
	}
	if owner, ok := p.owners[key.id]; ok && owner != key.agent && key.id != "" {
		return nil, false, errNotYours
	}
	if len(p.sessions) >= p.opts.MaxSessions {
		return nil, false, fmt.Errorf("%d sessions are open; end one (DELETE) or wait for idle ones to end", len(p.sessions))
	}
	mine := 0
	for k := range p.sessions {
		if k.agent == key.agent {
			mine++
		}
	}
	if mine >= p.opts.MaxAgentSessions {
		return nil, false, fmt.Errorf("agent %q has %d sessions open; end one (DELETE) or wait for idle ones to end", key.agent, mine)
	}
	// A session the proxy has not seen (it was restarted, or the server keeps none) is
	// guarded from here on like any other.
	return &httpSession{session: newSession(p.srv, key.agent), last: now}, true, nil
}

// errNotYours refuses a session id that another agent's session holds: an agent's token
// does not open another agent's session, even with its id.
var errNotYours = errors.New("no such session")

// own binds a server's session id to the agent that opened it; under p.mu.
func (p *HTTP) own(key sessionKey) {
	if key.id != "" {
		p.owners[key.id] = key.agent
	}
}

// rewrite addresses a forwarded request to the server, with the server's credentials in
// place of the client's (a troy token is not the server's business).
func (p *HTTP) rewrite(pr *httputil.ProxyRequest) {
	u := *p.upstream
	pr.Out.URL = &u
	pr.Out.Host = ""
	pr.Out.Header.Del("Authorization")
	for k, v := range p.opts.Header {
		pr.Out.Header[k] = v
	}
}

// tapResponse registers the session an initialize opened, and reads the answer on its
// way to the client: a JSON answer whole (it is one message, bounded), recorded before it
// is relayed; an event stream event by event, each recorded before the bytes that end it
// are relayed, so that the client's next request is checked with the result in the session.
func (p *HTTP) tapResponse(resp *http.Response) error {
	x, _ := resp.Request.Context().Value(exchangeKey{}).(*exchange)
	if x == nil {
		return nil
	}
	switch {
	case !x.register:
	case resp.StatusCode >= 300:
		// The server refused a session the proxy does not hold: it is not kept, and a
		// check it made is reported.
		go p.finish(x.s.session)
	case x.opens:
		p.register(x, resp.Header.Get(headerSession))
	default:
		p.register(x, x.key.id)
	}
	if resp.Request.Method == http.MethodDelete && resp.StatusCode < 300 {
		// Ended before the answer is relayed: when the client has it, the report is
		// written.
		p.endSession(x.key)
		return nil
	}
	ctx := context.WithoutCancel(resp.Request.Context())
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch mt {
	case "application/json":
		data, err := io.ReadAll(io.LimitReader(resp.Body, int64(p.opts.MaxMessage)+1))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("read the server's answer: %w", err)
		}
		if len(data) > p.opts.MaxMessage {
			return fmt.Errorf("the server's answer is longer than %d bytes", p.opts.MaxMessage)
		}
		x.s.fromServer(ctx, data)
		resp.Body = io.NopCloser(bytes.NewReader(data))
	case "text/event-stream":
		resp.Body = &eventTap{rc: resp.Body, max: p.opts.MaxMessage, log: p.srv.log,
			event: func(data []byte) { x.s.fromServer(ctx, data) }}
	}
	return nil
}

// register files a session an initialize opened under the id the server gave it (none:
// the server keeps no sessions, and the agent's requests share one).
func (p *HTTP) register(x *exchange, id string) {
	x.key.id = id
	p.mu.Lock()
	if owner, ok := p.owners[id]; ok && owner != x.key.agent {
		// The server reused another agent's session id: the session stays unregistered,
		// its requests refused like a stranger's.
		p.mu.Unlock()
		p.srv.log.Error("mcp: the server gave a new session another agent's session id", "session", id)
		return
	}
	old := p.sessions[x.key]
	p.sessions[x.key] = x.s
	p.own(x.key)
	p.mu.Unlock()
	if old != nil && old != x.s {
		go p.finish(old.session)
	}
}

func (p *HTTP) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	p.srv.log.Warn("mcp: the server did not answer", "upstream", p.opts.Upstream, "err", err)
	if x, _ := r.Context().Value(exchangeKey{}).(*exchange); x != nil && x.register {
		go p.finish(x.s.session)
	}
	status := http.StatusBadGateway
	if errors.Is(err, context.DeadlineExceeded) {
		status = http.StatusGatewayTimeout
	}
	http.Error(w, "troy: the MCP server did not answer", status)
}

// endSession ends the session of key (the client deleted it).
func (p *HTTP) endSession(key sessionKey) {
	p.mu.Lock()
	s := p.sessions[key]
	delete(p.sessions, key)
	if p.owners[key.id] == key.agent {
		delete(p.owners, key.id)
	}
	p.mu.Unlock()
	if s != nil {
		p.finish(s.session)
	}
}

func (p *HTTP) finish(s *session) {
	res, err := s.end(context.Background())
	if err != nil {
		p.srv.log.Error("mcp: end a session", "session", res.Session, "err", err)
	}
	if p.opts.OnEnd != nil && (res.Session != "" || err != nil) {
		p.opts.OnEnd(res, err)
	}
}

// Sweep ends the sessions without a request since before now minus SessionIdle.
func (p *HTTP) Sweep(now time.Time) {
	p.mu.Lock()
	var idle []*session
	for k, s := range p.sessions {
		if now.Sub(s.last) > p.opts.SessionIdle {
			idle = append(idle, s.session)
			delete(p.sessions, k)
			delete(p.owners, k.id)
		}
	}
	p.mu.Unlock()
	for _, s := range idle {
		p.finish(s)
	}
}

// Run ends idle sessions until ctx ends, then every session (Close).
func (p *HTTP) Run(ctx context.Context) {
	t := time.NewTicker(min(p.opts.SessionIdle, time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.Close()
			return
		case now := <-t.C:
			p.Sweep(now)
		}
	}
}

// Close ends every session; requests after it are refused.
func (p *HTTP) Close() {
	p.mu.Lock()
	p.closed = true
	all := make([]*session, 0, len(p.sessions))
	for _, s := range p.sessions {
		all = append(all, s.session)
	}
	clear(p.sessions)
	clear(p.owners)
	p.mu.Unlock()
	for _, s := range all {
		p.finish(s)
	}
}

// eventTap relays a server-sent event stream unchanged while reading its events: the
// data of each event is handed to event before the read that completes the event
// returns. It parses as it relays, rather than through an SSE library on a pipe, so
// that an event is recorded before the client can act on it. An event over max bytes is
// relayed but not read.
type eventTap struct {
	rc    io.ReadCloser
	max   int
	log   *slog.Logger
	event func(data []byte)

	line    []byte // the current line so far
	long    bool   // the current line is over max: skipped
	data    []byte // the current event's data lines, joined by \n
	skip    bool   // the current event is over max
	afterCR bool   // the last byte was a \r: a \n right after it ends nothing more
}

func (t *eventTap) Read(b []byte) (int, error) {
	n, err := t.rc.Read(b)
	for _, c := range b[:n] {
		t.feed(c)
	}
	return n, err
}

func (t *eventTap) Close() error { return t.rc.Close() }

// feed takes one byte of the stream. Lines end at \r\n, \n or \r (the SSE syntax).
func (t *eventTap) feed(c byte) {
	if c == '\n' && t.afterCR {
		t.afterCR = false
		return
	}
	t.afterCR = c == '\r'
	if c != '\n' && c != '\r' {
		if len(t.line) >= t.max {
			t.long = true
			return
		}
		t.line = append(t.line, c)
		return
	}
	t.endLine()
}

func (t *eventTap) endLine() {
	line, long := t.line, t.long
	t.line, t.long = t.line[:0], false
	if len(line) == 0 && !long { // a blank line dispatches the event
		if len(t.data) > 0 && !t.skip {
			t.event(bytes.TrimSuffix(t.data, []byte("\n")))
		} else if t.skip {
			t.log.Warn("mcp: an event of the server's stream over the limit was relayed unread", "limit", t.max)
		}
		t.data, t.skip = t.data[:0], false
		return
	}
	if long {
		t.skip = true
		return
	}
	field, value, found := bytes.Cut(line, []byte(":"))
	if !found {
		value = nil
	}
	if string(field) != "data" {
		return // event, id, retry and comments say nothing the proxy reads
	}
	value = bytes.TrimPrefix(value, []byte(" "))
	if len(t.data)+len(value)+1 > t.max {
		t.skip = true
		return
	}
	t.data = append(append(t.data, value...), '\n')
}
