package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/reporter"
)

func newPoliciesCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policies",
		Short: "Browse the bundled policy templates, copy and combine them, validate and convert policy files",
		Example: `  troyctl policies list
  troyctl policies show soc2
  troyctl policies copy hipaa -o my_policy.json
  troyctl policies init -t soc2 -t hipaa -o policy.json
  troyctl policies validate policy.json
  troyctl policies convert their_python_policy.json -o policy.json`,
	}
	cmd.AddCommand(newPoliciesListCmd(a), newPoliciesShowCmd(a), newPoliciesCopyCmd(a), newPoliciesInitCmd(a), newPoliciesValidateCmd(a), newPoliciesConvertCmd(a))
	return cmd
}

func newPoliciesListCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the bundled policy templates",
		Example: "  troyctl policies list\n  troyctl policies list --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			all, err := policies.Templates()
			if err != nil {
				return err
			}
			if asJSON {
				type entry struct {
					Name        string `json:"name"`
					PolicyID    string `json:"policy_id"`
					Description string `json:"description"`
					Rules       int    `json:"rules"`
				}
				out := make([]entry, 0, len(all))
				for _, t := range all {
					out = append(out, entry{t.Name, t.Policy.PolicyID, t.Policy.Description, len(t.Policy.Rules)})
				}
				return reporter.EncodeJSON(a.stdout, out)
			}
			for _, t := range all {
				fmt.Fprintf(a.stdout, "  %-18s %2d rules  %s\n", t.Name, len(t.Policy.Rules), t.Policy.Description)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newPoliciesShowCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show NAME|FILE",
		Short: "Show a policy's rules: severity, weight, id, description and condition",
		Example: `  troyctl policies show soc2
  troyctl policies show examples/policy.json --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := policies.Resolve(args[0])
			if err != nil {
				return err
			}
			if asJSON {
				_, err := a.stdout.Write(p.Indented())
				return err
			}
			w := a.stdout
			fmt.Fprintf(w, "\n  %s\n  %s\n\n", p.PolicyID, p.Description)
			for _, r := range p.Rules {
				fmt.Fprintf(w, "  %-10s %3d  %s\n", "["+r.Severity+"]", r.Weight, r.RuleID)
				fmt.Fprintf(w, "                  %s\n", r.Description)
				fmt.Fprintf(w, "                  when: %s\n", r.Condition)
			}
			fmt.Fprintf(w, "\n  %d rules total\n  Source: %s\n\n", len(p.Rules), p.Source)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the policy as JSON")
	return cmd
}

func newPoliciesCopyCmd(a *app) *cobra.Command {
	var (
		out   string
		force bool
	)
	cmd := &cobra.Command{
		Use:   "copy NAME",
		Short: "Copy a bundled template into your project to customize it",
		Example: `  troyctl policies copy soc2
  troyctl policies copy hipaa -o my_policy.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := policies.LookupTemplate(args[0])
			if err != nil {
				return err
			}
			if out == "" {
				out = t.Name + ".json"
			}
			if err := writeNew(a, out, t.Raw, force); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Copied template %s to %s\nEdit %s to customize rules for your project.\n", t.Name, out, out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "destination (default ./NAME.json)")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "overwrite an existing file without asking")
	return cmd
}

