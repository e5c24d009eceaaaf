package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

func newPoliciesConvertCmd(a *app) *cobra.Command {
	var (
		out   string
		force bool
	)
	cmd := &cobra.Command{
		Use:   "convert IN.json",
		Short: "Convert a policy written for the Python tool into troy's condition language",
		Long: `Rewrite every condition of a policy file from the Python tool's dialect (Python
expressions) into troy's (expr), keeping every other field, and say per rule whether it
converted. The converted conditions keep Python's meaning: truthiness, None, equality
and membership, missing keys (an error that skips the rule at that step), assignment
expressions (:=), and str() of dicts and lists as matches() sees it. Constructs outside
the supported subset are refused with the rule and the construct named.

Where the Python tool's rule fails at run time (a name its namespace lacks, such as all(),
any() or len(); operand types that make Python raise), the conversion warns, naming the
rule and the reason: the converted rule fails at the same place and, as in the Python tool,
is then not violated. The written policy says "on_rule_error": "skip" unless it set it.

Without -o the converted policy is printed. troyctl audit and the other commands also
convert such a file on the fly, with a notice. docs/POLICIES.md lists what converts.`,
		Example: `  troyctl policies convert their_policy.json -o policy.json
  troyctl policies convert their_policy.json > policy.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := policies.LoadFileAsWritten(args[0])
			if err != nil {
				return err
			}
			if !p.IsPython() {
				fmt.Fprintf(a.stderr, "troyctl: %s: no condition needs converting (none uses Python-only syntax); writing it as it is\n", args[0])
			}
			failed := 0
			if p.IsPython() {
				_, hadSetting := p.Extra[policies.OnRuleErrorKey]
				for _, c := range p.ConvertPython() {
					if c.Err != nil {
						failed++
						fmt.Fprintf(a.stderr, "  failed     %s: %v\n", c.RuleID, c.Err)
						continue
					}
					fmt.Fprintf(a.stderr, "  converted  %s\n", c.RuleID)
					for _, w := range c.Warnings {
						fmt.Fprintf(a.stderr, "  warning    %s: %s\n", c.RuleID, w)
					}
				}
				if !hadSetting {
					fmt.Fprintf(a.stderr, "  %s: %q added: a rule that fails is not violated, as in the Python tool (set it to %q to block such steps in enforce mode)\n",
						policies.OnRuleErrorKey, schemas.OnRuleErrorSkip, schemas.OnRuleErrorBlock)
				}
			}
			if failed > 0 {
				return fmt.Errorf("%s: %d of %d conditions could not be converted; nothing written", args[0], failed, len(p.Rules))
			}
			if _, err := evaluator.Compile(p); err != nil {
				return fmt.Errorf("%s: the converted policy does not compile: %w", args[0], err)
			}
			if out == "" {
				_, err := a.stdout.Write(p.Indented())
				return err
			}
			if err := writeNew(a, out, p.Indented(), force); err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "%d rules written to %s\n", len(p.Rules), out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write the converted policy to (default: stdout)")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "overwrite the output file")
	return cmd
}
