package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/natsauth"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/internal/signing"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/reporter"
	"github.com/troy-audit/troy/sdk/wire"
)

func newServeCmd(a *app) *cobra.Command {
	var (
		nf          natsFlags
		cfg         pipeline.ServeConfig
		dataDir     string
		listen      string
		only        string
		verbose     bool
		contention  bool
		lf          logFlags
		ex          explainFlags
		ch          chFlags
		gw          gatewayFlags
		ol          otlpFlags
		retain      string
		retainBytes string
		restarts    int
		insecure    bool
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run troy's pipeline: evaluate, score and report every trace agents send",
		Long: `Run troy's pipeline as a long-lived service. Agents publish their steps to NATS (the
embedded server listens on --listen; or use an existing cluster with --nats); the
evaluator (which also scores), explainer and reporter stages turn them into violations (published as
they are found on troy.results.violation.>), risk scores, explanations of each step by a
model (when an API key or base URL is configured, as for 'troyctl audit'), and
signed reports: troyctl report AGENT TRACE gives any finished trace's report.md and
audit.json, rendered from the streams; they are also written as files under --reports
(DATA-DIR/reports), unless --reports none. With --clickhouse, every step, violation, score and
explanation is also stored in ClickHouse for troyctl trends, drift, regress and sql; the
schema is migrated at start. With --http, an HTTP gateway serves guard checks, steps,
outputs, ends and reports to agents that cannot use NATS: each bearer token has a role
(an agent's, a reader's or an admin's; troyctl auth agent NAME --http issues one), and
--http-cert and --http-key serve it over HTTPS. --nats-cert and --nats-key give the
embedded NATS server a certificate: its clients then connect with TLS (--nats-ca).

The embedded NATS server requires credentials: at the first start serve creates them in
DATA-DIR/auth (owner only): the service credential its components use and the admin one
that troyctl commands beside it find; 'troyctl auth agent NAME' issues an agent's.
--insecure-no-auth turns this off, for throw-away demos, and says so in the log.

--policy sets the default policy for traces that name none; a policy file is watched and
reloaded when it changes, and every result records the revision it was evaluated with.
--retain and --retain-bytes bound the streams (existing ones too; --retain also ages
the explanation cache); an instance started without them leaves the limits as they are,
and new streams keep every event. --only runs some components, so that each can be deployed and
scaled on its own. Evaluators scale out with --evaluator-partitions: any number of processes
given the same number divide the traces among them, and take over those of a process that
stops.
A component that fails (its consumer cannot be created, say) is restarted after a pause
that doubles from 1s to 30s; past --restarts failures within 5 minutes serve stops all
components and exits 1 with the error. /healthz answers 503 naming every component that
is not running and why, and Prometheus /metrics are served on --metrics.
A guard check at which a rule cannot be evaluated is blocked in enforce mode (fail
closed) unless --on-rule-error skip, or the policy's on_rule_error, says otherwise; the
flag wins over the policy.`,
		Example: `  troyctl serve --policy examples/policy.json
  troyctl serve --policy soc2 --listen 0.0.0.0:4222 --data-dir /var/lib/troy
  troyctl serve --nats nats://nats-1:4222,nats://nats-2:4222 --only evaluator --workers 8
  troyctl serve --nats nats://nats-1:4222 --only evaluator --evaluator-partitions 16   # as many processes as wanted
  troyctl serve --policy examples/policy.json --retain 720h --retain-bytes 50GB
  troyctl serve --policy soc2 --reports none   # reports only from troyctl report and the gateway
  troyctl serve --policy examples/policy.json --clickhouse clickhouse://127.0.0.1:9000/troy
  troyctl serve --policy soc2 --http 0.0.0.0:8080 --http-tokens /etc/troy/http-tokens --http-max-conns 4096 --http-max-requests 256
  troyctl serve --http 0.0.0.0:8443 --http-cert tls/cert.pem --http-key tls/key.pem --listen 0.0.0.0:4222 --nats-cert tls/cert.pem --nats-key tls/key.pem
  troyctl serve --nats nats://nats-1:4222 --only guard --restarts 0
  troyctl serve --policy owasp_llm_top10 --on-rule-error skip
  troyctl serve --policy minimal --insecure-no-auth`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if err := nf.retention(retain, retainBytes); err != nil {
				return err
			}
			if cfg.Partitions < 0 || cfg.Partitions > bus.MaxPartitions {
				return fmt.Errorf("--evaluator-partitions %d: expected 0 (the steps stream read whole) to %d", cfg.Partitions, bus.MaxPartitions)
			}
			var debug *slog.Level
			if verbose {
				debug = new(slog.LevelDebug)
			}
			log, err := lf.logger(a.stderr, debug)
			if err != nil {
				return err
			}
			nf.resolveCreds()
			opts := nf.opts
			opts.Name, opts.DataDir, opts.Logger = "troy-serve", dataDir, log
			var auth *natsauth.Store
			if opts.URL == "" {
				// Without --nats, --nats-cert and --nats-key are the embedded server's.
				opts.Listen = listen
				opts.TLSCert, opts.TLSKey, opts.CertFile, opts.KeyFile = opts.CertFile, opts.KeyFile, "", ""
				if insecure {
					log.Warn("NATS AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can reach " + listen + " may publish any agent's steps, forge results, replace policies and delete streams; use it for throw-away demos only")
				} else {
					var err error
					if auth, err = natsauth.Open(natsauth.Dir(dataDir), true); err != nil {
						return err
					}
					// The embedded server keeps streams in DATA-DIR/jetstream/jetstream/<account>.
					if moved, err := auth.AdoptStreams(filepath.Join(dataDir, "jetstream", "jetstream")); err != nil {
						return err
					} else if moved {
						log.Info("streams kept without authentication moved to troy's account", "account", auth.AccountID())
					}
					opts.ServerAuth, opts.Auth = auth.Configure, wire.Auth{CredsFile: auth.Path(natsauth.ServiceCreds)}
					log.Info("NATS requires credentials", "admin", auth.Path(natsauth.AdminCreds), "issue", "troyctl auth agent NAME")
				}
			}
			if cfg.Policy != "" {
				// The service loads (and reloads) the policy itself; its settings are
				// noticed once, here.
				if p, err := policies.Resolve(cfg.Policy); err == nil {
					noticeIgnoredSettings(a.stderr, cfg.Policy, p)
				}
			}
			if only != "" {
				cfg.Only = strings.Split(only, ",")
			}
			if restarts < 0 {
				return fmt.Errorf("--restarts %d: expected 0 or more", restarts)
			}
			cfg.Restart = pipeline.DefaultRestart
			cfg.Restart.MaxRestarts = restarts
			switch cfg.ReportDir {
			case "":
				cfg.ReportDir = filepath.Join(dataDir, "reports")
			case "none":
				cfg.ReportDir = "" // reports only from the streams: troyctl report, the gateway
			}
			cfg.Logger = log
			cfg.Build = pipeline.BuildInfo{Version: buildVersion(), Commit: buildCommit()}
			if len(cfg.Only) == 0 || slices.Contains(cfg.Only, pipeline.Reporter) {
				keyPath := signing.DataDirKey(dataDir)
				key, created, err := signing.LoadOrCreate(keyPath)
				if err != nil {
					return err
				}
				cfg.Signer = &reporter.Signer{Key: key, Version: buildVersion()}
				pub := key.Public().(ed25519.PublicKey)
				log.Info("signing reports", "key_id", reporter.KeyID(pub), "key_file", keyPath, "created", created, "public_key", signing.FormatPublic(pub))
			}
			if dsn := ch.value(); dsn != "" {
				store, migrated, err := migrateStore(ctx, dsn)
				if err != nil {
					return err
				}
				defer store.Close()
				for _, m := range migrated {
					log.Info("clickhouse migration", "name", m.Name, "state", m.State, "note", m.Note)
				}
				cfg.Store = store
				log.Info("storing results in clickhouse", "addr", store.Addr(), "database", store.Database(), "server", store.ServerVersion().String())
			}
			explain, err := ex.config()
			if err != nil {
				return err
			}
			b, err := bus.Open(ctx, opts)
			if errors.Is(err, syscall.EADDRINUSE) && opts.URL == "" {
				return fmt.Errorf("--listen %s: the address is in use, by another troyctl serve or NATS server? Choose another address with --listen, or use that server with --nats nats://%s", listen, listen)
			}
			if err != nil {
				return err
			}
			defer b.Close()
			if contention {
				// After the embedded server started: it sets the block profile's rate.
				// Every blocking event and one lock contention in 10: enough to see where
				// requests wait, at a cost of a few percent.
				runtime.SetBlockProfileRate(1)
				runtime.SetMutexProfileFraction(10)
			}
			if auth != nil {
				stopReload, err := serveAuthReload(b, auth, log)
				if err != nil {
					return err
				}
				defer func() { _ = stopReload() }()
				if opts.Listen != "" {
					if err := writeServeURL(dataDir, b.ClientURL()); err != nil {
						log.Warn("cannot record the NATS address for troyctl auth revoke", "err", err)
					}
				}
			}
			cfg.Explain, cfg.ExplainNote = pipeline.NewExplainer(b, explain, log), explain.Note
			var srv *pipeline.Server
			if llm := explain.Model; llm != nil {
				log.Info("explaining traces", "model", llm.Model, "base_url", llm.BaseURL, "concurrency", llm.Concurrency, "redact", !llm.NoRedact)
			} else {
				log.Info("not explaining traces", "reason", explain.Note)
			}
			cfg.OnReady = func() {
				if cfg.Policy == "" {
					noticeNoPolicy(ctx, srv, log, a.stderr)
				}
				components, reports := strings.Join(cfg.Only, ","), cfg.ReportDir
				if components == "" {
					components = "all"
				}
				if reports == "" {
					reports = "none (troyctl report and the gateway render them from the streams)"
				}
				log.Info("troy serving", "nats", b.ClientURL(), "metrics", srv.MetricsURL(), "components", components, "reports", reports)
				fmt.Fprintf(a.stdout, "troy serving on %s\n", b.ClientURL())
			}
			srv, err = pipeline.NewServer(b, cfg)
			if err != nil {
				return err
			}
			stopGateway, err := gw.start(ctx, b, srv, dataDir, log)
			if err != nil {
				return err
			}
			defer stopGateway()
			stopOTLP, err := ol.start(ctx, b, srv, &gw, dataDir, insecure, log)
			if err != nil {
				return err
			}
			defer stopOTLP()
			err = srv.Run(ctx)
			log.Info("troy stopped")
			return err
		},
	}
	nf.register(cmd)
	ex.register(cmd, false)
	ch.register(cmd)
	gw.register(cmd)
	ol.register(cmd)
	f := cmd.Flags()
	f.Lookup("nats-cert").Usage = "with --nats, a client certificate file for NATS TLS; without, the embedded server's certificate (PEM), so that its clients must use TLS, such as --nats-cert /etc/troy/tls/cert.pem"
	f.Lookup("nats-key").Usage = "the key file of --nats-cert (PEM)"
	f.StringVar(&dataDir, "data-dir", ".troy", "directory for the embedded server's streams, the reports and the credentials (auth/)")
	f.BoolVar(&insecure, "insecure-no-auth", false, "let any client use the embedded NATS server without credentials: for throw-away demos only")
	f.StringVar(&listen, "listen", "127.0.0.1:4222", "client address of the embedded NATS server, for agents")
	f.StringVar(&cfg.Policy, "policy", "", "default policy: a file (reloaded when it changes) or a bundled template name")
	f.StringVar(&only, "only", "", "components to run, comma-separated: "+strings.Join(pipeline.Components(), ", ")+" (default all)")
	f.StringVar(&cfg.ReportDir, "reports", "", "directory where report.md and audit.json of each trace are also written as files (default DATA-DIR/reports); none writes no files: reports are then read with troyctl report or the HTTP gateway, rendered from the streams")
	f.IntVar(&cfg.Workers, "workers", 4, "events each component handles at once")
	f.IntVar(&cfg.Partitions, "evaluator-partitions", 0, "spread traces over this many partitions that every evaluator process of the deployment shares, each trace evaluated by one process at a time; all evaluators must give the same number, such as 16 (default 0: one evaluator process reads the steps stream whole)")
	f.IntVar(&restarts, "restarts", pipeline.DefaultRestart.MaxRestarts, "restarts of a failed component (after 1s, 2s, 4s... up to 30s) within 5 minutes before serve stops with an error; /healthz shows a failing component; such as --restarts 0 to stop at the first failure")
	f.StringVar(&cfg.OnRuleError, "on-rule-error", "", "what the guard does in enforce mode with a step at which a rule cannot be evaluated: block or skip (default: the policy's on_rule_error, else block)")
	f.DurationVar(&cfg.IdleTimeout, "idle-timeout", 5*time.Minute, "close a trace that has had no event for this long (0: never)")
	f.StringVar(&cfg.MetricsAddr, "metrics", "127.0.0.1:9464", "address for /healthz and /metrics (empty: none)")
	f.BoolVarP(&verbose, "verbose", "v", false, "log more: --log-level debug")
	f.BoolVar(&contention, "profile-contention", false, "record where goroutines block and wait for locks, for /debug/pprof/block and /debug/pprof/mutex on --metrics (costs some CPU)")
	lf.register(cmd, "info")
	f.IntVar(&nf.opts.Replicas, "replicas", 0, "servers of the NATS cluster that keep each stream and bucket, 3 in a three-node cluster (default: as the streams are; new ones 1)")
	f.StringVar(&retain, "retain", "", "keep events in the streams, and model replies in the cache, this long: a duration of at least 1h such as 720h, or unlimited (default: as the streams are; new ones keep everything)")
	f.StringVar(&retainBytes, "retain-bytes", "", "keep at most this much in each stream, the oldest events going first: a size such as 50GB, or unlimited (default: as the streams are; new ones have no limit)")
	f.IntVar(&cfg.SinkBatch, "sink-batch", 50000, "the ClickHouse sink inserts after this many events (each insert costs ClickHouse a part: larger is faster)")
	f.DurationVar(&cfg.SinkWait, "sink-wait", time.Second, "the ClickHouse sink inserts events at most this long after they arrive")
	return cmd
}

