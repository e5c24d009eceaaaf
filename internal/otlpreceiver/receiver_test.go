package otlpreceiver

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/troy-audit/troy/schemas"
)

func newTestReceiver(t *testing.T, cfg Config) (*Receiver, chan published) {
	t.Helper()
	out := make(chan published, 64)
	cfg.Publish = func(_ context.Context, tr *schemas.Trace, earlier int) error {
		out <- published{tr, earlier}
		return nil
	}
	if cfg.Settle == 0 {
		cfg.Settle = 20 * time.Millisecond
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx, time.Second) }()
	t.Cleanup(func() { cancel(); <-done })
	return r, out
}

// spans builds an export of one agent's trace: an invoke_agent root (when root) and tool
// calls, each a span with the id given.
func spans(traceID string, root bool, tools ...string) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "svc")
	ss := rs.ScopeSpans().AppendEmpty()
	var tid pcommon.TraceID
	hex.Decode(tid[:], []byte(traceID))
	rootID := pcommon.SpanID{1, 1, 1, 1, 1, 1, 1, 1}
	start := pcommon.NewTimestampFromTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if root {
		sp := ss.Spans().AppendEmpty()
		sp.SetTraceID(tid)
		sp.SetSpanID(rootID)
		sp.SetName("invoke_agent bot")
		sp.SetStartTimestamp(start)
		sp.SetEndTimestamp(start + 1e9)
		sp.Attributes().PutStr("gen_ai.operation.name", "invoke_agent")
		sp.Attributes().PutStr("gen_ai.agent.name", "bot")
	}
	for i, name := range tools {
		sp := ss.Spans().AppendEmpty()
		sp.SetTraceID(tid)
		sp.SetSpanID(pcommon.SpanID{2, 0, 0, 0, 0, 0, 0, byte(len(name) + i)})
		sp.SetParentSpanID(rootID)
		sp.SetName("execute_tool " + name)
		sp.SetStartTimestamp(start + pcommon.Timestamp(i+1)*1e6)
		sp.SetEndTimestamp(start + pcommon.Timestamp(i+2)*1e6)
		sp.Attributes().PutStr("gen_ai.operation.name", "execute_tool")
		sp.Attributes().PutStr("gen_ai.tool.name", name)
		sp.Attributes().PutStr("gen_ai.tool.call.arguments", `{"to":"x@example.com"}`)
	}
	return td
}

const traceA = "0af7651916cd43dd8448eb211c80319c"

func allowAll(func(string) string, bool) Caller { return Caller{OK: true} }

// tokens: "agent-bot" speaks for bot, "agent-eve" for eve, "admin" for any, "reader" none.
func tokens(header func(string) string, _ bool) Caller {
	switch strings.TrimPrefix(header("Authorization"), "Bearer ") {
	case "agent-bot":
		return Caller{OK: true, Agent: "bot"}
	case "agent-eve":
		return Caller{OK: true, Agent: "eve"}
	case "admin":
		return Caller{OK: true}
	case "reader":
		return Caller{OK: true, Refused: "a reader token may not send traces"}
	}
	return Caller{}
}

