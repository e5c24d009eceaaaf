package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/servetest"
)

// otlpServe is a troyctl serve process with both OTLP receivers on.
type otlpServe struct {
	*process
	dataDir, httpURL, grpcAddr, metrics string
	tokens                              map[string]string // by name: agent, admin, reader
}

func startOTLPServe(t *testing.T) *otlpServe {
	t.Helper()
	s := &otlpServe{dataDir: filepath.Join(t.TempDir(), "data"), tokens: map[string]string{}}
	s.tokens["agent"] = httpToken(t, s.dataDir, "agent", "support-assistant")
	s.tokens["admin"] = httpToken(t, s.dataDir, "admin")
	s.tokens["reader"] = httpToken(t, s.dataDir, "reader")
	httpPort, grpcPort, metricsPort := servetest.FreePort(t), servetest.FreePort(t), servetest.FreePort(t)
	s.httpURL = fmt.Sprintf("http://127.0.0.1:%d/v1/traces", httpPort)
	s.grpcAddr = fmt.Sprintf("127.0.0.1:%d", grpcPort)
	s.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	s.process = startServeCmd(t, execTroyctl(t, "serve", "--data-dir", s.dataDir, "--listen", fmt.Sprintf("127.0.0.1:%d", servetest.FreePort(t)),
		"--metrics", fmt.Sprintf("127.0.0.1:%d", metricsPort), "--policy", example(t, "policy.json"), "--idle-timeout", "0",
		"--otlp", fmt.Sprintf("127.0.0.1:%d", httpPort), "--otlp-grpc", s.grpcAddr))
	return s
}

// report waits for the report of a trace whose steps number want, and returns it.
func (s *otlpServe) report(t *testing.T, agentName, traceID string, want int) schemas.AuditResult {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last schemas.AuditResult
	for {
		matches, _ := filepath.Glob(filepath.Join(s.dataDir, "reports", agentName, "*"+traceID+"*", "audit.json"))
		if len(matches) == 1 {
			if raw, err := os.ReadFile(matches[0]); err == nil && json.Unmarshal(raw, &last) == nil && len(last.Trace.Steps) == want {
				return last
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no report of %s/%s with %d steps (last had %d):\n%s", agentName, traceID, want, len(last.Trace.Steps), s.log())
		}
		time.Sleep(50 * time.Millisecond) // polling for the reporter's file, bounded by the deadline
	}
}

// agentRun records, with the real SDK, an agent run under the GenAI conventions: a chat,
// a tool reading personal data, a tool sending it outside, each under invoke_agent; and
// a span of an unrelated service. It returns the spans as they ended.
func agentRun(agentName string) ([]sdktrace.ReadOnlySpan, trace.SpanContext) {
	rec := tracetest.NewSpanRecorder()
	res := resource.NewSchemaless(attribute.String("service.name", "support-service"))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithResource(res))
	tr := tp.Tracer("support-agent")
	ctx, root := tr.Start(context.Background(), "invoke_agent "+agentName, trace.WithAttributes(
		attribute.String("gen_ai.operation.name", "invoke_agent"), attribute.String("gen_ai.agent.name", agentName)))
	_, chat := tr.Start(ctx, "chat gpt-4o-mini", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("gen_ai.operation.name", "chat"), attribute.String("gen_ai.request.model", "gpt-4o-mini"),
		attribute.String("gen_ai.input.messages", `[{"role":"user","parts":[{"type":"text","content":"Why is refund 8812 late?"}]}]`)))
	chat.End()
	tool := func(name, args string, attrs ...attribute.KeyValue) {
		_, sp := tr.Start(ctx, "execute_tool "+name, trace.WithAttributes(append([]attribute.KeyValue{
			attribute.String("gen_ai.operation.name", "execute_tool"), attribute.String("gen_ai.tool.name", name),
			attribute.String("gen_ai.tool.call.arguments", args)}, attrs...)...))
		sp.End()
	}
	tool("get_customer_profile", `{"customer_id":"cus_8812"}`, attribute.String("troy.data_classification", "pii"))
	tool("http_post", `{"url":"https://enrich.example-partner.io/v1/people","body":{"email":"jane.doe@example.com"}}`, attribute.String("troy.network_zone", "external"))
	root.End()
	// Another service's request, not an agent's: ignored.
	_, other := tr.Start(context.Background(), "GET /healthz", trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attribute.String("http.request.method", "GET")))
	other.End()
	return rec.Ended(), root.SpanContext()
}