// serveAuthReload answers an admin's request on natsauth.ReloadSubject by giving the
// embedded server the account JWT on disk, so that a revocation takes effect at once.
func serveAuthReload(b *bus.Bus, auth *natsauth.Store, log *slog.Logger) (func() error, error) {
	return b.AddService("troy-auth", "1.0.0", "Loads the account's credentials again after a revocation", []bus.Endpoint{{
		Name: "reload", Subject: natsauth.ReloadSubject,
		Handle: func(ctx context.Context, _ []byte) ([]byte, error) {
			if err := auth.Reload(b.Server()); err != nil {
				log.Error("reload credentials", "err", err)
				return nil, err
			}
			log.Info("credentials reloaded")
			return []byte(`{"reloaded":true}`), nil
		},
	}}, 10*time.Second)
}

// retention reads the stream limits. An event must outlive the trace it belongs to, since
// a late output or end rebuilds the trace from the stream.
func (nf *natsFlags) retention(age, size string) error {
	switch age {
	case "":
	case "unlimited":
		nf.opts.Retain = bus.Unlimited
	default:
		d, err := time.ParseDuration(age)
		if err != nil || d < time.Hour {
			return fmt.Errorf("--retain %q: expected a duration of at least 1h, such as 720h, or unlimited", age)
		}
		nf.opts.Retain = d
	}
	switch size {
	case "":
	case "unlimited":
		nf.opts.RetainBytes = bus.Unlimited
	default:
		n, err := humanize.ParseBytes(size)
		if err != nil || n < 1<<20 || n > math.MaxInt64 {
			return fmt.Errorf("--retain-bytes %q: expected a size of at least 1MB, such as 500MB or 50GiB, or unlimited", size)
		}
		nf.opts.RetainBytes = int64(n)
	}
	return nil
}

// noticeNoPolicy says, in the log and in a plain line, when the deployment has no default
// policy: traces and checks that name none would otherwise wait without a word.
func noticeNoPolicy(ctx context.Context, srv *pipeline.Server, log *slog.Logger, stderr io.Writer) {
	if _, err := srv.Policies().Default(ctx); err == nil {
		return
	}
	const msg = "no default policy is set: traces and guard checks that name no policy wait (checks answer 503) until one is; start serve with --policy FILE or a bundled template (troyctl policies list), such as --policy minimal (kept for later starts)"
	log.Warn(msg)
	fmt.Fprintln(stderr, "troyctl: "+msg)
}
