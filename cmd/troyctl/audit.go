package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/reporter"
	"github.com/troy-audit/troy/schemas"
)

// loadPolicy resolves a policy argument (file or template name) and compiles it. A policy
// written for the Python tool is converted, with a one-line notice.
func loadPolicy(a *app, arg string) (*evaluator.Compiled, error) {
	p, err := policies.Resolve(arg)
	if err != nil {
		return nil, err
	}
	if p.Converted > 0 {
		fmt.Fprintf(a.stderr, "troyctl: %s: %d conditions converted from Python (troyctl policies convert %s -o FILE writes them out)\n", arg, p.Converted, arg)
	}
	for _, w := range p.ConversionWarnings {
		fmt.Fprintf(a.stderr, "troyctl: warning: %s\n", w)
	}
	noticeIgnoredSettings(a.stderr, arg, p)
	return evaluator.Compile(p)
}

// noticeIgnoredSettings says, once per key, which global_config settings troy does not
// read: the Python tool's format defines none, so a policy may carry any, and they load
// (as they must, for compatibility) but change nothing.
func noticeIgnoredSettings(w io.Writer, arg string, p *policies.Policy) {
	var settings map[string]json.RawMessage
	if json.Unmarshal(p.Extra["global_config"], &settings) != nil {
		return
	}
	for _, key := range slices.Sorted(maps.Keys(settings)) {
		fmt.Fprintf(w, "troyctl: notice: %s: global_config.%s is not a setting troy reads; it is kept and has no effect\n", arg, key)
	}
}

func newAuditCmd(a *app) *cobra.Command {
	var (
		mdPath, jsonPath string
		asJSON           bool
		maxSize          int64
		ex               explainFlags
		nf               natsFlags
		sf               signFlags
		ci               ciFlags
	)
	cmd := &cobra.Command{
		Use:   "audit TRACE POLICY",
		Short: "Audit one trace against a policy and write report.md and audit.json",
		Long: `Audit one trace against a policy: evaluate every rule at every step, score the
risk, and write a markdown report and a JSON audit (replayable).

TRACE is a .json file (or .json.gz, or a .jsonl file holding one trace), or an OTLP
JSON file of OpenTelemetry spans holding one trace (what the collector's file exporter
writes; see docs/OTEL.md). POLICY is a policy file or the name of a bundled template
(see 'troyctl policies list').
Reports go to logs/YYYY-MM-DD/ unless -o and -j say otherwise.

The trace is evaluated and scored in this process; when a model explains it (or judges a
rule), it goes through troy's pipeline on an embedded in-memory NATS server in this
process. With --nats it goes to a running deployment (troyctl serve), whose results are
awaited.

A model explains each step and summarises the trace when an API key (--api-key,
OPENAI_API_KEY) or a base URL (--base-url, OPENAI_BASE_URL, for local models) is set,
from flags, the environment or a .env file, in that order. Sensitive values are
redacted before they are sent; replies are cached under --data-dir.`,
		Example: `  troyctl audit examples/traces/pii-exfiltration.json examples/policy.json
  troyctl audit run.json.gz owasp_llm_top10 -o out/report.md -j out/audit.json
  troyctl audit run.json examples/policy.json --json
  troyctl audit spans.otlp.jsonl soc2          # OpenTelemetry spans, as the collector's file exporter writes
  troyctl audit run.json soc2 --nats nats://troy.internal:4222
  OPENAI_API_KEY=sk-... troyctl audit run.json soc2 --model gpt-4o-mini
  troyctl audit run.json soc2 --base-url http://127.0.0.1:8080/v1 --api-key test`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if err := ci.resolve(cmd, asJSON); err != nil {
				return err
			}
			c, err := loadPolicy(a, args[1])
			if err != nil {
				return err
			}
			t, err := ingest.LoadTrace(ctx, args[0], ingest.Options{MaxSize: maxSize})
			if err != nil {
				return err
			}
			signer, err := sf.signer(a.stderr)
			if err != nil {
				return err
			}
			auditor, err := nf.auditor(ctx, c, &ex, a.stderr)
			if err != nil {
				return err
			}
			defer auditor.Close()
			r, err := auditor.Audit(ctx, t)
			if err != nil {
				return fmt.Errorf("audit %s: %w", args[0], err)
			}
			dir := reporter.DefaultDir(time.Now())
			if mdPath == "" {
				mdPath = filepath.Join(dir, "report.md")
			}
			if jsonPath == "" {
				jsonPath = filepath.Join(dir, "audit.json")
			}
			if err := reporter.WriteAudit(r, reporter.Dest{Markdown: mdPath, JSON: jsonPath, Stdout: a.stdout, Signer: signer}); err != nil {
				return err
			}
			traces := []reporter.Audited{{File: args[0], Result: r}}
			if ci.machine() {
				if err := ci.write(a, c, traces, auditSummary(r, mdPath, jsonPath)); err != nil {
					return err
				}
			} else {
				printAudit(a, r, c, args[1], mdPath, jsonPath)
			}
			if err := ci.gate(traces); err != nil {
				return err
			}
			var mf modelFailures
			mf.add(r.Info)
			return mf.err(&ex, nf.opts.URL != "")
		},
	}
	cmd.Flags().StringVarP(&mdPath, "output", "o", "", "markdown report path (default logs/YYYY-MM-DD/report.md)")
	cmd.Flags().StringVarP(&jsonPath, "json-output", "j", "", "JSON audit path (default logs/YYYY-MM-DD/audit.json)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON summary on stdout instead of text")
	cmd.Flags().Int64Var(&maxSize, "max-size", ingest.DefaultMaxSize, "largest trace document in bytes (a .json file, or one .jsonl line)")
	ci.register(cmd)
	ex.register(cmd, true)
	sf.register(cmd)
	nf.register(cmd)
	nf.registerTimeout(cmd)
	return cmd
}

