package main

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/reporter"
	"github.com/troy-audit/troy/schemas"
)

// Output formats of audit and batch.
const (
	formatText  = "text"
	formatJSON  = "json"
	formatSARIF = "sarif"
	formatJUnit = "junit"
)

// ciFlags are audit's and batch's output format and CI gates.
type ciFlags struct {
	format  string
	out     string
	failOn  string
	maxRisk int
}

func (f *ciFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.format, "format", formatText, "what stdout gets: text, json (as --json), sarif (SARIF 2.1.0, for code scanning) or junit (JUnit XML, for CI test reports)")
	fl.StringVar(&f.out, "format-output", "", "write the --format output to this file instead of stdout")
	fl.StringVar(&f.failOn, "fail-on", "", "exit 3 when any violation is of this severity or above: low, medium, high or critical")
	fl.IntVar(&f.maxRisk, "max-risk", -1, "exit 3 when a trace's risk score is above this (0-100)")
}

// resolve checks the flags before any work, folding --json into --format.
func (f *ciFlags) resolve(cmd *cobra.Command, asJSON bool) error {
	if asJSON {
		if cmd.Flags().Changed("format") && f.format != formatJSON {
			return fmt.Errorf("--json and --format %s: give one", f.format)
		}
		f.format = formatJSON
	}
	if !slices.Contains([]string{formatText, formatJSON, formatSARIF, formatJUnit}, f.format) {
		return fmt.Errorf("--format %q: expected text, json, sarif or junit", f.format)
	}
	if f.failOn != "" && !slices.Contains(schemas.Severities(), f.failOn) {
		return fmt.Errorf("--fail-on %q: expected low, medium, high or critical", f.failOn)
	}
	if cmd.Flags().Changed("max-risk") && (f.maxRisk < 0 || f.maxRisk > 100) {
		return fmt.Errorf("--max-risk %d: expected a risk score from 0 to 100", f.maxRisk)
	}
	if f.out != "" && f.format == formatText {
		return fmt.Errorf("--format-output %s: give --format json, sarif or junit too", f.out)
	}
	return nil
}

// machine says whether stdout (or --format-output) gets a document rather than text.
func (f *ciFlags) machine() bool { return f.format != formatText }

// write writes the SARIF or JUnit document of the audited traces, or the JSON value js,
// to --format-output or stdout.
func (f *ciFlags) write(a *app, c *evaluator.Compiled, traces []reporter.Audited, js any) error {
	var buf bytes.Buffer
	var err error
	switch f.format {
	case formatSARIF:
		err = reporter.WriteSARIF(&buf, buildVersion(), c.Policy(), traces)
	case formatJUnit:
		err = reporter.WriteJUnit(&buf, c.Policy(), traces)
	default:
		err = reporter.EncodeJSON(&buf, js)
	}
	if err != nil {
		return err
	}
	if f.out == "" {
		_, err = io.Copy(a.stdout, &buf)
		return err
	}
	if err := writeWithDir(f.out, buf.Bytes()); err != nil {
		return fmt.Errorf("--format-output: %w", err)
	}
	return nil
}

// gate is the run's verdict for CI: exit 3 naming what crossed --fail-on or --max-risk.
func (f *ciFlags) gate(traces []reporter.Audited) error {
	var over []string
	if f.failOn != "" {
		limit := slices.Index(schemas.Severities(), f.failOn) // most severe first
		n := 0
		for _, t := range traces {
			for _, v := range t.Result.Violations {
				if i := slices.Index(schemas.Severities(), v.Severity); i >= 0 && i <= limit {
					n++
				}
			}
		}
		if n > 0 {
			over = append(over, fmt.Sprintf("%d violation(s) of severity %s or above (--fail-on %s)", n, f.failOn, f.failOn))
		}
	}
	if f.maxRisk >= 0 {
		n, top := 0, 0
		for _, t := range traces {
			if t.Result.RiskScore > f.maxRisk {
				n++
				top = max(top, t.Result.RiskScore)
			}
		}
		if n > 0 {
			over = append(over, fmt.Sprintf("%d trace(s) with a risk score above %d, the highest %d (--max-risk %d)", n, f.maxRisk, top, f.maxRisk))
		}
	}
	if len(over) == 0 {
		return nil
	}
	return &exitCodeError{code: exitFound, err: fmt.Errorf("gate failed: %s", strings.Join(over, "; "))}
}
