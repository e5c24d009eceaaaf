package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/internal/bench"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/reporter"
	"github.com/troy-audit/troy/sdk/agent"
)

func newBenchCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load a running deployment and measure it: guard latency, pipeline throughput",
		Example: `  troyctl bench guard --nats nats://127.0.0.1:4222 --rate 5000 --concurrency 32 --duration 20s
  troyctl bench pipeline --nats nats://127.0.0.1:4222 --steps 200000 --json`,
	}
	cmd.AddCommand(newBenchGuardCmd(a), newBenchPipelineCmd(a), newBenchOTLPCmd(a))
	return cmd
}

func benchConnect(cmd *cobra.Command, nf natsFlags) (*bus.Bus, error) {
	if nf.opts.URL == "" {
		return nil, errors.New("--nats is required: point the benchmark at a running troyctl serve")
	}
	nf.resolveCreds()
	opts := nf.opts
	opts.Name, opts.Client = "troyctl-bench", true
	return bus.Open(cmd.Context(), opts)
}

func newBenchGuardCmd(a *app) *cobra.Command {
	var (
		nf     natsFlags
		opts   bench.GuardOptions
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "guard --nats URL",
		Short: "Send guard checks at a rate and concurrency; print latency percentiles and checks/s",
		Long: `Send guard checks (steps of generated agents, in monitor mode so nothing is refused) to a
running guard service from many callers, at a target rate, for a duration; print how many
were answered per second and the latency percentiles. Each caller's sessions are ended
every --per-session checks, so they are scored and reported like real ones.`,
		Example: `  troyctl bench guard --nats nats://127.0.0.1:4222 --concurrency 1
  troyctl bench guard --nats nats://127.0.0.1:4222 --rate 5000 --concurrency 32 --duration 30s --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := benchConnect(cmd, nf)
			if err != nil {
				return err
			}
			defer b.Close()
			r, err := bench.Guard(cmd.Context(), agent.New(b.Conn()), opts)
			if err != nil {
				return err
			}
			if asJSON {
				return reporter.EncodeJSON(a.stdout, r)
			}
			fmt.Fprintf(a.stdout, "guard checks: %d in %.1fs = %.0f checks/s (target %s, %d callers), %d errors, %d with violations\n",
				r.Checks, r.Seconds, r.ChecksPerS, rateText(r.TargetRate), r.Concurrency, r.Errors, r.WithViolations)
			printLatency(a.stdout, "latency", r.Latency)
			if r.FirstError != "" {
				fmt.Fprintf(a.stdout, "first error: %s\n", r.FirstError)
			}
			return nil
		},
	}
	nf.register(cmd)
	f := cmd.Flags()
	f.Float64Var(&opts.Rate, "rate", 0, "checks per second in all (0: as fast as the callers go)")
	f.IntVar(&opts.Concurrency, "concurrency", 1, "concurrent callers")
	f.DurationVar(&opts.Duration, "duration", 10*time.Second, "how long to run")
	f.IntVar(&opts.PerSession, "per-session", 20, "checks per session")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newBenchPipelineCmd(a *app) *cobra.Command {
	var (
		nf       natsFlags
		opts     bench.PipelineOptions
		policy   string
		asJSON   bool
		deadline time.Duration
	)
	cmd := &cobra.Command{
		Use:   "pipeline --nats URL",
		Short: "Publish generated traces as fast as possible; print end-to-end steps/s",
		Long: `Publish generated traces (about 1 KB of input and output per step) to a running
deployment as fast as it stores them, and wait until every trace is evaluated and scored:
the end-to-end rate, published to scored, and per-trace latency from end to score.`,
		Example: `  troyctl bench pipeline --nats nats://127.0.0.1:4222 --steps 100000
  troyctl bench pipeline --nats nats://127.0.0.1:4222 --steps 200000 --policy soc2 --json
  troyctl bench pipeline --nats nats://127.0.0.1:4222 --steps 600000 --rate 1000   # a 10-minute soak`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := benchConnect(cmd, nf)
			if err != nil {
				return err
			}
			defer b.Close()
			if policy != "" {
				c, err := loadPolicy(a, policy)
				if err != nil {
					return err
				}
				if opts.Policy, err = pipeline.NewPolicies(b).Put(cmd.Context(), c); err != nil {
					return err
				}
			}
			ctx, cancel := contextWithTimeout(cmd, deadline)
			defer cancel()
			r, err := bench.Pipeline(ctx, b, opts)
			if err != nil {
				return err
			}
			if asJSON {
				return reporter.EncodeJSON(a.stdout, r)
			}
			fmt.Fprintf(a.stdout, "pipeline: %d steps (%d traces) scored in %.2fs = %.0f steps/s end to end; published at %.0f steps/s; %d steps counted in the scores\n",
				r.Steps, r.Traces, r.Seconds, r.StepsPerS, r.PublishPerS, r.StepsScored)
			printLatency(a.stdout, "trace end to score", r.Latency)
			return nil
		},
	}
	nf.register(cmd)
	f := cmd.Flags()
	f.IntVar(&opts.Steps, "steps", 100_000, "steps to publish")
	f.IntVar(&opts.PerTrace, "per-trace", 20, "steps per trace")
	f.Float64Var(&opts.Rate, "rate", 0, "publish at this many steps/s, a trace at a time, for a steady load such as a soak (default: as fast as stored)")
	f.StringVar(&policy, "policy", "", "policy to evaluate with: a file or template (default: the server's)")
	f.DurationVar(&deadline, "timeout", 10*time.Minute, "give up after this long")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func rateText(r float64) string {
	if r <= 0 {
		return "unlimited"
	}
	return fmt.Sprintf("%.0f/s", r)
}

