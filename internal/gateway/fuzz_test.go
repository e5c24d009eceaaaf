package gateway_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"runtime/metrics"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/gateway"
	"github.com/troy-audit/troy/internal/pipeline"
)

// The fuzz targets send arbitrary bodies (and trace ids) to each handler that decodes a
// request, through the gateway's ServeHTTP over a real in-memory NATS with the guard
// running: no input panics, every refusal is a 4xx with a JSON error body (a 503 only
// when the guard itself answers so, such as a policy it does not have), and the memory a
// request allocates stays within a bound proportional to its body.

const fuzzMaxBody = 64 << 10

// fuzzGateway is a gateway over a bus whose streams drop their oldest events, so that a
// long fuzzing run keeps its memory.
func fuzzGateway(f *testing.F) *gateway.Gateway {
	g, _ := newGatewayOn(f, bus.Options{Memory: true, RetainBytes: 32 << 20},
		pipeline.Config{Only: []string{pipeline.Guard}}, gateway.Config{MaxBody: fuzzMaxBody})
	return g
}

var heapAllocs = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}

func allocated() uint64 {
	metrics.Read(heapAllocs)
	return heapAllocs[0].Value.Uint64()
}

// maxAlloc bounds what one request may allocate, the guard's evaluation and the event's
// storage in the in-process server included: a body decodes into maps and slices some
// tens of times its size, and a request has a fixed cost under a megabyte.
func maxAlloc(body int) uint64 { return 64*uint64(body) + 4<<20 }

func fuzzServe(t *testing.T, g *gateway.Gateway, path string, body []byte) {
	req := httptest.NewRequest("POST", path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	before := allocated()
	g.ServeHTTP(rec, req)
	if n := allocated() - before; n > maxAlloc(len(body)) {
		t.Fatalf("%s: a body of %d bytes allocated %d bytes, over %d", path, len(body), n, maxAlloc(len(body)))
	}
	status := rec.Code
	if status < 400 {
		if status != http.StatusOK && status != http.StatusAccepted {
			t.Fatalf("%s: status %d: %s", path, status, rec.Body)
		}
		return
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" || !utf8.ValidString(e.Error.Message) {
		t.Fatalf("%s: status %d with a body that is not a JSON error: %q (%v)", path, status, rec.Body, err)
	}
	if rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%s: an error of type %q", path, rec.Header().Get("Content-Type"))
	}
	if status >= 500 && !(status == http.StatusServiceUnavailable && e.Error.Code == "guard") {
		t.Fatalf("%s: status %d for a request's content: %s", path, status, rec.Body)
	}
}

func FuzzGuardCheck(f *testing.F) {
	for _, s := range []string{
		`{"session": "s", "agent": "a", "step": {"action": "read", "input": {"q": 1}, "metadata": {"permission_level": "admin"}}}`,
		`{"session": "s", "agent": "a", "mode": "monitor", "seq": 0, "agent_metadata": {"v": 1.5}, "step": {"action": "bash", "type": "tool_call"}}`,
		`{"session": "s", "step": {"action": "x", "type": "tool"}}`,
		`{"session": "s", "agent": "a", "policy": "0000", "step": {"action": "x"}}`,
		`{"session": 1}`, `[]`, `{"step": {"input": [1, 2]}}`, `{"session": "s", "step": {"action": "a", "input": {"n": 1e400}}}`,
	} {
		f.Add([]byte(s))
	}
	g := fuzzGateway(f)
	f.Fuzz(func(t *testing.T, body []byte) { fuzzServe(t, g, "/v1/guard/check", body) })
}

