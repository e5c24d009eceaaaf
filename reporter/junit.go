package reporter

import (
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/troy-audit/troy/policies"
)

// The JUnit XML that CI systems read (Jenkins, GitLab, GitHub test reporters): a
// testsuite per trace, a testcase per rule.
type (
	JUnitSuites struct {
		XMLName  xml.Name     `xml:"testsuites"`
		Name     string       `xml:"name,attr"`
		Tests    int          `xml:"tests,attr"`
		Failures int          `xml:"failures,attr"`
		Errors   int          `xml:"errors,attr"`
		Suites   []JUnitSuite `xml:"testsuite"`
	}
	JUnitSuite struct {
		Name       string          `xml:"name,attr"`
		Tests      int             `xml:"tests,attr"`
		Failures   int             `xml:"failures,attr"`
		Errors     int             `xml:"errors,attr"`
		Properties []JUnitProperty `xml:"properties>property,omitempty"`
		Cases      []JUnitCase     `xml:"testcase"`
	}
	JUnitProperty struct {
		Name  string `xml:"name,attr"`
		Value string `xml:"value,attr"`
	}
	JUnitCase struct {
		Name      string        `xml:"name,attr"`
		ClassName string        `xml:"classname,attr"`
		Failure   *JUnitProblem `xml:"failure,omitempty"`
		Error     *JUnitProblem `xml:"error,omitempty"`
	}
	// JUnitProblem is a failure (violations) or an error (a rule that could not be
	// evaluated): a one-line message, the severity as its type, the details as its text.
	JUnitProblem struct {
		Message string `xml:"message,attr"`
		Type    string `xml:"type,attr"`
		Text    string `xml:",chardata"`
	}
)

// WriteJUnit writes audited traces as JUnit XML: a testsuite per trace (named by its
// trace id and file), a testcase per rule of the policy, failing with the rule's
// violations in that trace, in error when the rule could not be evaluated.
func WriteJUnit(w io.Writer, p *policies.Policy, traces []Audited) error {
	out := JUnitSuites{Name: "troy " + p.PolicyID}
	for _, t := range traces {
		r := t.Result
		name := r.Trace.TraceID + " (" + t.File
		if t.Line > 0 {
			name += ":" + strconv.Itoa(t.Line)
		}
		suite := JUnitSuite{Name: name + ")", Properties: []JUnitProperty{
			{"trace_id", r.Trace.TraceID}, {"agent_name", r.Trace.AgentName},
			{"file", t.File}, {"risk_score", strconv.Itoa(r.RiskScore)}, {"policy_id", p.PolicyID},
		}}
		ruleErrors := map[string]string{}
		if r.Info != nil {
			for _, e := range r.Info.RuleErrors {
				ruleErrors[e.RuleID] = fmt.Sprintf("failed at %d step(s), first at %s: %s", e.Count, e.FirstStep, e.FirstError)
			}
		}
		for _, rule := range p.Rules {
			c := JUnitCase{Name: rule.RuleID, ClassName: "troy." + p.PolicyID}
			var lines []string
			for _, v := range r.Violations {
				if v.RuleID == rule.RuleID {
					line := "step " + v.StepID
					if v.Details != "" {
						line += ": " + v.Details
					}
					lines = append(lines, line)
				}
			}
			if len(lines) > 0 {
				c.Failure = &JUnitProblem{
					Message: fmt.Sprintf("%d violation(s) of %s (%s): %s", len(lines), rule.RuleID, rule.Severity, rule.Description),
					Type:    rule.Severity,
					Text:    strings.Join(lines, "\n"),
				}
				suite.Failures++
			} else if msg, ok := ruleErrors[rule.RuleID]; ok {
				c.Error = &JUnitProblem{Message: "rule " + rule.RuleID + " " + msg, Type: "rule_error", Text: msg}
				suite.Errors++
			}
			suite.Cases = append(suite.Cases, c)
		}
		suite.Tests = len(suite.Cases)
		out.Tests += suite.Tests
		out.Failures += suite.Failures
		out.Errors += suite.Errors
		out.Suites = append(out.Suites, suite)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}
