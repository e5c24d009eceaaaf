package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/natsauth"
	"github.com/troy-audit/troy/reporter"
)

func newReportCmd(a *app) *cobra.Command {
	var (
		nf             natsFlags
		dataDir, run   string
		mdPath, jsPath string
		asJSON         bool
		deadline       time.Duration
	)
	cmd := &cobra.Command{
		Use:   "report AGENT TRACE",
		Short: "Get a finished trace's report.md or audit.json from a running serve",
		Long: `Get the report of a finished trace from a running troyctl serve: its reporter renders
report.md and audit.json from the streams, byte for byte what it writes under --reports,
signed with serve's key (troyctl verify checks them). The latest run of the trace, or
--run.

report.md is printed, or written to -o; -j writes audit.json too (beside report.md, so
that troyctl verify finds both); --json prints audit.json instead of report.md.

The serve is --nats, else the address serve recorded in DATA-DIR/auth/serve.url, else
nats://127.0.0.1:4222; credentials as the other commands find them (DATA-DIR/auth/admin.creds
beside serve, --creds, $TROY_CREDS): an agent's credential reads its own traces' reports, a
reader's any. Exit 1 when the trace has no finished run (yet) or no reporter answers.`,
		Example: `  troyctl report support-bot run-42
  troyctl report support-bot run-42 -o out/report.md -j out/audit.json && troyctl verify out/audit.json --data-dir .troy
  troyctl report support-bot run-42 --json | jq .risk_score
  troyctl report support-bot run-42 --run r2 --nats nats://troy:4222 --creds reader.creds`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if asJSON && (mdPath != "" || jsPath != "") {
				return errors.New("report: --json prints audit.json; give it without -o and -j")
			}
			if nf.opts.URL == "" {
				nf.opts.URL = "nats://127.0.0.1:4222"
				if raw, err := os.ReadFile(filepath.Join(natsauth.Dir(dataDir), serveURLFile)); err == nil && strings.TrimSpace(string(raw)) != "" {
					nf.opts.URL = strings.TrimSpace(string(raw))
				}
			}
			nf.resolveCreds()
			opts := nf.opts
			opts.Name, opts.Client, opts.NoPolicies = "troyctl-report", true, true
			ctx, cancel := context.WithTimeout(cmd.Context(), deadline)
			defer cancel()
			b, err := bus.Open(ctx, opts)
			if err != nil {
				return err
			}
			defer b.Close()
			get := func(file string) ([]byte, error) {
				data, ran, err := event.FetchReport(ctx, b.Request, event.ReportRequest{Agent: args[0], Trace: args[1], Run: run, File: file})
				var re *bus.RequestError
				switch {
				case errors.As(err, &re):
					return nil, fmt.Errorf("report: %s", re.Message) // the reporter names the trace and agent
				case errors.Is(err, context.DeadlineExceeded):
					return nil, fmt.Errorf("report of trace %q of agent %q: no reporter answered at %s within %v (is serve running its reporter?)", args[1], args[0], opts.URL, deadline)
				case err != nil:
					return nil, fmt.Errorf("report of trace %q of agent %q: %w", args[1], args[0], err)
				}
				run = ran // both files of the same run
				return data, nil
			}
			files := []struct{ name, path string }{{event.ReportMarkdown, mdPath}, {event.ReportJSON, jsPath}}
			switch {
			case asJSON:
				files = []struct{ name, path string }{{event.ReportJSON, "-"}}
			case mdPath == "":
				files[0].path = "-"
			}
			for _, f := range files {
				if f.path == "" {
					continue
				}
				data, err := get(f.name)
				if err != nil {
					return err
				}
				if f.path == "-" {
					if _, err := a.stdout.Write(data); err != nil {
						return err
					}
					continue
				}
				if err := reporter.WriteFile(f.path, data); err != nil {
					return fmt.Errorf("write %s: %w", f.path, err)
				}
			}
			return nil
		},
	}
	nf.register(cmd)
	f := cmd.Flags()
	f.Lookup("nats").Usage = "the running serve's NATS URL(s), comma-separated (default: the address in DATA-DIR/auth/serve.url, else nats://127.0.0.1:4222)"
	f.StringVar(&dataDir, "data-dir", ".troy", "serve's data directory, where its address and the admin credential are found")
	f.StringVar(&run, "run", "", "the run of the trace (default: the latest finished)")
	f.StringVarP(&mdPath, "output", "o", "", "write report.md here (default: print it); - is stdout")
	f.StringVarP(&jsPath, "json-output", "j", "", "write audit.json here too")
	f.BoolVar(&asJSON, "json", false, "print audit.json instead of report.md")
	f.DurationVar(&deadline, "timeout", 30*time.Second, "give up after this long")
	return cmd
}
