// Package gateway is troy's HTTP gateway, for agents that cannot speak NATS: guard checks,
// steps, outputs, ends and reports over HTTP with bearer tokens. It only forwards: a check
// goes to the guard service and a step to the steps stream, exactly as over NATS, so the
// gateway adds a path and never stands in the way of the NATS one.
package gateway

import (
	"cmp"
	"context"
	"crypto/tls"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/troy-audit/troy/event"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"

	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
)

// OpenAPI is the gateway's OpenAPI document, served at /v1/openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// DefaultMaxBody bounds a request body: one event of the streams.
const DefaultMaxBody = bus.MaxEventSize

// Defaults of the limits that bound what clients can hold: connections, requests in hand
// and the time each may take.
const (
	DefaultMaxConns          = 1024
	DefaultMaxInFlight       = 64
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 15 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
)

// Config configures the gateway.
type Config struct {
	// Tokens are the bearer tokens accepted, with their roles; there must be at least
	// one. SetTokens replaces them while the gateway serves.
	Tokens []Token
	// TLS, when set, serves HTTPS with it.
	TLS *tls.Config
	// MaxBody bounds request bodies; zero means DefaultMaxBody.
	MaxBody int64
	// Timeout bounds the wait for the guard or the streams, and for a free slot when
	// MaxInFlight requests are in hand; zero means 5s.
	Timeout time.Duration
	// MaxConns bounds the connections open at once: more wait to be accepted. Zero means
	// DefaultMaxConns.
	MaxConns int
	// MaxInFlight bounds the authenticated requests handled at once, and so the memory
	// their bodies take: a request that finds no free slot within Timeout is answered
	// 503. Zero means DefaultMaxInFlight.
	MaxInFlight int
	// ReadHeaderTimeout bounds reading a request's headers, ReadTimeout the whole request
	// with its body, and IdleTimeout a kept-alive connection between requests. Zero means
	// the defaults above.
	ReadHeaderTimeout, ReadTimeout, IdleTimeout time.Duration
}

// Gateway serves the HTTP API.
type Gateway struct {
	b     *bus.Bus
	cfg   Config
	mux   *http.ServeMux
	slots chan struct{} // one per request in hand
	keys  Keyring
	// requests counts answers by route pattern (never the raw path, whose ids would grow
	// the series without bound) and status code.
	requests *prometheus.CounterVec
}

// keyring finds a token by its hash. Looking the hash of the presented text up in a map
// tells a timing attacker at most about the hash, which gives no hold on a token.
type keyring map[[32]byte]Token

// Keyring holds the tokens accepted, replaced whole while requests are served. The
// gateway keeps one; so does any other HTTP endpoint of troy's that takes its tokens.
type Keyring struct{ p atomic.Pointer[keyring] }

// SetTokens replaces the tokens accepted, for requests that arrive from now on; there
// must be at least one.
func (k *Keyring) SetTokens(tokens []Token) error {
	keys := keyring{}
	for i, t := range tokens {
		if err := checkRole(t.Role, t.Agent); err != nil {
			return fmt.Errorf("the HTTP gateway's token %d: %w", i+1, err)
		}
		keys[t.Hash] = t
	}
	if len(keys) == 0 {
		return errors.New("the HTTP gateway needs at least one token: issue one with troyctl auth admin --http (or agent NAME, reader), or give --http-tokens FILE or TROY_HTTP_TOKENS")
	}
	k.p.Store(&keys)
	return nil
}

// Authenticate finds the token of a request's Authorization: Bearer header.
func (k *Keyring) Authenticate(r *http.Request) (Token, bool) {
	return k.Lookup(r.Header.Get("Authorization"))
}

// Lookup finds the token of an Authorization header's value ("Bearer TOKEN"), as HTTP
// and gRPC metadata carry it.
func (k *Keyring) Lookup(authorization string) (Token, bool) {
	got, ok := bearerOf(authorization)
	keys := k.p.Load()
	if !ok || keys == nil {
		return Token{}, false
	}
	tok, known := (*keys)[HashToken(got)]
	return tok, known
}