func post(t *testing.T, url string, body []byte, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestHTTP(t *testing.T) {
	r, out := newTestReceiver(t, Config{MaxBody: 1 << 16})
	srv := httptest.NewServer(r.Handler(tokens))
	defer srv.Close()
	url := srv.URL + TracesPath
	req := ptraceotlp.NewExportRequestFromTraces(spans(traceA, true, "send_email"))
	protoBody, _ := req.MarshalProto()
	jsonBody, _ := req.MarshalJSON()
	protoHeader := map[string]string{"Content-Type": ctProto, "Authorization": "Bearer admin"}

	for _, c := range []struct {
		name   string
		body   []byte
		header map[string]string
		want   int
	}{
		{"no token", protoBody, map[string]string{"Content-Type": ctProto}, 401},
		{"a reader's token", protoBody, map[string]string{"Content-Type": ctProto, "Authorization": "Bearer reader"}, 403},
		{"another content type", protoBody, map[string]string{"Content-Type": "text/plain", "Authorization": "Bearer admin"}, 415},
		{"another encoding", protoBody, map[string]string{"Content-Type": ctProto, "Content-Encoding": "br", "Authorization": "Bearer admin"}, 415},
		{"not OTLP", []byte("\xff\xff\xff"), protoHeader, 400},
		{"over the limit", bytes.Repeat([]byte{0}, 1<<17), protoHeader, 413},
		{"a gzip bomb", gz(bytes.Repeat([]byte{0}, 1<<20)), map[string]string{"Content-Type": ctProto, "Content-Encoding": "gzip", "Authorization": "Bearer admin"}, 413},
		{"broken gzip", []byte("not gzip"), map[string]string{"Content-Type": ctProto, "Content-Encoding": "gzip", "Authorization": "Bearer admin"}, 400},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, b := post(t, url, c.body, c.header)
			if resp.StatusCode != c.want {
				t.Fatalf("HTTP %d, want %d: %s", resp.StatusCode, c.want, b)
			}
			var st spb.Status
			if err := proto.Unmarshal(b, &st); err != nil || !strings.HasPrefix(st.Message, "troy: ") {
				t.Fatalf("the body is not a google.rpc.Status: %v %q", err, b)
			}
		})
	}
	if resp, _ := http.Get(url); resp.StatusCode != 401 {
		t.Errorf("GET without a token: HTTP %d", resp.StatusCode)
	}

	// Protobuf, JSON and gzip, the same export three times: one trace, one step a span.
	for _, c := range []struct {
		body   []byte
		header map[string]string
	}{
		{protoBody, protoHeader},
		{jsonBody, map[string]string{"Content-Type": ctJSON, "Authorization": "Bearer admin"}},
		{gz(protoBody), map[string]string{"Content-Type": ctProto, "Content-Encoding": "gzip", "Authorization": "Bearer admin"}},
	} {
		resp, b := post(t, url, c.body, c.header)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != c.header["Content-Type"] {
			t.Fatalf("HTTP %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
	}
	p := next(t, out)
	if p.earlier != 0 || p.t.AgentName != "bot" || len(p.t.Steps) != 1 || p.t.Steps[0].Description != "send_email" {
		t.Fatalf("published %+v", p)
	}
	if c := r.Counts(); c.Duplicates != 4 || c.Exports != 3 {
		t.Fatalf("counts %+v", c)
	}
}

// An agent's token sends its agent's traces: a trace it opened is its agent's whatever
// the spans say, and another agent's token cannot add to it (partial success).
func TestAgentScope(t *testing.T) {
	r, out := newTestReceiver(t, Config{})
	srv := httptest.NewServer(r.Handler(tokens))
	defer srv.Close()
	send := func(token string, td ptrace.Traces) ptraceotlp.ExportResponse {
		body, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
		resp, b := post(t, srv.URL+TracesPath, body, map[string]string{"Content-Type": ctProto, "Authorization": "Bearer " + token})
		if resp.StatusCode != 200 {
			t.Fatalf("HTTP %d: %s", resp.StatusCode, b)
		}
		er := ptraceotlp.NewExportResponse()
		if err := er.UnmarshalProto(b); err != nil {
			t.Fatal(err)
		}
		return er
	}
	if er := send("agent-eve", spans(traceA, false, "read_file")); er.PartialSuccess().RejectedSpans() != 0 {
		t.Fatalf("eve's own trace: %v", er.PartialSuccess().ErrorMessage())
	}
	er := send("agent-bot", spans(traceA, true, "send_email"))
	if er.PartialSuccess().RejectedSpans() != 2 || !strings.Contains(er.PartialSuccess().ErrorMessage(), `is not agent "bot"'s`) {
		t.Fatalf("bot's spans in eve's trace: rejected %d, %q", er.PartialSuccess().RejectedSpans(), er.PartialSuccess().ErrorMessage())
	}
	send("agent-eve", spans(traceA, true))
	p := next(t, out)
	if p.t.AgentName != "eve" || len(p.t.Steps) != 1 || p.t.Steps[0].Description != "read_file" {
		t.Fatalf("published %+v", p.t)
	}
}

// Children exported after their root join the trace while it settles; later ones make a
// part published with how many steps came before.
func TestLateSpans(t *testing.T) {
	r, out := newTestReceiver(t, Config{Settle: 200 * time.Millisecond})
	r.Export(spans(traceA, true, "a"), "")
	r.Export(spans(traceA, false, "a", "bb"), "") // a again (a duplicate) and bb
	p := next(t, out)
	if len(p.t.Steps) != 2 || p.t.Steps[0].Description != "a" || p.t.Steps[1].Description != "bb" || p.earlier != 0 {
		t.Fatalf("first publication: %d steps, earlier %d", len(p.t.Steps), p.earlier)
	}
	r.Export(spans(traceA, false, "a", "bb", "ccc"), "")
	p = next(t, out)
	if len(p.t.Steps) != 1 || p.t.Steps[0].Description != "ccc" || p.earlier != 2 {
		t.Fatalf("late part: %+v, earlier %d", p.t.Steps, p.earlier)
	}
}

func TestGRPC(t *testing.T) {
	r, out := newTestReceiver(t, Config{})
	_, addr, stop, err := r.Start(Listeners{GRPC: "127.0.0.1:0"}, tokens)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := ptraceotlp.NewGRPCClient(cc)
	req := ptraceotlp.NewExportRequestFromTraces(spans(traceA, true, "send_email"))
	for _, c := range []struct {
		token string
		want  codes.Code
	}{{"", codes.Unauthenticated}, {"reader", codes.PermissionDenied}, {"agent-bot", codes.OK}} {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+c.token)
		if _, err := client.Export(ctx, req); status.Code(err) != c.want {
			t.Fatalf("token %q: %v, want %v", c.token, err, c.want)
		}
	}
	if p := next(t, out); p.t.AgentName != "bot" || len(p.t.Steps) != 1 {
		t.Fatalf("published %+v", p.t)
	}
}

