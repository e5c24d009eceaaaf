package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
	"github.com/troy-audit/troy/sdk/agent"
)

// exitUsage ends check when a flag's value is refused, as the Python tool's click ends it
// (the same code as exitBlocked there too).
const exitUsage = 2

// checkViolation is a violation as check prints it (the step is named once, above).
type checkViolation struct {
	RuleID          string `json:"rule_id"`
	RuleDescription string `json:"rule_description"`
	Severity        string `json:"severity"`
	Details         string `json:"details"`
}

type checkOutput struct {
	Allowed    bool                    `json:"allowed"`
	StepID     string                  `json:"step_id"`
	RiskScore  int                     `json:"risk_score"`
	Mode       string                  `json:"mode"`
	Violations []checkViolation        `json:"violations"`
	RuleErrors []schemas.StepRuleError `json:"rule_errors"`
}

func newCheckCmd(a *app) *cobra.Command {
	var (
		action, input, stepType, mode, agentName, metadata, agentMetadata, session, onRuleError string
		nf                                                                                      natsFlags
	)
	cmd := &cobra.Command{
		Use:   "check POLICY -a ACTION",
		Short: "Check one proposed action against a policy (exit 0 allowed, 2 blocked)",
		Long: `Check one proposed action against a policy, as the guard does before a tool runs.
Prints only the decision on stdout, JSON as the Python tool writes it: {allowed, step_id,
risk_score, mode, violations, rule_errors}; notices go to stderr. The exit code is 0 when
the action is allowed, 2 when it is blocked, 2 when --input, --metadata or
--agent-metadata is JSON Python's json refuses (a usage error with Python's message, as
the Python tool gives), and 1 on other bad input. An empty value, or JSON Python takes
for false (null, false, 0, "", [], {}), is no value.

Modes: enforce blocks violating actions; monitor and dry-run allow them (and report
the violations). A rule whose condition cannot be evaluated for the action (it compares
a string with a number, reads a key of a missing value...) is listed in rule_errors;
in enforce mode it blocks the action, as an unreachable guard does, unless
--on-rule-error skip or the policy's on_rule_error says skip (the flag wins). Numbers
in --input and --metadata are read as Python's json reads them: 1e999999 is infinity,
integers are exact however long, NaN and Infinity are accepted. With --nats, a running
guard service answers (troyctl serve), and the check is recorded in its session.`,
		Example: `  troyctl check examples/policy.json -a search -i '{"query": "SELECT * FROM users"}'
  troyctl check examples/policy.json -a send_email --mode monitor
  troyctl check examples/policy.json -a bash --metadata '{"permission_level": "admin"}'
  troyctl check guardrails -a chat -t llm_call --metadata '{"total_tokens": "200000"}' --on-rule-error skip
  troyctl check soc2 -a upload --nats nats://127.0.0.1:4222 --session s-42`,
		// Usage errors are the Python tool's (click's), checked in its order: the policy
		// argument, then -a, then the step type and mode; exit code 2.
		Args: func(_ *cobra.Command, args []string) error {
			switch {
			case len(args) == 0:
				return checkUsageError(a, "Missing argument 'POLICY_FILE'.")
			case len(args) == 2:
				return checkUsageError(a, fmt.Sprintf("Got unexpected extra argument (%s)", args[1]))
			case len(args) > 2:
				return checkUsageError(a, fmt.Sprintf("Got unexpected extra arguments (%s)", strings.Join(args[1:], " ")))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := os.Stat(args[0]); errors.Is(err, fs.ErrNotExist) {
				if _, terr := policies.LookupTemplate(args[0]); errors.Is(terr, policies.ErrNoTemplate) {
					return checkUsageError(a, fmt.Sprintf("Invalid value for 'POLICY_FILE': Path '%s' does not exist.", args[0]))
				}
			}
			if !cmd.Flags().Changed("action") {
				return checkUsageError(a, "Missing option '--action' / '-a'.")
			}
			if clickTypes := []string{schemas.StepToolCall, schemas.StepLLMCall, schemas.StepDecision, schemas.StepObservation}; !slices.Contains(clickTypes, stepType) {
				return checkUsageError(a, fmt.Sprintf("Invalid value for '--step-type' / '-t': %s is not one of %s.", pyQuote(stepType), pyQuoteAll(clickTypes)))
			}
			if !slices.Contains(schemas.Modes(), mode) {
				return checkUsageError(a, fmt.Sprintf("Invalid value for '--mode': %s is not one of %s.", pyQuote(mode), pyQuoteAll(schemas.Modes())))
			}
			var objs [3]map[string]any
			for i, f := range []struct{ name, value string }{{"--input", input}, {"--metadata", metadata}, {"--agent-metadata", agentMetadata}} {
				m, err := jsonObjectFlag(f.name, f.value)
				var de *pyjson.DecodeError
				if errors.As(err, &de) {
					return checkUsageError(a, fmt.Sprintf("Invalid value: Invalid JSON for %s: %v", f.name, de))
				}
				if err != nil {
					return err
				}
				objs[i] = m
			}
			in, meta, agentMeta := objs[0], objs[1], objs[2]
			if onRuleError != "" && !slices.Contains(schemas.OnRuleErrors(), onRuleError) {
				return fmt.Errorf("--on-rule-error: expected %s, got %q", strings.Join(schemas.OnRuleErrors(), " or "), onRuleError)
			}
			c, err := loadPolicy(a, args[0])
			if err != nil {
				return err
			}
			gopts := evaluator.GuardOptions{AgentName: agentName, AgentMetadata: agentMeta, Mode: mode, OnRuleError: onRuleError}
			req := evaluator.CheckRequest{GuardStep: schemas.GuardStep{Action: action, Input: in, Metadata: meta, Type: stepType}}
			var d schemas.Decision
			if nf.opts.URL != "" {
				if d, err = nf.remoteCheck(cmd.Context(), c, session, gopts, req); err != nil {
					return err
				}
				if onRuleError != "" && d.Mode == schemas.ModeEnforce {
					// The service decided with its own setting; the flag wins.
					d.Allowed = len(d.Violations) == 0 && (len(d.RuleErrors) == 0 || onRuleError == schemas.OnRuleErrorSkip)
				}
			} else {
				g, err := c.NewGuard(gopts)
				if err != nil {
					return err
				}
				if d, err = g.Check(req); err != nil {
					return err
				}
			}
			out := checkOutput{Allowed: d.Allowed, StepID: d.StepID, RiskScore: d.RiskScore, Mode: d.Mode, Violations: []checkViolation{}, RuleErrors: d.RuleErrors}
			if out.RuleErrors == nil {
				out.RuleErrors = []schemas.StepRuleError{}
			}
			for _, v := range d.Violations {
				out.Violations = append(out.Violations, checkViolation{RuleID: v.RuleID, RuleDescription: v.RuleDescription, Severity: v.Severity, Details: v.Details})
			}
			if err := writeDecision(a.stdout, out); err != nil {
				return err
			}
			for _, e := range out.RuleErrors {
				fmt.Fprintf(a.stderr, "troyctl: warning: rule %s could not be evaluated: %s\n", e.RuleID, e.Error)
			}
			if !d.Allowed {
				return &exitCodeError{code: exitBlocked}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&action, "action", "a", "", "tool or action name (required)")
	f.StringVarP(&input, "input", "i", "", "the action's input as a JSON object")
	f.StringVarP(&stepType, "step-type", "t", schemas.StepToolCall, "step type: "+strings.Join(schemas.StepTypes(), ", "))
	f.StringVar(&mode, "mode", schemas.ModeEnforce, "guard mode: "+strings.Join(schemas.Modes(), ", "))
	f.StringVar(&agentName, "agent-name", "agent", "agent name conditions see")
	f.StringVar(&metadata, "metadata", "", "step metadata as a JSON object")
	f.StringVar(&agentMetadata, "agent-metadata", "", "agent metadata as a JSON object")
	f.StringVar(&onRuleError, "on-rule-error", "", "in enforce mode, what a rule that cannot be evaluated does: block or skip (default: the policy's on_rule_error, else block)")
	f.StringVar(&session, "session", "", "with --nats: the session (trace) the check belongs to (default: a new one)")
	nf.register(cmd)
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		msg := err.Error()
		if name, ok := strings.CutPrefix(msg, "unknown flag: "); ok {
			msg = "No such option: " + name
		} else if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
			if _, short, ok := strings.Cut(name, " in "); ok { // "'a' in -a"
				name = short
			}
			msg = fmt.Sprintf("Option '%s' requires an argument.", name)
		}
		return checkUsageError(a, msg)
	})
	return cmd
}