func FuzzSteps(f *testing.F) {
	for _, s := range []string{
		`{"trace_id": "t", "agent": "a", "run": "r", "seq": 0, "trace_metadata": {"v": "1"}, "step": {"step_id": "s1", "type": "tool_call", "description": "d", "input": {"a": [1, {"b": null}]}, "output": {}, "metadata": {}}}`,
		`{"trace_id": "t", "agent": "a", "run": "r", "seq": -1, "step": {"step_id": "s1", "type": "llm_call"}}`,
		`{"trace_id": "t.*>", "agent": "a b", "run": "r", "seq": 3, "step": {"step_id": "s", "type": "decision", "timestamp": "2026-01-01T00:00:00Z", "parent_step_id": "p"}}`,
		`{"trace_id": "", "seq": 0}`, `{"seq": 1e3}`, `null`, `{"step": "x"}`,
	} {
		f.Add([]byte(s))
	}
	g := fuzzGateway(f)
	f.Fuzz(func(t *testing.T, body []byte) { fuzzServe(t, g, "/v1/steps", body) })
}

// tracePath is the path of a trace's endpoint, or "" when id cannot be one (the router
// redirects paths such as /v1/traces/../end to their clean form before any handler).
func tracePath(id, what string) string {
	u := "/v1/traces/" + url.PathEscape(id) + "/" + what
	if !utf8.ValidString(id) || path.Clean(u) != u {
		return ""
	}
	if _, err := http.NewRequest("POST", "http://x"+u, nil); err != nil {
		return ""
	}
	return u
}

func FuzzOutput(f *testing.F) {
	for _, s := range []struct{ id, body string }{
		{"t", `{"agent": "a", "run": "r", "step_id": "s1", "output": {"x": [1, 2.5, "y"]}}`},
		{"sess", `{"agent": "a", "step_id": "step-0", "output": {"ok": true}}`},
		{"t/../x", `{"agent": "a", "run": "r"}`},
		{"", `{"agent": ""}`},
		{"t", `{"agent": "a", "run": "r", "step_id": "s", "output": []}`},
	} {
		f.Add(s.id, []byte(s.body))
	}
	g := fuzzGateway(f)
	f.Fuzz(func(t *testing.T, id string, body []byte) {
		if p := tracePath(id, "output"); p != "" {
			fuzzServe(t, g, p, body)
		}
	})
}

func FuzzEnd(f *testing.F) {
	for _, s := range []struct{ id, body string }{
		{"t", `{"agent": "a", "run": "r", "steps": 2}`},
		{"sess", `{"agent": "a"}`},
		{"t", `{"agent": "a", "run": "r", "steps": -5}`},
		{"t", `{"agent": "a", "run": "r", "steps": 99999999999999999999}`},
		{"~", `{}`},
	} {
		f.Add(s.id, []byte(s.body))
	}
	g := fuzzGateway(f)
	f.Fuzz(func(t *testing.T, id string, body []byte) {
		if p := tracePath(id, "end"); p != "" {
			fuzzServe(t, g, p, body)
		}
	})
}

// FuzzParseTokens reads tokens files of any content: no panic, an error is one line
// naming the file, and every token read has a role, an agent token its agent.
//
//	go test ./internal/gateway -run XXX -fuzz FuzzParseTokens -fuzztime 1m
func FuzzParseTokens(f *testing.F) {
	for _, s := range []string{
		"# issued\nsha256:" + strings.Repeat("ab", 32) + " agent \"support bot\"\n",
		"sha256:" + strings.Repeat("0", 64) + " reader\nplain-token-123\n",
		"sha256:zz admin", "Bearer abc", "a,b", "sha256:" + strings.Repeat("1", 64) + " agent",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		toks, err := gateway.ParseTokens("tokens.txt", text)
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "tokens.txt") {
				t.Fatalf("error %q: want one line naming the file", msg)
			}
			return
		}
		for _, tok := range toks {
			switch {
			case tok.Role != gateway.RoleAgent && tok.Role != gateway.RoleReader && tok.Role != gateway.RoleAdmin:
				t.Fatalf("token with role %q", tok.Role)
			case tok.Role == gateway.RoleAgent && tok.Agent == "":
				t.Fatalf("agent token without an agent from %q", text)
			case tok.Plain && tok.Role != gateway.RoleAdmin:
				t.Fatalf("a plain token that is not admin: %+v", tok)
			}
		}
	})
}