type auditOutput struct {
	TraceID    string              `json:"trace_id"`
	AgentName  string              `json:"agent_name"`
	Steps      int                 `json:"steps"`
	Violations []schemas.Violation `json:"violations"`
	RiskScore  int                 `json:"risk_score"`
	RuleErrors []schemas.RuleError `json:"rule_errors"`
	// Explanations is "on" or "off"; ExplanationsNote says why off or what was cut short.
	Explanations     string            `json:"explanations"`
	ExplanationsNote string            `json:"explanations_note,omitempty"`
	LLM              *schemas.LLMUsage `json:"llm,omitempty"`
	Report           string            `json:"report"`
	AuditJSON        string            `json:"audit_json"`
}

func auditSummary(r *schemas.AuditResult, md, js string) auditOutput {
	out := auditOutput{
		TraceID:    r.Trace.TraceID,
		AgentName:  r.Trace.AgentName,
		Steps:      len(r.Trace.Steps),
		Violations: r.Violations,
		RiskScore:  r.RiskScore,
		RuleErrors: []schemas.RuleError{},
		Report:     md,
		AuditJSON:  js,
	}
	out.Explanations = schemas.ExplanationsOff
	if r.Info != nil {
		if r.Info.RuleErrors != nil {
			out.RuleErrors = r.Info.RuleErrors
		}
		if r.Info.Explanations != "" {
			out.Explanations = r.Info.Explanations
		}
		out.ExplanationsNote = r.Info.ExplanationsNote
		out.LLM = r.Info.LLM
	}
	return out
}

func printAudit(a *app, r *schemas.AuditResult, c *evaluator.Compiled, policyArg, md, js string) {
	w := a.stdout
	fmt.Fprintf(w, "Trace %s (agent %s, %d steps) against %s (%d rules).\n",
		quote(r.Trace.TraceID), quote(r.Trace.AgentName), len(r.Trace.Steps), policyArg, len(c.Policy().Rules))
	fmt.Fprintln(w, explanationsLine(r.Info))
	fmt.Fprintf(w, "Found %d violation(s). Risk score: %d/100.\n", len(r.Violations), r.RiskScore)
	for _, v := range r.Violations {
		fmt.Fprintf(w, "  %-10s %s at step %s\n", "["+strings.ToUpper(v.Severity)+"]", v.RuleID, v.StepID)
	}
	for _, e := range r.Info.RuleErrors {
		fmt.Fprintf(w, "  rule %s failed at %d step(s), first at %s: %s\n", e.RuleID, e.Count, e.FirstStep, e.FirstError)
	}
	fmt.Fprintf(w, "Markdown report written to %s\n", md)
	fmt.Fprintf(w, "JSON report written to %s\n", js)
}

func quote(s string) string { return "'" + s + "'" }