// pyQuote writes a string as Python's repr does for the plain values of choices.
func pyQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }

func pyQuoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = pyQuote(s)
	}
	return strings.Join(q, ", ")
}

// jsonObjectFlag parses a flag holding a JSON object; empty, or a value Python takes for
// false (null, false, 0, "", [], {}), means none, as for the Python tool. A document Python's json refuses is a *pyjson.DecodeError with
// Python's message; numbers are read as Python's json reads them, as in trace files.
func jsonObjectFlag(name, value string) (map[string]any, error) {
	if value == "" {
		return map[string]any{}, nil
	}
	if _, err := pyjson.DecodeText(value); err != nil {
		return nil, err
	}
	var v any
	if err := pyjson.Unmarshal([]byte(value), &v); err != nil {
		return nil, fmt.Errorf("%s: invalid JSON: %v", name, err)
	}
	if pyFalsy(v) {
		return map[string]any{}, nil // the Python tool passes `value or {}` on
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: expected a JSON object such as '{\"key\": \"value\"}', got %s", name, shorten(strings.TrimSpace(value)))
	}
	return m, nil
}

// pyFalsy says whether Python takes a decoded JSON value for false.
func pyFalsy(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case bool:
		return !v
	case int:
		return v == 0
	case float64:
		return v == 0
	case *big.Int:
		return v.Sign() == 0
	case string:
		return v == ""
	case []any:
		return len(v) == 0
	case map[string]any:
		return len(v) == 0
	}
	return false
}

