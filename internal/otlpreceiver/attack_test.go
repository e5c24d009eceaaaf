package otlpreceiver

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"

	"github.com/troy-audit/troy/ingest/otel"
	"github.com/troy-audit/troy/schemas"
)

// published is one trace handed to Publish.
type published struct {
	t       *schemas.Trace
	earlier int
}

// startAttackReceiver serves a receiver over real HTTP and gRPC listeners. Tokens:
// "Bearer mallory" is agent mallory's, "Bearer admin" an admin's; Publish hands each
// trace to the channel returned, or waits for ctx when block is set (a pipeline that
// cannot keep up).
func startAttackReceiver(t *testing.T, cfg Config, block bool) (httpAddr, grpcAddr string, out chan published) {
	t.Helper()
	out = make(chan published, 1024)
	cfg.Publish = func(ctx context.Context, tr *schemas.Trace, earlier int) error {
		if block {
			<-ctx.Done()
			return ctx.Err()
		}
		out <- published{tr, earlier}
		return nil
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); r.Run(ctx, time.Second) }()
	auth := func(header func(string) string, _ bool) Caller {
		switch header("Authorization") {
		case "Bearer mallory":
			return Caller{OK: true, Agent: "mallory"}
		case "Bearer admin":
			return Caller{OK: true}
		}
		return Caller{}
	}
	httpAddr, grpcAddr, stop, err := r.Start(Listeners{HTTP: "127.0.0.1:0", GRPC: "127.0.0.1:0"}, auth)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(); cancel(); <-ran })
	return httpAddr, grpcAddr, out
}

func traceID(n uint64) pcommon.TraceID {
	var id pcommon.TraceID
	binary.BigEndian.PutUint64(id[:8], 0xabcdef)
	binary.BigEndian.PutUint64(id[8:], n)
	return id
}

func spanID(n uint64) pcommon.SpanID {
	var id pcommon.SpanID
	binary.BigEndian.PutUint64(id[:], n+1)
	return id
}

// toolSpan adds a tool call span to ss; agentName, when set, is its gen_ai.agent.name.
func toolSpan(ss ptrace.ScopeSpans, tid pcommon.TraceID, sid, parent pcommon.SpanID, tool, agentName, arg string) {
	s := ss.Spans().AppendEmpty()
	s.SetTraceID(tid)
	s.SetSpanID(sid)
	if !parent.IsEmpty() {
		s.SetParentSpanID(parent)
	}
	s.SetName("execute_tool " + tool)
	now := time.Now()
	s.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
	s.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Millisecond)))
	s.Attributes().PutStr("gen_ai.operation.name", "execute_tool")
	s.Attributes().PutStr("gen_ai.tool.name", tool)
	s.Attributes().PutStr("gen_ai.tool.call.arguments", fmt.Sprintf(`{"arg":%q}`, arg))
	if agentName != "" {
		s.Attributes().PutStr("gen_ai.agent.name", agentName)
	}
}

func newExport(service string) (ptrace.Traces, ptrace.ScopeSpans) {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", service)
	return td, rs.ScopeSpans().AppendEmpty()
}

func postProto(t *testing.T, addr, token string, td ptrace.Traces) int {
	t.Helper()
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+TracesPath, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctProto)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func next(t *testing.T, out chan published) published {
	t.Helper()
	select {
	case p := <-out:
		return p
	case <-time.After(30 * time.Second):
		t.Fatal("no trace published in 30s")
	}
	return published{}
}

// Finding: an agent token forgets its claim on a trace. The trace ids an agent token
// sent spans for are remembered in a map of at most MaxDoneTraces (100,000) entries; one
// export that names 100,001 other trace ids first pushes its own trace out of the map, so
// the trace is published under the agent its spans name (gen_ai.agent.name), not the
// token's agent: mallory's token writes victim's traces.
func TestAttackAgentTokenForgesAnotherAgentsTrace(t *testing.T) {
	httpAddr, _, out := startAttackReceiver(t, Config{Settle: 50 * time.Millisecond}, false)
	td, ss := newExport("mallory-svc")
	forged := traceID(1 << 40)
	toolSpan(ss, forged, spanID(0), pcommon.SpanID{}, "transfer_funds", "victim", "all of it")
	// Spans of no convention, each in a trace of its own, not roots: they are ignored and
	// never published, but each trace id is claimed.
	for i := range uint64(otel.DefaultMaxDoneTraces + 1) {
		s := ss.Spans().AppendEmpty()
		s.SetTraceID(traceID(i))
		s.SetSpanID(spanID(i))
		s.SetParentSpanID(spanID(i + 1))
		s.SetName("GET")
	}
	if code := postProto(t, httpAddr, "mallory", td); code != http.StatusOK {
		t.Fatalf("export: HTTP %d", code)
	}
	p := next(t, out)
	if p.t.TraceID != forged.String() {
		t.Fatalf("published trace %s, want %s", p.t.TraceID, forged)
	}
	if p.t.AgentName != "mallory" {
		t.Fatalf("mallory's token published trace %s as agent %q's: a token scoped to mallory writes another agent's steps", p.t.TraceID, p.t.AgentName)
	}
}

