package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/reporter"
	"github.com/troy-audit/troy/schemas"
)

// checkViolation is a violation as check prints it (the step is named once, above).
type checkViolation struct {
	RuleID          string `json:"rule_id"`
	RuleDescription string `json:"rule_description"`
	Severity        string `json:"severity"`
	Details         string `json:"details"`
}

type checkOutput struct {
	Allowed    bool             `json:"allowed"`
	StepID     string           `json:"step_id"`
	RiskScore  int              `json:"risk_score"`
	Mode       string           `json:"mode"`
	Violations []checkViolation `json:"violations"`
}

func newCheckCmd(a *app) *cobra.Command {
	var (
		action, input, stepType, mode, agentName, metadata, agentMetadata string
	)
	cmd := &cobra.Command{
		Use:   "check POLICY -a ACTION",
		Short: "Check one proposed action against a policy (exit 0 allowed, 2 blocked)",
		Long: `Check one proposed action against a policy, as the guard does before a tool runs.
Prints JSON {allowed, step_id, risk_score, mode, violations}. The exit code is 0 when
the action is allowed, 2 when it is blocked, and 1 on bad input.

Modes: enforce blocks violating actions; monitor and dry-run allow them (and report
the violations).`,
		Example: `  troyctl check examples/policy.json -a search -i '{"query": "SELECT * FROM users"}'
  troyctl check examples/policy.json -a send_email --mode monitor
  troyctl check examples/policy.json -a bash --metadata '{"permission_level": "admin"}'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := jsonObjectFlag("--input", input)
			if err != nil {
				return err
			}
			meta, err := jsonObjectFlag("--metadata", metadata)
			if err != nil {
				return err
			}
			agentMeta, err := jsonObjectFlag("--agent-metadata", agentMetadata)
			if err != nil {
				return err
			}
			c, err := loadPolicy(args[0])
			if err != nil {
				return err
			}
			g, err := c.NewGuard(evaluator.GuardOptions{AgentName: agentName, AgentMetadata: agentMeta, Mode: mode})
			if err != nil {
				return err
			}
			d, err := g.Check(evaluator.CheckRequest{Action: action, Input: in, Metadata: meta, Type: stepType})
			if err != nil {
				return err
			}
			out := checkOutput{Allowed: d.Allowed, StepID: d.StepID, RiskScore: d.RiskScore, Mode: d.Mode, Violations: []checkViolation{}}
			for _, v := range d.Violations {
				out.Violations = append(out.Violations, checkViolation{RuleID: v.RuleID, RuleDescription: v.RuleDescription, Severity: v.Severity, Details: v.Details})
			}
			if err := reporter.EncodeJSON(a.stdout, out); err != nil {
				return err
			}
			if errs := g.RuleErrors(); len(errs) > 0 {
				for _, e := range errs {
					fmt.Fprintf(a.stderr, "troyctl: warning: rule %s could not be evaluated: %s\n", e.RuleID, e.FirstError)
				}
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
	_ = cmd.MarkFlagRequired("action") // the flag exists
	return cmd
}

// jsonObjectFlag parses a flag holding a JSON object; empty means none.
func jsonObjectFlag(name, value string) (map[string]any, error) {
	if strings.TrimSpace(value) == "" {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(strings.NewReader(value))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%s: invalid JSON: %v", name, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: invalid JSON: unexpected data after the object", name)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: expected a JSON object such as '{\"key\": \"value\"}', got %s", name, bytes.TrimSpace([]byte(value)))
	}
	for k, x := range m {
		m[k] = ingest.Normalize(x)
	}
	return m, nil
}