// While the traces held reach MaxQueue, exports are refused as retryable, before
// anything of them is taken.
func TestBusy(t *testing.T) {
	// No Run: what is taken stays held.
	r, err := New(Config{MaxQueue: 1, Publish: func(context.Context, *schemas.Trace, int) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Export(spans(traceA, true, "a"), ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Export(spans("1af7651916cd43dd8448eb211c80319c", true, "a"), ""); err != errBusy {
		t.Fatalf("a second trace while one is held in a queue of one: %v, want busy", err)
	}
	if c := r.Counts(); c.Spans != 2 || c.RefusedExports != 1 {
		t.Fatalf("counts %+v: the refused export's spans were taken", c)
	}
}

// FuzzHandler: no body and no headers make the handler panic or answer outside the
// statuses OTLP/HTTP knows.
func FuzzHandler(f *testing.F) {
	body, _ := ptraceotlp.NewExportRequestFromTraces(spans(traceA, true, "send_email")).MarshalProto()
	js, _ := ptraceotlp.NewExportRequestFromTraces(spans(traceA, true, "send_email")).MarshalJSON()
	f.Add(body, ctProto, "")
	f.Add(js, ctJSON, "")
	f.Add(gz(js), ctJSON, "gzip")
	f.Fuzz(func(t *testing.T, body []byte, ct, enc string) {
		r, err := New(Config{MaxBody: 1 << 16, Publish: func(context.Context, *schemas.Trace, int) error { return nil }})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, TracesPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Content-Encoding", enc)
		w := httptest.NewRecorder()
		r.Handler(allowAll).ServeHTTP(w, req)
		switch w.Code {
		case 200, 400, 413, 415:
		default:
			t.Fatalf("HTTP %d: %s", w.Code, w.Body)
		}
	})
}
