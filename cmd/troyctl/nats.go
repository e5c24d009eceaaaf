package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/sdk/agent"
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

// auditor opens what a one-shot command audits through: with --nats, a running
// deployment (whose explainer explains); otherwise a local pipeline in this process,
// explaining with the model ex configures.
func (f *natsFlags) auditor(ctx context.Context, c *evaluator.Compiled, ex *explainFlags, stderr io.Writer) (*pipeline.Auditor, error) {
	explain, err := ex.config()
	if err != nil {
		return nil, err
	}
	opts := pipeline.AuditorOptions{Bus: f.opts, Explain: explain, CacheDir: ex.dataDir, Timeout: f.timeout,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	opts.Bus.Name = "troyctl"
	if f.opts.URL == "" {
		return pipeline.OpenLocal(ctx, c, opts)
	}
	if ex.modelFlagsSet() {
		fmt.Fprintln(stderr, "troyctl: with --nats the deployment's explainer explains the traces; the model flags here are not used")
	}
	return pipeline.Dial(ctx, c, opts)
}

func contextWithTimeout(cmd *cobra.Command, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), d)
}

// agentOptions are the flags as an agent's connection to a deployment.
func (f natsFlags) agentOptions() agent.Options {
	return agent.Options{URL: f.opts.URL, Name: f.opts.Name, Auth: f.opts.Auth}
}