// Unauthorized answers a request without a valid token: 401 with the Bearer challenge.
// The body is not read: not by the handler, nor by the server looking for the next
// request, since the connection is closed after the answer.
func Unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="troy"`)
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	writeError(w, errorf(http.StatusUnauthorized, "unauthorized", "a valid bearer token is required"))
}

// Forbidden answers a request whose token's role may not do what it asks.
func Forbidden(w http.ResponseWriter, t Token, what string) {
	writeError(w, forbidden(t, "%s", what))
}

// SetTokens replaces the tokens accepted, for requests that arrive from now on; there
// must be at least one.
func (g *Gateway) SetTokens(tokens []Token) error { return g.keys.SetTokens(tokens) }

// New builds a gateway over a bus.
func New(b *bus.Bus, cfg Config) (*Gateway, error) {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	cfg.MaxConns = cmp.Or(max(cfg.MaxConns, 0), DefaultMaxConns)
	cfg.MaxInFlight = cmp.Or(max(cfg.MaxInFlight, 0), DefaultMaxInFlight)
	cfg.ReadHeaderTimeout = cmp.Or(max(cfg.ReadHeaderTimeout, 0), DefaultReadHeaderTimeout)
	cfg.ReadTimeout = cmp.Or(max(cfg.ReadTimeout, 0), DefaultReadTimeout)
	cfg.IdleTimeout = cmp.Or(max(cfg.IdleTimeout, 0), DefaultIdleTimeout)
	g := &Gateway{b: b, cfg: cfg, mux: http.NewServeMux(), slots: make(chan struct{}, cfg.MaxInFlight),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "troy_http_requests_total",
			Help: "Requests the HTTP gateway answered, by route pattern (\"unmatched\" for no endpoint) and status code.",
		}, []string{"route", "code"})}
	if err := g.SetTokens(cfg.Tokens); err != nil {
		return nil, err
	}
	g.cfg.Tokens = nil // kept in g.keys
	g.mux.HandleFunc("GET /v1/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(OpenAPI)
	})
	for _, rt := range routes {
		g.mux.Handle(rt.Method+" "+rt.Pattern, g.auth(rt))
	}
	g.mux.HandleFunc("/", g.fallback)
	return g, nil
}

// Route is an endpoint of the API and the roles whose tokens may call it. An agent token
// is further held to its agent: the agent a body or query names must be its own.
type Route struct {
	Method, Pattern string
	Roles           []Role
}

type route struct {
	Route
	h func(g *Gateway, w http.ResponseWriter, r *http.Request) error
}

// routes are the endpoints that need a token, and who may call them; the OpenAPI
// document states the same in each operation's x-troy-roles (a test holds them equal).
var routes = []route{
	{Route{"POST", "/v1/guard/check", []Role{RoleAgent, RoleAdmin}}, (*Gateway).guardCheck},
	{Route{"POST", "/v1/steps", []Role{RoleAgent, RoleAdmin}}, (*Gateway).step},
	{Route{"POST", "/v1/traces/{id}/output", []Role{RoleAgent, RoleAdmin}}, (*Gateway).output},
	{Route{"POST", "/v1/traces/{id}/end", []Role{RoleAgent, RoleAdmin}}, (*Gateway).end},
	{Route{"GET", "/v1/traces/{id}/report", []Role{RoleAgent, RoleReader, RoleAdmin}}, (*Gateway).report},
	// An agent may only upload a policy an admin stored: see putPolicy.
	{Route{"PUT", "/v1/policies/{hash}", []Role{RoleAgent, RoleAdmin}}, (*Gateway).putPolicy},
}

// Routes lists the endpoints that need a token and the roles that may call each.
func Routes() []Route {
	out := make([]Route, len(routes))
	for i, rt := range routes {
		out[i] = Route{rt.Method, rt.Pattern, slices.Clone(rt.Roles)}
	}
	return out
}

// traceActions are the endpoints under /v1/traces/{id}/, by their last segment.
var traceActions = map[string]string{"output": "POST", "end": "POST", "report": "GET"}

// routeOf finds the route of a method and pattern.
func routeOf(method, pattern string) (route, bool) {
	for _, rt := range routes {
		if rt.Method == method && rt.Pattern == pattern {
			return rt, true
		}
	}
	return route{}, false
}

// fallback answers what the patterns did not match with a JSON error. ServeMux matches a
// path by its decoded segments, so a trace id of "/" (sent as %2F) leaves an empty
// segment it does not match: such paths are routed here by their escaped form.
func (g *Gateway) fallback(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(r.URL.EscapedPath(), "/") // "", "v1", "traces", id, action
	if len(parts) == 5 && parts[1] == "v1" && parts[2] == "traces" && traceActions[parts[4]] == r.Method {
		if id, err := url.PathUnescape(parts[3]); err == nil && id != "" {
			r.SetPathValue("id", id)
			if rt, ok := routeOf(r.Method, "/v1/traces/{id}/"+parts[4]); ok {
				r.Pattern = rt.Method + " " + rt.Pattern // the route it is counted under
				g.auth(rt).ServeHTTP(w, r)
				return
			}
		}
	}
	want := map[string]string{"/v1/guard/check": "POST", "/v1/steps": "POST", "/v1/openapi.json": "GET"}[r.URL.Path]
	if len(parts) == 5 && parts[1] == "v1" && parts[2] == "traces" {
		want = traceActions[parts[4]]
	}
	if len(parts) == 4 && parts[1] == "v1" && parts[2] == "policies" && parts[3] != "" {
		want = "PUT"
	}
	if want != "" {
		w.Header().Set("Allow", want)
		writeError(w, errorf(http.StatusMethodNotAllowed, "method_not_allowed", "%s %s: expected %s", r.Method, r.URL.Path, want))
		return
	}
	writeError(w, errorf(http.StatusNotFound, "not_found", "no endpoint %s %s; /v1/openapi.json lists them", r.Method, r.URL.Path))
}

// ServeHTTP serves the API, counting each answer by route and status.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	g.mux.ServeHTTP(rec, r) // sets r.Pattern to the pattern matched
	route := r.Pattern
	if route == "" || route == "/" {
		route = "unmatched"
	}
	g.requests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
}

// Collector counts the gateway's requests, for /metrics.
func (g *Gateway) Collector() prometheus.Collector { return g.requests }

// statusRecorder notes the status code of an answer.
type statusRecorder struct {
	http.ResponseWriter
	code    int
	written bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.written && code >= 200 { // 1xx answers are not the final one
		s.code, s.written = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.written = true
	return s.ResponseWriter.Write(b)
}

// Unwrap gives http.ResponseController the writer underneath.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// apiError is an error answered as JSON: {"error": {"code": ..., "message": ...}}; a 403
// also names the token's role and what that role may do.
type apiError struct {
	status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	Role    Role   `json:"role,omitempty"`
	May     string `json:"may,omitempty"`
}

func (e *apiError) Error() string { return e.Message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = pyjson.Encode(w, v, "") // numbers as Python writes them, as in audit.json
}

func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = errorf(http.StatusInternalServerError, "internal", "%v", err)
	}
	writeJSON(w, ae.status, map[string]any{"error": ae})
}

// tokenKey is the context key of the request's token.
type tokenKey struct{}

// auth checks the bearer token before anything else: a request without a valid token
// costs a header parse and a short answer, and its connection is closed rather than kept
// for more. A token whose role may not call the route is answered 403 before its body is
// read. An authorized request then waits for one of MaxInFlight slots before its body is
// read; the handler checks an agent token's scope against the agent the request names.
func (g *Gateway) auth(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, known := g.keys.Authenticate(r)
		if !known {
			Unauthorized(w)
			return
		}
		if !slices.Contains(rt.Roles, tok.Role) {
			writeError(w, forbidden(tok, "not %s %s", rt.Method, rt.Pattern))
			return
		}
		if !g.acquire(r.Context()) {
			w.Header().Set("Retry-After", "1")
			writeError(w, errorf(http.StatusServiceUnavailable, "busy", "%d requests are in hand; try again", g.cfg.MaxInFlight))
			return
		}
		defer func() { <-g.slots }()
		r.Body = http.MaxBytesReader(w, r.Body, g.cfg.MaxBody)
		r = r.WithContext(context.WithValue(r.Context(), tokenKey{}, tok))
		if err := rt.h(g, w, r); err != nil {
			writeError(w, err)
		}
	})
}

// forbidden is a 403 naming the token's role and what it may do.
func forbidden(tok Token, format string, args ...any) *apiError {
	article := "an" // agent, admin
	if tok.Role == RoleReader {
		article = "a"
	}
	e := errorf(http.StatusForbidden, "forbidden", "%s %s token may %s; %s", article, tok.Role, tok.Role.may(tok.Agent), fmt.Sprintf(format, args...))
	e.Role, e.May = tok.Role, tok.Role.may(tok.Agent)
	return e
}

// scope refuses with a 403 a request of an agent token that names another agent.
func scope(r *http.Request, agent string) error {
	tok, _ := r.Context().Value(tokenKey{}).(Token)
	if tok.Role == RoleAgent && agent != tok.Agent {
		return forbidden(tok, "not agent %q's", agent)
	}
	return nil
}

// acquire takes a request slot, waiting up to Timeout for one.
func (g *Gateway) acquire(ctx context.Context) bool {
	select {
	case g.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(g.cfg.Timeout)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// decode reads a JSON body into v, with numbers as trace files get them (pyjson).
func decode(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body) // bounded by the MaxBytesReader auth put in place
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(http.StatusRequestEntityTooLarge, "too_large", "the body is over the %d-byte limit", tooBig.Limit)
		}
		return errorf(http.StatusBadRequest, "bad_body", "reading the body: %v", err)
	}
	if err := pyjson.Unmarshal(body, v); err != nil {
		return errorf(http.StatusBadRequest, "bad_json", "the body is not the JSON object expected: %v", err)
	}
	return nil
}

// checkIDs refuses ids that break the rules of schemas.CheckID with a 400.
func checkIDs(ref event.TraceRef, stepID string) error {
	if err := ref.Check(); err != nil {
		return errorf(http.StatusBadRequest, "invalid", "%v", err)
	}
	if err := schemas.CheckID(stepID); err != nil {
		return errorf(http.StatusBadRequest, "invalid", "step_id: %v", err)
	}
	return nil
}

// guardRequest forwards a request to the guard service.
func (g *Gateway) guardRequest(ctx context.Context, subject string, req any) ([]byte, error) {
	data, err := pyjson.Marshal(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	out, err := g.b.Request(ctx, subject, data)
	var re *bus.RequestError
	switch {
	case errors.As(err, &re):
		status, _ := strconv.Atoi(re.Code)
		if status < 400 || status > 599 {
			status = http.StatusBadGateway
		}
		return nil, errorf(status, "guard", "%s", re.Message)
	case err != nil:
		return nil, errorf(http.StatusServiceUnavailable, "guard_unavailable", "the guard service did not answer: %v", err)
	}
	return out, nil
}

func (g *Gateway) guardCheck(w http.ResponseWriter, r *http.Request) error {
	var req event.GuardCheck
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := scope(r, req.Agent); err != nil {
		return err
	}
	out, err := g.guardRequest(r.Context(), event.GuardCheckSubject(req.Agent), req)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(out)
	return err
}

// StepRequest publishes one step of a trace. The caller numbers the steps of a run from
// 0 and chooses the run: an id of this sending of the trace.
type StepRequest struct {
	TraceID       string         `json:"trace_id"`
	Agent         string         `json:"agent"`
	Run           string         `json:"run"`
	Policy        string         `json:"policy,omitempty"`
	TraceMetadata map[string]any `json:"trace_metadata,omitempty"`
	Seq           *int           `json:"seq"`
	Step          *schemas.Step  `json:"step"`
}

func (g *Gateway) step(w http.ResponseWriter, r *http.Request) error {
	var req StepRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	switch {
	case req.TraceID == "" || req.Agent == "" || req.Run == "":
		return errorf(http.StatusBadRequest, "invalid", "trace_id, agent and run are required")
	case scope(r, req.Agent) != nil:
		return scope(r, req.Agent) // before the rest of the body is looked at
	case req.Seq == nil || *req.Seq < 0:
		return errorf(http.StatusBadRequest, "invalid", "seq: expected the step's position in the run, from 0")
	case req.Step == nil || req.Step.StepID == "":
		return errorf(http.StatusBadRequest, "invalid", "step.step_id is required")
	case !schemas.ValidStepType(req.Step.Type):
		return errorf(http.StatusBadRequest, "invalid", "step.type %q is not one of %s", req.Step.Type, strings.Join(schemas.StepTypes(), ", "))
	}
	s := req.Step
	s.Normalize()
	ref := event.TraceRef{TraceID: req.TraceID, AgentName: req.Agent, Policy: req.Policy, Run: req.Run}
	if err := checkIDs(ref, s.StepID); err != nil {
		return err
	}
	e, err := event.New(event.Step{TraceRef: ref, TraceMetadata: req.TraceMetadata, Seq: *req.Seq, Step: s})
	if err != nil {
		return err
	}
	return g.publish(w, r, e)
}

func (g *Gateway) publish(w http.ResponseWriter, r *http.Request, e event.Envelope) error {
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.Timeout)
	defer cancel()
	if err := g.b.PublishAll(ctx, []event.Envelope{e}); err != nil {
		return errorf(http.StatusServiceUnavailable, "stream_unavailable", "not stored: %v", err)
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"stored": true})
	return nil
}

// TraceRequest is the body of an output or an end. Without a run it is a guard session's
// (the trace id is the session); with one, a published trace's.
type TraceRequest struct {
	Agent  string         `json:"agent"`
	Run    string         `json:"run,omitempty"`
	StepID string         `json:"step_id,omitempty"`
	Output map[string]any `json:"output,omitempty"`
	Steps  int            `json:"steps,omitempty"` // an end: how many steps the run has
}

func (g *Gateway) traceRequest(r *http.Request) (string, TraceRequest, error) {
	var req TraceRequest
	if err := decode(r, &req); err != nil {
		return "", req, err
	}
	id := r.PathValue("id")
	if req.Agent == "" {
		return "", req, errorf(http.StatusBadRequest, "invalid", "agent is required")
	}
	if err := scope(r, req.Agent); err != nil {
		return "", req, err
	}
	if err := checkIDs(event.TraceRef{TraceID: id, AgentName: req.Agent, Run: req.Run}, req.StepID); err != nil {
		return "", req, err
	}
	return id, req, nil
}

func (g *Gateway) output(w http.ResponseWriter, r *http.Request) error {
	id, req, err := g.traceRequest(r)
	if err != nil {
		return err
	}
	if req.StepID == "" {
		return errorf(http.StatusBadRequest, "invalid", "step_id is required")
	}
	if req.Run == "" {
		if _, err := g.guardRequest(r.Context(), event.GuardOutputSubject(req.Agent), event.GuardOutput{Session: id, Agent: req.Agent, StepID: req.StepID, Output: req.Output}); err != nil {
			return err
		}
		writeJSON(w, http.StatusAccepted, map[string]any{"stored": true})
		return nil
	}
	ref := event.TraceRef{TraceID: id, AgentName: req.Agent, Run: req.Run}
	e, err := event.New(event.Output{TraceRef: ref, StepID: req.StepID, Output: req.Output})
	if err != nil {
		return err
	}
	return g.publish(w, r, e)
}

func (g *Gateway) end(w http.ResponseWriter, r *http.Request) error {
	id, req, err := g.traceRequest(r)
	if err != nil {
		return err
	}
	if req.Run == "" {
		if _, err := g.guardRequest(r.Context(), event.GuardEndSubject(req.Agent), event.GuardEnd{Session: id, Agent: req.Agent}); err != nil {
			return err
		}
		writeJSON(w, http.StatusAccepted, map[string]any{"stored": true})
		return nil
	}
	ref := event.TraceRef{TraceID: id, AgentName: req.Agent, Run: req.Run}
	e, err := event.New(event.End{TraceRef: ref, Steps: req.Steps, Reason: event.EndSent})
	if err != nil {
		return err
	}
	return g.publish(w, r, e)
}

// report answers the audit of a finished trace: the latest run, or ?run=.
func (g *Gateway) report(w http.ResponseWriter, r *http.Request) error {
	id, agent, run := r.PathValue("id"), r.URL.Query().Get("agent"), r.URL.Query().Get("run")
	if agent == "" {
		return errorf(http.StatusBadRequest, "invalid", "the agent query parameter is required")
	}
	if err := scope(r, agent); err != nil {
		return err
	}
	if err := checkIDs(event.TraceRef{TraceID: id, AgentName: agent, Run: run}, ""); err != nil {
		return err
	}
	file := event.ReportJSON
	switch f := r.URL.Query().Get("format"); f {
	case "", "json":
	case "markdown":
		file = event.ReportMarkdown
	default:
		return errorf(http.StatusBadRequest, "invalid", "format %q: expected json or markdown", f)
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.Timeout)
	defer cancel()
	// The reporter renders the report from the streams: the audit.json (or report.md) it
	// writes, signed as it signs them.
	data, _, err := event.FetchReport(ctx, g.b.Request, event.ReportRequest{Agent: agent, Trace: id, Run: run, File: file})
	var re *bus.RequestError
	switch {
	case errors.As(err, &re) && re.Code == "404":
		return errorf(http.StatusNotFound, "not_found", "no finished run of trace %q of agent %q (yet)", id, agent)
	case errors.As(err, &re):
		return errorf(http.StatusBadGateway, "reporter", "%s", re.Message)
	case err != nil:
		return errorf(http.StatusServiceUnavailable, "reporter_unavailable", "the reporter did not answer: %v", err)
	}
	if file == event.ReportMarkdown {
		w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(data)
	return err
}

// Serve serves the gateway on addr until the returned stop is called; stop lets requests
// in hand finish, for up to five seconds. The bound address is returned, for ":0".
func (g *Gateway) Serve(ctx context.Context, addr string, log *slog.Logger) (bound string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("http gateway: %w", err)
	}
	return ln.Addr().String(), g.ServeListener(ctx, ln, log), nil
}

// ServeListener is Serve on a listener of the caller's.
func (g *Gateway) ServeListener(ctx context.Context, ln net.Listener, log *slog.Logger) (stop func()) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hs := &http.Server{
		Handler:   g,
		TLSConfig: g.cfg.TLS,
		// Every phase of a connection has a deadline, so that a client cannot hold one
		// by sending slowly or not at all; the write deadline, counted from the end of the
		// headers, leaves room for the body and the wait for the guard or the streams.
		ReadHeaderTimeout: g.cfg.ReadHeaderTimeout,
		ReadTimeout:       g.cfg.ReadTimeout,
		WriteTimeout:      g.cfg.ReadTimeout + g.cfg.Timeout + 5*time.Second,
		IdleTimeout:       g.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		// Clients' mistakes (a header too slow, a connection reset) are theirs to see:
		// logged only when debugging, so that they cannot flood the log.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	// Past MaxConns, connections wait in the listen queue until one closes.
	ln = netutil.LimitListener(ln, g.cfg.MaxConns)
	if g.cfg.TLS != nil {
		// The listener's *tls.Conn is the outermost, so that http.Server handshakes
		// within its read timeouts.
		ln = tls.NewListener(ln, g.cfg.TLS)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http gateway", "err", err)
		}
	}()
	return func() {
		shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if hs.Shutdown(shut) != nil {
			_ = hs.Close() // requests still in hand after the grace period are cut
		}
		<-done
	}
}
