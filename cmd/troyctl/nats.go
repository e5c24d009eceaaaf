package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/natsauth"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/sdk/agent"
)

// natsFlags choose the NATS a command uses: an embedded server by default, or --nats.
type natsFlags struct {
	opts    bus.Options
	timeout time.Duration
	creds   string
	cmd     *cobra.Command
}

func (f *natsFlags) register(cmd *cobra.Command) {
	f.cmd = cmd
	fl := cmd.Flags()
	fl.StringVar(&f.creds, "creds", "", "NATS credentials file for --nats, such as one from troyctl auth (default: DATA-DIR/auth/admin.creds when there; DATA-DIR is --data-dir, else $TROY_DATA_DIR, else .troy)")
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
	f.resolveCreds()
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

// resolveCreds chooses the credentials of a connection to --nats when no --nats-* flag
// gave them: --creds (or $TROY_CREDS, applyEnv), else the admin credential that troyctl serve created in
// the data directory (--data-dir, where the command has one, else .troy), so that commands
// run beside a serve need no flag, else $TROY_TOKEN.
func (f *natsFlags) resolveCreds() {
	a := &f.opts.Auth
	if f.opts.URL == "" || a.CredsFile != "" || a.NKeyFile != "" || a.Token != "" || a.User != "" {
		return
	}
	if f.creds != "" {
		a.CredsFile = f.creds
		return
	}
	// A command without --data-dir (check) looks where $TROY_DATA_DIR says, else in the
	// default data directory.
	dataDir := cmp.Or(os.Getenv(envDataDir), ".troy")
	if f.cmd != nil {
		if fl := f.cmd.Flags().Lookup("data-dir"); fl != nil {
			dataDir = fl.Value.String()
		}
	}
	if p := filepath.Join(natsauth.Dir(dataDir), natsauth.AdminCreds); fileExists(p) {
		a.CredsFile = p
		return
	}
	*a = agent.FromEnv(*a) // $TROY_TOKEN
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func contextWithTimeout(cmd *cobra.Command, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), d)
}

// agentOptions are the flags as an agent's connection to a deployment.
func (f natsFlags) agentOptions() agent.Options {
	f.resolveCreds()
	return agent.Options{URL: f.opts.URL, Name: f.opts.Name, Auth: f.opts.Auth}
}
