package main

import (
	"bufio"
	"context"
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
		Use:   "list",
		Short: "List the bundled policy templates",
		Long: `List the bundled policy templates, one a line, sorted by name: the policy id, the
number of rules and the description. --json gives each template's name (what show, copy
and init take, as they take the policy id), policy id, description and number of rules.`,
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
			writeTemplateList(a.stdout, all)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// writeTemplateList prints templates as the Python tool's list does, column for column.
func writeTemplateList(w io.Writer, all []policies.Template) {
	if len(all) == 0 {
		fmt.Fprintln(w, "No bundled policies found.")
		return
	}
	for _, t := range all {
		fmt.Fprintf(w, "  %-25s %2d rules  \u2014 %s\n", t.Policy.PolicyID, len(t.Policy.Rules), t.Policy.Description)
	}
}

// notFound is the Python tool's answer to a name that is no template: a line on stdout
// and exit code 1.
func notFound(a *app, name string) error {
	fmt.Fprintf(a.stdout, "Policy '%s' not found. Run 'troyctl policies list' to see available policies.\n", name)
	return &exitCodeError{code: exitError}
}

// lookupTemplate finds a template by name or policy id; a name that is neither is
// reported as notFound.
func lookupTemplate(a *app, name string) (policies.Template, error) {
	t, err := policies.LookupTemplate(name)
	if errors.Is(err, policies.ErrNoTemplate) {
		return t, notFound(a, name)
	}
	return t, err
}

func newPoliciesShowCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show NAME|FILE",
		Short: "Show a policy's rules: severity, id and description",
		Long: `Show a policy's rules: severity, id and description. NAME is a bundled template's
name (soc2) or its policy id (soc2-trust-services); a policy file is shown too. The
File line of a template reads embedded:templates/NAME.json, as templates are built into
troyctl ('troyctl policies copy NAME' writes one out). --json prints the whole policy,
conditions and weights included.`,
		Example: `  troyctl policies show soc2
  troyctl policies show soc2-trust-services
  troyctl policies show examples/policy.json --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p *policies.Policy
			var file string
			t, err := policies.LookupTemplate(args[0])
			switch {
			case err == nil:
				p, file = t.Policy, t.File()
			case !errors.Is(err, policies.ErrNoTemplate):
				return err
			default:
				if st, statErr := os.Stat(args[0]); statErr != nil || st.IsDir() {
					return notFound(a, args[0])
				}
				if p, err = policies.LoadFile(args[0]); err != nil {
					return err
				}
				if file, err = filepath.Abs(args[0]); err != nil {
					return err
				}
			}
			if asJSON {
				_, err := a.stdout.Write(p.Indented())
				return err
			}
			writePolicyDetails(a.stdout, p, file, useColor(a.stdout))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the policy as JSON")
	return cmd
}

// severityColors are the ANSI colours of severity labels on a terminal, as the Python
// tool colours them; another severity is white.
var severityColors = map[string]string{"critical": "31", "high": "33", "medium": "36", "low": "32"}

// writePolicyDetails prints a policy as the Python tool's show does, line for line.
func writePolicyDetails(w io.Writer, p *policies.Policy, file string, color bool) {
	fmt.Fprintf(w, "\n  %s\n  %s\n\n", p.PolicyID, p.Description)
	for _, r := range p.Rules {
		label := fmt.Sprintf("%11s", "["+r.Severity+"]") // the label's ] in column 13
		if color {
			code, ok := severityColors[r.Severity]
			if !ok {
				code = "37"
			}
			trimmed := strings.TrimLeft(label, " ")
			label = label[:len(label)-len(trimmed)] + "\x1b[" + code + "m" + trimmed + "\x1b[0m"
		}
		fmt.Fprintf(w, "  %s  %s\n              %s\n", label, r.RuleID, r.Description)
	}
	fmt.Fprintf(w, "\n  %d rules total\n  File: %s\n\n", len(p.Rules), file)
}

// useColor says whether w is a terminal that may be coloured.
func useColor(w io.Writer) bool {
	f, ok := w.(*os.File)
	return colorWanted(ok && term.IsTerminal(int(f.Fd())), os.Getenv("NO_COLOR"))
}

// colorWanted: colour on a terminal, unless NO_COLOR is set to anything but empty
// (no-color.org).
func colorWanted(terminal bool, noColor string) bool { return terminal && noColor == "" }

func newPoliciesCopyCmd(a *app) *cobra.Command {
	var (
		out   string
		force bool
	)
	cmd := &cobra.Command{
		Use:   "copy NAME",
		Short: "Copy a bundled template into your project to customize it",
		Long: `Copy a bundled template, byte for byte, into your project to customize it. NAME is
the template's name or its policy id; the copy goes to NAME.json (NAME as typed) unless
-o says otherwise (into a directory, under the template's file name). An existing file is
overwritten only when you answer y to the question, or with --force; with no answer
(stdin at its end, as in CI) nothing is written and the exit code is 1.`,
		Example: `  troyctl policies copy soc2
  troyctl policies copy hipaa -o my_policy.json
  troyctl policies copy soc2-trust-services --force`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := lookupTemplate(a, args[0])
			if err != nil {
				return err
			}
			if out == "" {
				out = args[0] + ".json"
			}
			dest := pyPath(out)
			if _, err := os.Stat(out); err == nil && !force {
				if err := confirmOverwrite(cmd.Context(), a, dest); err != nil {
					return err
				}
			}
			target := out
			if st, err := os.Stat(out); err == nil && st.IsDir() {
				target = filepath.Join(out, t.FileName())
			}
			if err := writeWithDir(target, t.Raw); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Copied %s \u2192 %s\nEdit %s to customize rules for your project.\n", t.FileName(), dest, dest)
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
		Long: `Create a policy file by combining bundled templates, in the order given (by name or
policy id; minimal when none is given). When two templates define the same rule id, the
first one wins. The file is written as the Python tool writes it, with policy_id
custom-policy; its directory is created. An existing file is overwritten only when you
answer y to the question, or with --force.`,
		Example: `  troyctl policies init
  troyctl policies init -t soc2 -t hipaa -o enterprise_policy.json
  troyctl policies init -t owasp_llm_top10 -t safe_browsing`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(templates) == 0 {
				templates = []string{"minimal"}
			}
			ts := make([]policies.Template, 0, len(templates))
			for _, name := range templates {
				t, err := lookupTemplate(a, name)
				if err != nil {
					return err
				}
				ts = append(ts, t)
			}
			doc, n, err := policies.Combine("Combined policy from: "+strings.Join(templates, ", "), ts...)
			if err != nil {
				return err
			}
			dest := pyPath(out)
			if _, err := os.Stat(out); err == nil && !force {
				if err := confirmOverwrite(cmd.Context(), a, dest); err != nil {
					return err
				}
			}
			if err := writeWithDir(out, doc); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Created %s with %d rules from %d template(s):\n", dest, n, len(templates))
			for _, t := range templates {
				fmt.Fprintf(a.stdout, "  - %s\n", t)
			}
			fmt.Fprintf(a.stdout, "\nEdit %s to customize rules for your project.\n", dest)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "policy.json", "destination")
	cmd.Flags().StringArrayVarP(&templates, "template", "t", nil, "template to include, by name or policy id (repeat for several; default minimal)")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "overwrite an existing file without asking")
	return cmd
}

func newPoliciesValidateCmd(a *app) *cobra.Command {
	var strict, asJSON bool
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
errors.

--json prints one JSON object a line, one per file: {"file", "ok", "rules", "errors",
"warnings"}, each error and warning {"rule_id", "place", "message"} (rule_id empty for
the document, place the field or rules[i] where it is); the exit code is the same.`,
		Example: `  troyctl policies validate policy.json
  troyctl policies validate policies/*.json
  troyctl policies validate --strict policy.json
  troyctl policies validate --json policies/*.json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var errs []error
			for _, arg := range args {
				p, err := policies.Resolve(arg)
				var c *evaluator.Compiled
				if err == nil {
					c, err = evaluator.Compile(p)
				}
				if asJSON {
					if !validateJSON(a, arg, p, c, err, strict) {
						errs = append(errs, fmt.Errorf("%s: not valid", arg))
					}
					continue
				}
				if err != nil {
					errs = append(errs, err)
					continue
				}
				noticeIgnoredSettings(a.stderr, arg, p)
				warnings := policyWarnings(p, c)
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
			if asJSON && len(errs) > 0 {
				return &exitCodeError{code: exitError} // each file's errors are in its line
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per file: file, ok, rules, errors and warnings")
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

// writeWithDir writes a file, creating its directory.
func writeWithDir(path string, data []byte) error {
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	return os.WriteFile(path, data, 0o644)
}

// aborted ends a command the user declined, as the Python tool (click) ends it:
// "Aborted!" on stderr and exit code 1.
func aborted(a *app) error {
	fmt.Fprintln(a.stderr, "Aborted!")
	return &exitCodeError{code: exitError}
}

// confirmOverwrite asks whether to overwrite path as the Python tool asks (click's
// confirm, default no): the question on stdout, the answer read from stdin whether it is
// a terminal or a pipe, so that scripts answering it run unchanged. y or yes overwrites;
// n, no, an empty line, the end of stdin or an interrupt abort; anything else asks again.
func confirmOverwrite(ctx context.Context, a *app, path string) error {
	in := bufio.NewReader(a.stdin)
	for {
		fmt.Fprintf(a.stdout, "%s already exists. Overwrite? [y/N]: ", path)
		line, err := readLine(ctx, in)
		if err != nil && line == "" {
			return aborted(a)
		}
		switch strings.ToLower(strings.TrimSpace(line)) {
		case "y", "yes":
			return nil
		case "n", "no", "":
			return aborted(a)
		}
		fmt.Fprintln(a.stdout, "Error: invalid input")
	}
}

// readLine reads a line, or gives up when ctx ends (an interrupt: the read itself cannot
// be cancelled, and the process ends soon after).
func readLine(ctx context.Context, r *bufio.Reader) (string, error) {
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := r.ReadString('\n')
		ch <- result{line, err}
	}()
	select {
	case res := <-ch:
		return res.line, res.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// pyPath writes a path as Python's pathlib does, as the Python tool's messages show
// paths: "." and empty parts dropped ("./a//b/" is "a/b"), ".." kept.
func pyPath(p string) string {
	root := ""
	switch {
	case strings.HasPrefix(p, "//") && !strings.HasPrefix(p, "///"):
		root = "//"
	case strings.HasPrefix(p, "/"):
		root = "/"
	}
	var parts []string
	for _, part := range strings.Split(p, "/") {
		if part != "" && part != "." {
			parts = append(parts, part)
		}
	}
	if root == "" && len(parts) == 0 {
		return "."
	}
	return root + strings.Join(parts, "/")
}

// writeNew writes a new file for troy's own commands (convert), never overwriting
// silently: with --force it overwrites; on a terminal it asks; otherwise it refuses.
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
	return writeWithDir(path, data)
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