func TestServeOTLP(t *testing.T) {
	s := startOTLPServe(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	httpExporter := func(token string) *otlptrace.Exporter {
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(s.httpURL), otlptracehttp.WithHeaders(map[string]string{"Authorization": "Bearer " + token}),
			otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}))
		if err != nil {
			t.Fatal(err)
		}
		return exp
	}
	spans, root := agentRun("support-assistant")
	exp := httpExporter(s.tokens["agent"])
	// Children first, then everything again (an exporter's retry), then the root last and
	// twice: one step per span all the same.
	var children []sdktrace.ReadOnlySpan
	var rootSpan sdktrace.ReadOnlySpan
	for _, sp := range spans {
		if sp.SpanContext().SpanID() == root.SpanID() {
			rootSpan = sp
		} else {
			children = append(children, sp)
		}
	}
	slices.Reverse(children)
	for _, batch := range [][]sdktrace.ReadOnlySpan{children, children, {rootSpan}, {rootSpan}} {
		if err := exp.ExportSpans(ctx, batch); err != nil {
			t.Fatalf("export over OTLP/HTTP: %v\n%s", err, s.log())
		}
	}
	traceID := root.TraceID().String()
	audit := s.report(t, "support-assistant", traceID, 3)
	var steps []string
	for _, st := range audit.Trace.Steps {
		parent := ""
		if st.ParentStepID != nil {
			parent = *st.ParentStepID
		}
		steps = append(steps, st.Type+":"+st.Description)
		if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(st.StepID) || parent != "" {
			t.Errorf("step %s: want the span id as its id and no parent (invoke_agent is not a step), parent %q", st.StepID, parent)
		}
	}
	if !slices.Equal(steps, []string{"llm_call:gpt-4o-mini", "tool_call:get_customer_profile", "tool_call:http_post"}) {
		t.Errorf("steps: %v", steps)
	}
	if got := audit.Trace.Steps[2].Input["url"]; got != "https://enrich.example-partner.io/v1/people" {
		t.Errorf("http_post's input: %v", audit.Trace.Steps[2].Input)
	}
	var rules []string
	for _, v := range audit.Violations {
		rules = append(rules, v.RuleID)
	}
	if !slices.Contains(rules, "pii-exfiltration-protection") {
		t.Errorf("violations %v: want pii-exfiltration-protection", rules)
	}

	// A span that comes after its trace was reported is one more step of it.
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	_, late := tp.Tracer("support-agent").Start(trace.ContextWithSpanContext(ctx, root), "execute_tool send_email", trace.WithAttributes(
		attribute.String("gen_ai.operation.name", "execute_tool"), attribute.String("gen_ai.tool.name", "send_email"),
		attribute.String("gen_ai.tool.call.arguments", `{"to":"jane.doe@example.com"}`)))
	late.End()
	audit = s.report(t, "support-assistant", traceID, 4)
	if d := audit.Trace.Steps[3].Description; d != "send_email" {
		t.Errorf("the late span's step: %q", d)
	}

	// OTLP/gRPC, with an admin's token: the agent is the span's.
	grpcExp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(s.grpcAddr), otlptracegrpc.WithInsecure(),
		otlptracegrpc.WithHeaders(map[string]string{"authorization": "Bearer " + s.tokens["admin"]}))
	if err != nil {
		t.Fatal(err)
	}
	defer grpcExp.Shutdown(context.Background())
	spans, root = agentRun("research-agent")
	if err := grpcExp.ExportSpans(ctx, spans); err != nil {
		t.Fatalf("export over OTLP/gRPC: %v", err)
	}
	s.report(t, "research-agent", root.TraceID().String(), 3)

	// A reader's token sends nothing; no token, nothing either.
	for _, token := range []string{s.tokens["reader"], "nope"} {
		if err := httpExporter(token).ExportSpans(ctx, spans); err == nil {
			t.Errorf("an export with token %.12s… was accepted", token)
		}
	}

	// What was ignored and repeated shows in /metrics.
	resp, err := http.Get(s.metrics)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metric := func(name string) float64 {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(body)
		if m == nil {
			t.Fatalf("/metrics has no %s:\n%s", name, body)
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v
	}
	if got := metric(`troy_otlp_spans_total{outcome="ignored"}`); got < 2 {
		t.Errorf("ignored spans: %v, want the two unrelated services' spans", got)
	}
	if got := metric(`troy_otlp_spans_total{outcome="duplicate"}`); got < 4 {
		t.Errorf("duplicate spans: %v, want the retried export's and the root's", got)
	}
	if got := metric(`troy_otlp_refused_exports_total`); got < 2 {
		t.Errorf("refused exports: %v", got)
	}
	if strings.Contains(s.log(), "panic") {
		t.Errorf("serve's log:\n%s", s.log())
	}
}