func newPoliciesInitCmd(a *app) *cobra.Command {
	var (
		out       string
		templates []string
		force     bool
	)
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a policy file by combining bundled templates",
		Long: `Create a policy file by combining bundled templates, in the order given. When two
templates define the same rule id, the first one wins.`,
		Example: `  troyctl policies init
  troyctl policies init -t soc2 -t hipaa -o enterprise_policy.json
  troyctl policies init -t owasp_llm_top10 -t safe_browsing`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(templates) == 0 {
				templates = []string{"minimal"}
			}
			var ps []*policies.Policy
			for _, name := range templates {
				t, err := policies.LookupTemplate(name)
				if err != nil {
					return err
				}
				ps = append(ps, t.Policy)
			}
			merged := policies.Merge("custom-policy", "Combined policy from: "+strings.Join(templates, ", "), ps...)
			if err := writeNew(a, out, merged.Indented(), force); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Created %s with %d rules from %d template(s):\n", out, len(merged.Rules), len(templates))
			for _, t := range templates {
				fmt.Fprintf(a.stdout, "  - %s\n", t)
			}
			fmt.Fprintf(a.stdout, "\nEdit %s to customize rules for your project.\n", out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "policy.json", "destination")
	cmd.Flags().StringArrayVarP(&templates, "template", "t", nil, "template to include (repeat for several; default minimal)")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "overwrite an existing file without asking")
	return cmd
}

func newPoliciesValidateCmd(a *app) *cobra.Command {
	var strict bool
	cmd := &cobra.Command{
		Use:   "validate POLICY...",
		Short: "Check policy files: format, rule ids, severities, weights, that every condition compiles and keeps to the limits",
		Long: `Check policy files: format, rule ids, severities, weights, and that every condition
compiles. A condition that certainly breaks a limit (a repeat making more than 16 MiB,
quantifiers nested more than 4 deep or over more than 1,000,000 known iterations) is an
error, as it is when the policy loads. A condition whose cost only the run-time limits
bound (quantifiers over the trace nested in each other, a repeat with a computed count,
the whole trace written out at every step) is a warning naming the rule and why, and so is
a place where a policy written for the Python tool fails at run time as that tool's does
(a name its namespace lacks, operand types that raise); with --strict, warnings are
errors.`,
		Example: `  troyctl policies validate policy.json
  troyctl policies validate policies/*.json
  troyctl policies validate --strict policy.json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var errs []error
			for _, arg := range args {
				p, err := policies.Resolve(arg)
				var c *evaluator.Compiled
				if err == nil {
					c, err = evaluator.Compile(p)
				}
				if err != nil {
					errs = append(errs, err)
					continue
				}
				var warnings []evaluator.Warning
				for _, w := range p.ConversionWarnings { // where the Python tool's rule fails at run time
					warnings = append(warnings, evaluator.Warning{RuleID: w.RuleID, Msg: "condition (Python): " + w.Msg})
				}
				warnings = append(warnings, c.Warnings()...)
				for _, w := range warnings {
					line := fmt.Sprintf("%s: %s: warning: %s", arg, policies.RuleLabel(w.RuleID), w.Msg)
					if strict {
						errs = append(errs, errors.New(line))
					} else {
						fmt.Fprintln(a.stdout, line)
					}
				}
				if strict && len(warnings) > 0 {
					continue
				}
				fmt.Fprintf(a.stdout, "%s: ok (%d rules%s)\n", arg, len(p.Rules), plural(len(warnings), ", %d warning", ", %d warnings"))
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVar(&strict, "strict", false, "treat warnings about costs as errors (exit 1), e.g. in CI: troyctl policies validate --strict policy.json")
	return cmd
}

// plural formats n with one or many, or nothing when n is zero.
func plural(n int, one, many string) string {
	switch n {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf(one, n)
	}
	return fmt.Sprintf(many, n)
}

// writeNew writes a new file, never overwriting silently: with --force it overwrites; on a
// terminal it asks; otherwise it refuses.
func writeNew(a *app, path string, data []byte, force bool) error {
	if _, err := os.Stat(path); err == nil && !force {
		if !isTerminal(a.stdin) {
			return fmt.Errorf("%s already exists; use --force to overwrite it", path)
		}
		fmt.Fprintf(a.stderr, "%s already exists. Overwrite? [y/N] ", path)
		answer, _ := bufio.NewReader(a.stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return fmt.Errorf("%s already exists; not overwritten", path)
		}
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	return os.WriteFile(path, data, 0o644)
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