func printLatency(w io.Writer, what string, l bench.Latency) {
	fmt.Fprintf(w, "%s: p50 %v  p90 %v  p99 %v  p99.9 %v  max %v\n", what,
		l.P50.Round(time.Microsecond), l.P90.Round(time.Microsecond), l.P99.Round(time.Microsecond), l.P999.Round(time.Microsecond), l.Max.Round(time.Microsecond))
}

func newBenchOTLPCmd(a *app) *cobra.Command {
	var (
		nf       natsFlags
		opts     bench.OTLPOptions
		asJSON   bool
		deadline time.Duration
	)
	cmd := &cobra.Command{
		Use:   "otlp --otlp URL --nats URL",
		Short: "Export generated agent runs over OTLP/HTTP as fast as serve takes them; print end-to-end spans/s",
		Long: `Export generated agent runs (an invoke_agent span over chat and execute_tool spans, about
1 KB of attributes each) to a running serve's OTLP/HTTP receiver, protobuf, as fast as it
takes them (retrying what it refuses as busy), and wait, on --nats, until every trace is
evaluated and scored: spans and steps per second, exported to scored.`,
		Example: `  troyctl bench otlp --otlp http://127.0.0.1:4318/v1/traces --token "$TOKEN" --nats nats://127.0.0.1:4222 --spans 100000
  troyctl bench otlp --otlp http://127.0.0.1:4318/v1/traces --token "$TOKEN" --nats nats://127.0.0.1:4222 --per-trace 10 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.URL == "" {
				return errors.New("bench otlp: give --otlp, the receiver's URL, such as http://127.0.0.1:4318/v1/traces")
			}
			b, err := benchConnect(cmd, nf)
			if err != nil {
				return err
			}
			defer b.Close()
			ctx, cancel := contextWithTimeout(cmd, deadline)
			defer cancel()
			r, err := bench.OTLP(ctx, b, opts)
			if err != nil {
				return err
			}
			if asJSON {
				return reporter.EncodeJSON(a.stdout, r)
			}
			fmt.Fprintf(a.stdout, "otlp: %d spans (%d steps, %d traces) scored in %.2fs = %.0f spans/s (%.0f steps/s) end to end; exported at %.0f spans/s, %d busy answers retried\n",
				r.Spans, r.Steps, r.Traces, r.Seconds, r.SpansPerS, r.StepsPerS, r.SentPerS, r.Retries)
			printLatency(a.stdout, "trace exported to score", r.Latency)
			return nil
		},
	}
	nf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&opts.URL, "otlp", "", "the OTLP/HTTP receiver's URL, such as http://127.0.0.1:4318/v1/traces")
	f.StringVar(&opts.Token, "token", "", "a gateway token that may send the agent bench's traces")
	f.IntVar(&opts.Spans, "spans", 100_000, "spans to export")
	f.IntVar(&opts.PerTrace, "per-trace", 20, "spans per trace, the agent's own included")
	f.IntVar(&opts.PerPost, "per-export", 32, "traces per export request")
	f.IntVar(&opts.Senders, "senders", 4, "export requests in flight")
	f.DurationVar(&deadline, "timeout", 10*time.Minute, "give up after this long")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