// checkUsageError reports a usage error as the Python tool (click) reports one: usage
// and error on stderr, exit code 2.
func checkUsageError(a *app, msg string) error {
	fmt.Fprintf(a.stderr, "Usage: troyctl check [OPTIONS] POLICY_FILE\nTry 'troyctl check --help' for help.\n\nError: %s\n", msg)
	return &exitCodeError{code: exitUsage}
}

// writeDecision prints the decision as the Python tool prints it (json.dumps with
// indent=2: its keys in its order, every character beyond ASCII escaped), rule_errors
// last.
func writeDecision(w io.Writer, out checkOutput) error {
	raw, err := pyjson.Marshal(out)
	if err != nil {
		return err
	}
	text, err := pyjson.Reindent(raw, "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(text, '\n'))
	return err
}

// shorten quotes the start of a value for a one-line message.
func shorten(v string) string {
	if r := []rune(v); len(r) > 60 {
		v = string(r[:60]) + "..."
	}
	return strconv.Quote(v)
}

// remoteCheck asks a running guard service to check req in the session (a new one when
// empty), with the policy given on the command line and the agent and mode of g; the
// service's own setting decides what a rule error does.
func (nf *natsFlags) remoteCheck(ctx context.Context, c *evaluator.Compiled, session string, g evaluator.GuardOptions, req evaluator.CheckRequest) (schemas.Decision, error) {
	nf.resolveCreds()
	opts := nf.opts
	opts.Name, opts.Client = "troyctl", true
	b, err := bus.Open(ctx, opts)
	if err != nil {
		return schemas.Decision{}, err
	}
	defer b.Close()
	hash, err := pipeline.NewPolicies(b).Put(ctx, c)
	if err != nil {
		return schemas.Decision{}, err
	}
	resume := session != ""
	if !resume {
		session = "check-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	} else if err := samePolicy(ctx, b, g.AgentName, session, c); err != nil {
		return schemas.Decision{}, err
	}
	guard := agent.New(b.Conn()).Guard(agent.GuardOptions{Session: session, Agent: g.AgentName, AgentMetadata: g.AgentMetadata, Mode: g.Mode, Policy: hash, Timeout: 5 * time.Second, Resume: resume})
	d, err := guard.Check(ctx, req.Action, req.Input, req.Metadata, req.Type)
	var blocked *agent.BlockedError
	if err != nil && !errors.As(err, &blocked) {
		return d, err
	}
	return d, nil
}

// samePolicy refuses a check whose policy is not the one the session runs with: the
// guard service keeps a session's first policy, and would decide with it in silence.
// A session that ended starts a new run, with the policy of its next check.
func samePolicy(ctx context.Context, b *bus.Bus, agentName, session string, c *evaluator.Compiled) error {
	subject := event.StepsSubject(agentName, session)
	last, err := b.LastSeq(ctx, subject)
	if err != nil || last == 0 {
		return err
	}
	events, err := b.ReadRange(ctx, bus.StepsStream, subject, last-1, last)
	if err != nil {
		return fmt.Errorf("read session %s: %w", session, err)
	}
	if len(events) == 0 || events[0].Kind == event.KindEnd {
		return nil
	}
	var ref event.TraceRef
	if err := json.Unmarshal(events[0].Data, &ref); err != nil || ref.Policy == "" || ref.Policy == c.Hash() {
		return nil // an event the guard skips too, or the same policy
	}
	first := "a policy no longer stored"
	if kept, err := pipeline.NewPolicies(b).Compiled(ctx, ref.Policy); err == nil {
		first = kept.Policy().PolicyID
	}
	return fmt.Errorf("session %s keeps its first policy, %s (%s); this check's policy is %s (%s): check with the session's policy, or in a new --session",
		session, first, ref.Policy[:min(len(ref.Policy), 12)], c.Policy().PolicyID, c.Hash()[:12])
}
