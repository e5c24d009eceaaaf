package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/audit"
	"github.com/troy-audit/troy/bus"
	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/explainer"
	"github.com/troy-audit/troy/pipeline"
)

// natsFlags choose the NATS a command uses: an embedded server by default, or --nats.
type natsFlags struct {
	opts    bus.Options
	timeout time.Duration
}

func (f *natsFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.opts.URL, "nats", "", "NATS server URL(s), comma-separated (default: an embedded server)")
	fl.StringVar(&f.opts.User, "nats-user", "", "NATS user")
	fl.StringVar(&f.opts.Password, "nats-password", "", "NATS password")
	fl.StringVar(&f.opts.Token, "nats-token", "", "NATS token")
	fl.StringVar(&f.opts.CredsFile, "nats-creds", "", "NATS credentials file")
	fl.StringVar(&f.opts.NKeyFile, "nats-nkey", "", "NATS nkey seed file")
	fl.StringVar(&f.opts.CAFile, "nats-ca", "", "CA certificate file to trust for NATS TLS")
	fl.StringVar(&f.opts.CertFile, "nats-cert", "", "client certificate file for NATS TLS")
	fl.StringVar(&f.opts.KeyFile, "nats-key", "", "client key file for NATS TLS")
}

// registerTimeout adds --timeout, for commands that wait for traces' results.
func (f *natsFlags) registerTimeout(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&f.timeout, "timeout", 0, "longest wait for one trace's results, e.g. 30m (default: none in process, where a trace the stages give up on or leave idle fails at once; 10m with --nats)")
}

// pipelineAuditor opens the pipeline for a one-shot command: with --nats, a running
// deployment does the work (its explainer explains); otherwise an embedded in-memory
// server and in-process stages, explaining with the model ex configures. The policy goes
// to the policy bucket and the traces name its revision.
func (f *natsFlags) pipelineAuditor(ctx context.Context, c *evaluator.Compiled, ex *explainFlags, stderr io.Writer) (audit.Auditor, func(), error) {
	opts := f.opts
	opts.Name = "troyctl"
	embedded := opts.URL == ""
	opts.Memory = embedded
	opts.Client = !embedded
	cfg, explain, note, err := ex.config()
	if err != nil {
		return nil, nil, err
	}
	if embedded && explain && !ex.noCache {
		opts.CacheDir = ex.dataDir
	}
	if !embedded && ex.modelFlagsSet() {
		fmt.Fprintln(stderr, "troyctl: with --nats the deployment's explainer explains the traces; the model flags here are not used")
	}
	b, err := bus.Open(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	pol := pipeline.NewPolicies(b)
	hash, err := pol.Put(ctx, c)
	if err != nil {
		b.Close()
		return nil, nil, err
	}
	stop := func() {}
	if embedded {
		pc := pipeline.Config{Only: []string{pipeline.Evaluator, pipeline.Explainer}, ExplainNote: note, NoAlerts: true}
		if explain {
			if !ex.noCache {
				if cache := b.ExplanationCache(); cache != nil {
					cfg.Cache = cache
				}
			}
			cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			pc.Explain = explainer.New(cfg)
			// Enough traces explained at once to keep every allowed request busy.
			pc.Workers = max(4, cfg.Concurrency)
		}
		p, err := pipeline.New(b, pol, pc)
		if err != nil {
			b.Close()
			return nil, nil, err
		}
		runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan error, 1)
		go func() { done <- p.Run(runCtx) }()
		stop = func() {
			cancel()
			<-done
		}
	}
	client, err := pipeline.NewClient(ctx, b, hash, pipeline.ClientOptions{Purge: embedded})
	if err != nil {
		stop()
		b.Close()
		return nil, nil, err
	}
	closeAll := func() {
		client.Close()
		stop()
		b.Close()
	}
	timeout := f.timeout
	if timeout == 0 && !embedded {
		timeout = resultTimeout
	}
	return &pipeline.Auditor{Client: client, Info: pipeline.InfoOf(c), Timeout: timeout}, closeAll, nil
}

// resultTimeout bounds how long a command waits for a deployment's results: a deployment
// busy with other traces cannot tell that one was lost.
const resultTimeout = 10 * time.Minute

func contextWithTimeout(cmd *cobra.Command, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), d)
}
