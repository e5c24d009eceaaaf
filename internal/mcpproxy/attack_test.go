package mcpproxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/localguard"
	"github.com/troy-audit/troy/policies"
)

const attackSecret = "AKIA-ATTACK-TEST-SECRET"

// startAttackUpstream runs a real Streamable HTTP MCP server (the Go SDK's) with a tool
// read_secret that answers attackSecret.
func startAttackUpstream(t *testing.T) string {
	t.Helper()
	srv := mcp.NewServer(&mcp.Implementation{Name: "upstream", Version: "1.0.0"}, nil)
	type in struct {
		Path string `json:"path"`
	}
	mcp.AddTool(srv, &mcp.Tool{Name: "read_secret", Description: "Reads a secret."}, func(ctx context.Context, _ *mcp.CallToolRequest, a in) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: attackSecret}}}, nil, nil
	})
	hs := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	t.Cleanup(hs.Close)
	return hs.URL + "/mcp"
}

// attackProxy is an HTTP proxy in front of upstream, served for real; a request's agent is
// its X-Agent header (what the listener's token check hands on), and the reports of ended
// sessions are collected.
type attackProxy struct {
	p     *HTTP
	url   string
	mu    sync.Mutex
	ended []Result
}

func startAttackProxy(t *testing.T, upstream string, opts HTTPOptions) *attackProxy {
	t.Helper()
	pol, err := policies.Parse([]byte(`{"policy_id":"attack","rules":[{"rule_id":"no-delete","description":"Deletes.","severity":"high","weight":40,"condition":"step.metadata.mcp_tool == 'delete_all'"}]}`), "attack.json", "attack")
	if err != nil {
		t.Fatal(err)
	}
	compiled, err := evaluator.Compile(pol)
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	ap := &attackProxy{}
	opts.Upstream, opts.DataDir = upstream, data
	opts.Guards = LocalGuards{Policy: compiled, Options: localguard.Options{DataDir: data}}
	opts.OnEnd = func(r Result, err error) {
		if err != nil {
			t.Errorf("session %s: %v", r.Session, err)
		}
		ap.mu.Lock()
		ap.ended = append(ap.ended, r)
		ap.mu.Unlock()
	}
	ap.p, err = NewHTTP(opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap.p.ServeHTTP(w, r.WithContext(WithAgent(r.Context(), r.Header.Get("X-Agent"))))
	}))
	t.Cleanup(hs.Close)
	ap.url = hs.URL + ap.p.Path()
	return ap
}

// post sends one JSON-RPC message as agent, in session (may be empty), and returns the
// status, the session header and the body (an event stream's data lines).
func post(t *testing.T, url, agent, session, body string) (int, string, string) {
	t.Helper()
	return send(t, http.MethodPost, url, agent, session, body)
}

func send(t *testing.T, method, url, agent, session, body string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("X-Agent", agent)
	if session != "" {
		req.Header.Set(headerSession, session)
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var data bytes.Buffer
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				data.WriteString(d)
				break // one answer per request here
			}
		}
	} else {
		_, _ = io.Copy(&data, resp.Body)
	}
	return resp.StatusCode, resp.Header.Get(headerSession), data.String()
}

