package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/gateway"
	"github.com/troy-audit/troy/internal/otlpreceiver"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/schemas"
)

// otlpFlags are serve's flags for the OTLP receivers.
type otlpFlags struct {
	httpAddr, grpcAddr, clientCA string
	idle                         time.Duration
	maxBody                      int64
}

func (f *otlpFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.httpAddr, "otlp", "", "receive OpenTelemetry traces over OTLP/HTTP (protobuf or JSON, POST /v1/traces) on this address, such as --otlp 127.0.0.1:4318 (default: off)")
	fl.StringVar(&f.grpcAddr, "otlp-grpc", "", "receive OpenTelemetry traces over OTLP/gRPC on this address, such as --otlp-grpc 127.0.0.1:4317 (default: off)")
	fl.StringVar(&f.clientCA, "otlp-client-ca", "", "accept OTLP clients with a certificate this PEM CA signed and no token (mutual TLS, with --http-cert and --http-key); over gRPC every client must then present one")
	fl.DurationVar(&f.idle, "otlp-idle", otlpreceiver.DefaultIdle, "close an OpenTelemetry trace whose root span has not come after this long without spans")
	fl.Int64Var(&f.maxBody, "otlp-max-body", otlpreceiver.DefaultMaxBody, "largest OTLP request in bytes, after decompression")
}

