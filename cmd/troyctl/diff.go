package main

import (
	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/internal/compare"
	"github.com/troy-audit/troy/reporter"
)

func newDiffCmd(a *app) *cobra.Command {
	var (
		policy string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "diff A B",
		Short: "Compare two traces or two audits: steps, violations and risk",
		Long: `Compare two runs of an agent, each a trace file or an audit.json. Steps are aligned by
step id, or by order and description when the ids differ; the comparison lists steps
added, removed and changed (with the fields that changed), violations that appeared or
disappeared, and the change of risk. Traces have no violations until evaluated: give
--policy (which also re-evaluates audits, so both sides use the same rules).

Exit codes, for CI gates between agent versions: 0 the risk did not rise, 3 it rose,
1 error.`,
		Example: `  troyctl diff logs/run-41/audit.json logs/run-42/audit.json
  troyctl diff baseline-trace.json candidate-trace.json --policy soc2
  troyctl diff a.json b.json --json | jq .risk_delta`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var sides [2]*compare.Side
			for i, path := range args {
				s, err := compare.Load(cmd.Context(), path)
				if err != nil {
					return err
				}
				sides[i] = s
			}
			if policy != "" {
				c, err := loadPolicy(a, policy)
				if err != nil {
					return err
				}
				sides[0].Evaluate(c)
				sides[1].Evaluate(c)
			}
			d := compare.Compare(sides[0], sides[1])
			var err error
			if asJSON {
				err = reporter.EncodeJSON(a.stdout, d)
			} else {
				_, err = a.stdout.Write([]byte(d.Text()))
			}
			if err != nil {
				return err
			}
			if d.RiskRose() {
				return &exitCodeError{code: exitFound}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&policy, "policy", "", "evaluate both sides with this policy file or template")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the comparison as JSON")
	return cmd
}