// initialize opens a session as agent and returns its id.
func initialize(t *testing.T, url, agent string) string {
	t.Helper()
	code, sid, body := post(t, url, agent, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"attacker","version":"1"}}}`)
	if code != http.StatusOK || sid == "" {
		t.Fatalf("initialize as %s: HTTP %d, session %q: %s", agent, code, sid, body)
	}
	if code, _, body := post(t, url, agent, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); code >= 300 {
		t.Fatalf("initialized: HTTP %d: %s", code, body)
	}
	return sid
}

// Finding: a tools/call whose id is written in another form than the server writes it
// back ("\u0037" for "7", 7.0 for 7) is checked and relayed, and so is the server's
// answer, but the answer is never matched with the call: the tool's output is not
// recorded (rules on outputs never see what the tool returned, and the report shows the
// call as answering nothing), and the call stays in the session's table of requests in
// flight for as long as the session lives, with its id (up to 32 MiB each).
func TestAttackCallIDFormHidesToolOutput(t *testing.T) {
	upstream := startAttackUpstream(t)
	for _, id := range []string{`"\u0037"`, `7.0`, `"7` + strings.Repeat(`\u0020`, 20) + `"`} {
		t.Run(id[:min(len(id), 12)], func(t *testing.T) {
			ap := startAttackProxy(t, upstream, HTTPOptions{})
			sid := initialize(t, ap.url, "mallory")
			code, _, body := post(t, ap.url, "mallory", sid, `{"jsonrpc":"2.0","id":`+id+`,"method":"tools/call","params":{"name":"read_secret","arguments":{"path":"/etc/key"}}}`)
			if code != http.StatusOK || !strings.Contains(body, attackSecret) {
				t.Fatalf("tools/call: HTTP %d: %s; want the server's answer relayed", code, body)
			}
			ap.p.mu.Lock()
			s := ap.p.sessions[sessionKey{agent: "mallory", id: sid}]
			ap.p.mu.Unlock()
			if s == nil {
				t.Fatal("no session")
			}
			s.mu.Lock()
			left := len(s.inFlight)
			s.mu.Unlock()
			ap.p.Close()
			if len(ap.ended) != 1 || ap.ended[0].Report.JSON == "" {
				t.Fatalf("sessions ended: %+v", ap.ended)
			}
			audit, err := os.ReadFile(ap.ended[0].Report.JSON)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(audit, []byte("read_secret")) {
				t.Fatalf("audit.json has no read_secret step:\n%s", audit)
			}
			if !bytes.Contains(audit, []byte(attackSecret)) {
				t.Errorf("tools/call with id %s: the tool's answer (%s) reached the client but is not in the session's record", shortRaw([]byte(id)), attackSecret)
			}
			if left != 0 {
				t.Errorf("tools/call with id %s: %d requests still in flight after their answer was relayed", shortRaw([]byte(id)), left)
			}
		})
	}
}

// Finding: the proxy's session table (MaxSessions, 1,024 by default) is shared by every
// agent, and a request naming a session id the proxy has not seen takes a place in it,
// even when the server answers that it knows no such session. One agent's token, with
// made-up session ids, fills the table: every other agent's initialize is refused (503)
// until the made-up sessions go idle (30 minutes), and can be filled again.
func TestAttackMadeUpSessionsLockOutOtherAgents(t *testing.T) {
	upstream := startAttackUpstream(t)
	const max = 8
	ap := startAttackProxy(t, upstream, HTTPOptions{MaxSessions: max})
	for i := range max {
		code, _, _ := post(t, ap.url, "mallory", fmt.Sprintf("made-up-%d", i), `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
		if code != http.StatusNotFound {
			t.Fatalf("made-up session %d: HTTP %d, want the server's 404", i, code)
		}
	}
	code, _, body := post(t, ap.url, "alice", "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"alice","version":"1"}}}`)
	if code != http.StatusOK {
		t.Fatalf("alice's initialize after mallory sent %d requests with made-up session ids: HTTP %d: %s", max, code, body)
	}
}

// tapTransport records the bodies of the requests that reach the server.
type tapTransport struct {
	mu     sync.Mutex
	bodies map[string][]string // method -> bodies
}

func (tt *tapTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		r.Body.Close()
		tt.mu.Lock()
		tt.bodies[r.Method] = append(tt.bodies[r.Method], string(b))
		tt.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	return http.DefaultTransport.RoundTrip(r)
}

// Finding: only a POST's body is read and checked; the body of a GET or a DELETE is
// relayed to the server unread. A tools/call in it reaches the server unchecked (and
// unrecorded), for a server that reads a body whatever the method.
func TestAttackGETBodyRelayedUnchecked(t *testing.T) {
	upstream := startAttackUpstream(t)
	tap := &tapTransport{bodies: map[string][]string{}}
	ap := startAttackProxy(t, upstream, HTTPOptions{Transport: tap})
	sid := initialize(t, ap.url, "mallory")
	call := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"delete_all","arguments":{}}}`
	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, method, ap.url, strings.NewReader(call))
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("X-Agent", "mallory")
		req.Header.Set(headerSession, sid)
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close() // a GET's stream stays open: the headers are enough
		}
		cancel()
	}
	tap.mu.Lock()
	defer tap.mu.Unlock()
	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		for _, b := range tap.bodies[method] {
			if strings.Contains(b, "tools/call") {
				t.Errorf("a %s's body reached the server unchecked: %s", method, b)
			}
		}
	}
}
