package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/troy-audit/troy/audit"
	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/reporter"
)

func newBatchCmd(a *app) *cobra.Command {
	var (
		dir         string
		concurrency int
		asJSON      bool
		quiet       bool
		maxSize     int64
		ex          explainFlags
		nf          natsFlags
		sf          signFlags
		ci          ciFlags
	)
	cmd := &cobra.Command{
		Use:     "batch DIR|FILE... POLICY",
		Aliases: []string{"audit-batch"}, // the Python tool's name, which its users' scripts call
		Short:   "Audit every trace in a directory (or files) and write per-trace reports and a summary",
		Long: `Audit every trace in the given directories and files, concurrently. Directories
contribute the .json, .jsonl, .json.gz and .jsonl.gz files directly inside them
(symbolic links to files are followed; subdirectories are not entered); a .jsonl file
holds one trace per line. An OTLP JSON file of OpenTelemetry spans (one export per
line, as the collector's file exporter writes) gives one trace per trace id
(docs/OTEL.md). Each trace gets report.md and audit.json; the
batch gets summary.md and batch.json. Bad files and bad lines are skipped with their
reason, and the batch goes on; the exit code is then 1, after every report is written.

The last argument is the policy: a file or the name of a bundled template.`,
		Example: `  troyctl batch examples/traces examples/policy.json
  troyctl audit-batch traces/ soc2 -o out/ --concurrency 8
  troyctl batch runs.jsonl.gz more/ examples/policy.json --json
  troyctl batch archive/ soc2 --nats nats://troy.internal:4222`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := ci.resolve(cmd, asJSON); err != nil {
				return err
			}
			policyArg := args[len(args)-1]
			c, err := loadPolicy(a, policyArg)
			if err != nil {
				return err
			}
			files, err := audit.Inputs(args[:len(args)-1], []string{policyArg})
			if err != nil {
				return err
			}
			if dir == "" {
				dir = reporter.DefaultDir(time.Now())
			}
			signer, err := sf.signer(a.stderr)
			if err != nil {
				return err
			}
			auditor, err := nf.auditor(cmd.Context(), c, &ex, a.stderr)
			if err != nil {
				return err
			}
			defer auditor.Close()
			if concurrency <= 0 {
				concurrency = 64 // traces in flight through the pipeline
			}
			prog := newProgress(a.stderr, files, quiet)
			var mf modelFailures
			var traces []reporter.Audited
			summary, err := audit.Batch(cmd.Context(), auditor, files, audit.BatchOptions{
				Dir:         dir,
				Concurrency: concurrency,
				Ingest:      ingest.Options{MaxSize: maxSize},
				Progress: func(p audit.Progress) {
					if p.Result != nil && p.Err == nil {
						mf.add(p.Result.Info)
						traces = append(traces, reporter.Audited{File: p.File, Line: p.Line, Result: p.Result})
					}
					prog.update(p)
				},
				Signer: signer,
			})
			prog.finish()
			if err != nil {
				return err
			}
			if ci.machine() {
				if err := ci.write(a, c, traces, summary); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(a.stdout, "Batch complete: %d processed, %d skipped.\n", len(summary.Rows), len(summary.Skipped))
				for _, s := range summary.Skipped {
					fmt.Fprintf(a.stdout, "  skipped %s: %s\n", s.File, s.Error)
				}
				fmt.Fprintf(a.stdout, "Summary written to %s\n", summary.Summary)
				fmt.Fprintf(a.stdout, "Batch JSON written to %s\n", summary.BatchJSON)
			}
			if n := len(summary.Skipped); n > 0 {
				return fmt.Errorf("%d input(s) skipped; see %s", n, summary.Summary)
			}
			if err := ci.gate(traces); err != nil {
				return err
			}
			return mf.err(&ex, nf.opts.URL != "")
		},
	}
	cmd.Flags().StringVarP(&dir, "output-dir", "o", "", "directory for reports (default logs/YYYY-MM-DD)")
	cmd.Flags().IntVarP(&concurrency, "concurrency", "c", 0, "traces in flight through the pipeline at once (default 64)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON summary on stdout instead of text")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no per-trace progress lines")
	cmd.Flags().Int64Var(&maxSize, "max-size", ingest.DefaultMaxSize, "largest trace document in bytes (a .json file, or one .jsonl line)")
	ci.register(cmd)
	ex.register(cmd, true)
	sf.register(cmd)
	nf.register(cmd)
	nf.registerTimeout(cmd)
	return cmd
}

// progress shows a batch's progress: a bar with counts and rate on a terminal, one plain
// line per trace otherwise.
type progress struct {
	w       io.Writer
	bar     *progressbar.ProgressBar
	quiet   bool
	ok, bad int
}

func newProgress(w io.Writer, files []string, quiet bool) *progress {
	p := &progress{w: w, quiet: quiet}
	f, isFile := w.(*os.File)
	if !isFile || !term.IsTerminal(int(f.Fd())) {
		return p
	}
	total := int64(len(files))
	for _, name := range files {
		if strings.HasSuffix(strings.TrimSuffix(strings.ToLower(name), ".gz"), ".jsonl") {
			total = -1 // traces per .jsonl file are unknown until read
			break
		}
	}
	p.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("auditing"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("traces"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	return p
}

func (p *progress) update(ev audit.Progress) {
	if ev.Err != nil {
		p.bad++
	} else {
		p.ok++
	}
	if p.bar != nil {
		p.bar.Describe(fmt.Sprintf("auditing (%d ok, %d skipped)", p.ok, p.bad))
		_ = p.bar.Add(1) // writes to the terminal; a failure there is not the batch's
		return
	}
	switch {
	case ev.Err != nil:
		fmt.Fprintf(p.w, "[%d] %s: skipped: %v\n", ev.Done, ev.Name, ev.Err)
	case !p.quiet:
		fmt.Fprintf(p.w, "[%d] %s: %d violation(s), risk %d/100\n", ev.Done, ev.Name, len(ev.Result.Violations), ev.Result.RiskScore)
	}
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}