// start serves the receivers until stop is called; it does nothing without --otlp or
// --otlp-grpc. Clients authenticate as at the gateway (its tokens, --http-cert for TLS),
// or with a client certificate of --otlp-client-ca.
func (f *otlpFlags) start(ctx context.Context, b *bus.Bus, srv *pipeline.Server, gw *gatewayFlags, dataDir string, insecure bool, log *slog.Logger) (stop func(), err error) {
	if f.httpAddr == "" && f.grpcAddr == "" {
		return func() {}, nil
	}
	tc, err := gw.tlsConfig()
	if err != nil {
		return nil, err
	}
	if f.clientCA != "" {
		if tc == nil {
			return nil, errors.New("--otlp-client-ca: mutual TLS needs the server's certificate too: give --http-cert and --http-key")
		}
		pem, err := os.ReadFile(f.clientCA)
		if err != nil {
			return nil, fmt.Errorf("--otlp-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--otlp-client-ca %s: no PEM certificate in it", f.clientCA)
		}
		tc = tc.Clone()
		tc.ClientCAs, tc.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	auth, err := f.authenticate(ctx, gw, dataDir, insecure, log)
	if err != nil {
		return nil, err
	}
	r, err := otlpreceiver.New(otlpreceiver.Config{
		MaxBody: f.maxBody, Idle: f.idle, Logger: log,
		Publish: func(ctx context.Context, t *schemas.Trace, earlier int) error {
			return publishOTLPTrace(ctx, b, t, earlier)
		},
	})
	if err != nil {
		return nil, err
	}
	if err := srv.Register(otlpCollectors(r)...); err != nil {
		return nil, err
	}
	runCtx, stopRunning := context.WithCancel(context.WithoutCancel(ctx))
	ran := make(chan struct{})
	go func() { defer close(ran); r.Run(runCtx, 10*time.Second) }()
	httpBound, grpcBound, stopServing, err := r.Start(otlpreceiver.Listeners{HTTP: f.httpAddr, GRPC: f.grpcAddr, TLS: tc}, auth)
	if err != nil {
		stopRunning()
		<-ran
		return nil, err
	}
	log.Info("otlp receiver", "http", httpBound, "grpc", grpcBound, "tls", tc != nil, "client_ca", f.clientCA)
	return func() {
		stopServing()
		stopRunning() // the open traces are closed and published
		<-ran
	}, nil
}

// publishOTLPTrace sends a trace of spans to the pipeline. Spans that came after their
// trace was published make a new run of it, with the steps published before: the
// pipeline evaluates and reports a trace whole, and its new report replaces the old.
func publishOTLPTrace(ctx context.Context, b *bus.Bus, t *schemas.Trace, earlier int) error {
	ref := event.TraceRef{TraceID: t.TraceID, AgentName: t.AgentName}
	if earlier == 0 {
		return pipeline.SendTrace(ctx, b, t, ref, 0)
	}
	events, err := b.Read(ctx, bus.StepsStream, event.StepsSubject(t.AgentName, t.TraceID), math.MaxUint64)
	if err != nil {
		return fmt.Errorf("read trace %s back: %w", t.TraceID, err)
	}
	// The steps of the last run, by their place in it.
	var run string
	steps := map[int]*schemas.Step{}
	for _, e := range events {
		ev, err := event.Decode[event.Step](e)
		if e.Kind != event.KindStep || err != nil || ev.Step == nil {
			continue
		}
		if ev.Run != run {
			run, steps = ev.Run, map[int]*schemas.Step{}
		}
		steps[ev.Seq] = ev.Step
	}
	all := &schemas.Trace{TraceID: t.TraceID, AgentName: t.AgentName, Metadata: t.Metadata}
	for i := 0; steps[i] != nil; i++ {
		all.Steps = append(all.Steps, steps[i])
	}
	all.Steps = append(all.Steps, t.Steps...)
	ref.Run = event.NewRun()
	return pipeline.SendTrace(ctx, b, all, ref, 0)
}

// authenticate accepts the gateway's tokens: an agent's token sends that agent's traces,
// an admin's any; a reader's none. A verified client certificate is an admin's.
func (f *otlpFlags) authenticate(ctx context.Context, gw *gatewayFlags, dataDir string, insecure bool, log *slog.Logger) (otlpreceiver.Authenticate, error) {
	tokens, file, err := gw.tokenSource(dataDir, log)
	if err != nil {
		return nil, err
	}
	var keys gateway.Keyring
	if err := keys.SetTokens(tokens); err != nil {
		switch {
		case f.clientCA != "":
		case insecure:
			log.Warn("OTLP AUTHENTICATION IS OFF (--insecure-no-auth, and no gateway tokens): anyone who can reach the OTLP addresses may send any agent's traces")
			return func(func(string) string, bool) otlpreceiver.Caller { return otlpreceiver.Caller{OK: true} }, nil
		default:
			return nil, fmt.Errorf("--otlp needs the gateway's tokens (troyctl auth agent NAME --http --data-dir %s, or --http-tokens FILE) or --otlp-client-ca", dataDir)
		}
	}
	if file != "" {
		go watchTokens(ctx, &keys, file, log)
	}
	return func(header func(string) string, verified bool) otlpreceiver.Caller {
		tok, ok := keys.Lookup(header("Authorization"))
		switch {
		case ok && tok.Role == gateway.RoleAgent:
			return otlpreceiver.Caller{OK: true, Agent: tok.Agent}
		case ok && tok.Role == gateway.RoleAdmin:
			return otlpreceiver.Caller{OK: true}
		case ok:
			return otlpreceiver.Caller{OK: true, Refused: "a " + string(tok.Role) + " token may not send traces"}
		case verified:
			return otlpreceiver.Caller{OK: true}
		}
		return otlpreceiver.Caller{}
	}, nil
}

// otlpCollectors expose the receiver's counts on /metrics.
func otlpCollectors(r *otlpreceiver.Receiver) []prometheus.Collector {
	counter := func(name, help string, labels prometheus.Labels, v func(otlpreceiver.Counts) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v(r.Counts())) })
	}
	spans := func(outcome string, v func(otlpreceiver.Counts) int64) prometheus.Collector {
		return counter("troy_otlp_spans_total", "OpenTelemetry spans received, by what became of them.", prometheus.Labels{"outcome": outcome}, v)
	}
	return []prometheus.Collector{
		spans("received", func(c otlpreceiver.Counts) int64 { return c.Spans }),
		spans("ignored", func(c otlpreceiver.Counts) int64 { return c.Ignored }),
		spans("duplicate", func(c otlpreceiver.Counts) int64 { return c.Duplicates }),
		spans("rejected", func(c otlpreceiver.Counts) int64 { return c.Rejected }),
		spans("late", func(c otlpreceiver.Counts) int64 { return c.Late }),
		spans("container", func(c otlpreceiver.Counts) int64 { return c.Containers }),
		counter("troy_otlp_steps_total", "Steps made of OpenTelemetry spans.", nil, func(c otlpreceiver.Counts) int64 { return c.Steps }),
		counter("troy_otlp_exports_total", "OTLP export requests taken.", nil, func(c otlpreceiver.Counts) int64 { return c.Exports }),
		counter("troy_otlp_refused_exports_total", "OTLP export requests refused whole (unauthorized, too large, busy).", nil, func(c otlpreceiver.Counts) int64 { return c.RefusedExports }),
		counter("troy_otlp_traces_total", "Traces made of OpenTelemetry spans and published.", nil, func(c otlpreceiver.Counts) int64 { return c.Traces }),
		counter("troy_otlp_failed_traces_total", "Traces of OpenTelemetry spans that could not be made or published.", nil, func(c otlpreceiver.Counts) int64 { return c.FailedTraces }),
	}
}