// rawCodec sends bytes as they are over gRPC, so that the test can send a body that is not
// a valid message.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *(v.(*[]byte)) = data; return nil }
func (rawCodec) Name() string                       { return "proto" }

var _ encoding.Codec = rawCodec{}

// Finding: OTLP/gRPC reads and decodes the whole message (up to --otlp-max-body, 16 MiB)
// before it looks at the caller's token: a client with no token costs the server a 16 MiB
// read and a protobuf decode per request, where the HTTP receiver and the gateway refuse
// it from its headers alone. The proof: a body that is not protobuf, sent with no token,
// is answered with a decoding error, not Unauthenticated.
func TestAttackGRPCDecodesBeforeAuthenticating(t *testing.T) {
	_, grpcAddr, _ := startAttackReceiver(t, Config{}, false)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Field 1 (resource_spans) with a length beyond the message: not a valid message.
	body := append([]byte{0x0a, 0xff, 0xff, 0x03}, bytes.Repeat([]byte{0xff}, 1<<20)...)
	var reply []byte
	err = conn.Invoke(ctx, "/opentelemetry.proto.collector.trace.v1.TraceService/Export", &body, &reply, grpc.ForceCodec(rawCodec{}))
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a 1 MiB body without a token: %v; want Unauthenticated before the body is read", err)
	}
}

// Finding: the traces held for publication are bounded by their number (MaxQueue, 16,384),
// not by their bytes: MaxPendingBytes bounds only traces whose root has not come. While
// the pipeline is slow or NATS is away, every complete trace is taken and held, each up to
// MaxTraceBytes (64 MiB): 16,384 of them is a terabyte. Here the pending bound is 1 MiB and
// 24 MiB of complete traces are taken and held.
func TestAttackHeldTracesUnboundedBytes(t *testing.T) {
	httpAddr, _, _ := startAttackReceiver(t, Config{Settle: time.Millisecond, Limits: otel.Limits{MaxPendingBytes: 1 << 20}}, true)
	big := strings.Repeat("x", 1<<20)
	accepted := 0
	for i := range uint64(24) {
		td, ss := newExport("mallory-svc")
		toolSpan(ss, traceID(i), spanID(0), pcommon.SpanID{}, "upload", "", big)
		switch code := postProto(t, httpAddr, "mallory", td); code {
		case http.StatusOK:
			accepted++
		case http.StatusServiceUnavailable:
		default:
			t.Fatalf("export %d: HTTP %d", i, code)
		}
	}
	if held := accepted << 20; held > 4<<20 {
		t.Fatalf("with the pipeline stalled, %d exports of 1 MiB traces were taken and held (%d MiB) with MaxPendingBytes 1 MiB: held traces are bounded in number only", accepted, held>>20)
	}
}

// Finding: the late spans of a trace an exporter with no agent scope (an admin token, a
// client certificate: a Collector) sent are published as a trace of whatever agent those
// spans name, or of their service: a child span that names no agent is published as a
// new run of agent "checkout-svc"'s trace, with none of the earlier steps (read back
// under the wrong agent), instead of joining agent "alice"'s trace.
func TestAttackLateSpansChangeAgent(t *testing.T) {
	httpAddr, _, out := startAttackReceiver(t, Config{Settle: 20 * time.Millisecond}, false)
	tid := traceID(7)
	td, ss := newExport("checkout-svc")
	toolSpan(ss, tid, spanID(0), pcommon.SpanID{}, "search", "alice", "shoes")
	if code := postProto(t, httpAddr, "admin", td); code != http.StatusOK {
		t.Fatalf("export: HTTP %d", code)
	}
	first := next(t, out)
	if first.t.AgentName != "alice" {
		t.Fatalf("first part: agent %q, want alice", first.t.AgentName)
	}
	td, ss = newExport("checkout-svc")
	toolSpan(ss, tid, spanID(1), spanID(0), "pay", "", "card")
	if code := postProto(t, httpAddr, "admin", td); code != http.StatusOK {
		t.Fatalf("late export: HTTP %d", code)
	}
	late := next(t, out)
	if late.earlier != 1 {
		t.Fatalf("late part: earlier %d, want 1", late.earlier)
	}
	if late.t.AgentName != first.t.AgentName {
		t.Fatalf("the late part of %s's trace %s is published as agent %q's", first.t.AgentName, tid, late.t.AgentName)
	}
}
