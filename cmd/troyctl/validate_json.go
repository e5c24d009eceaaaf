package main

import (
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/policies"
)

// validation is one file's line of `policies validate --json`.
type validation struct {
	File     string            `json:"file"`
	OK       bool              `json:"ok"`
	Rules    int               `json:"rules"`
	Errors   []validationIssue `json:"errors"`
	Warnings []validationIssue `json:"warnings"`
}

// validationIssue is an error or warning: the rule (empty for the document), the place
// in it (a field such as condition, or rules[i] for a rule without a usable id), and
// what is wrong.
type validationIssue struct {
	RuleID  string `json:"rule_id"`
	Place   string `json:"place"`
	Message string `json:"message"`
}

// policyWarnings are what validate warns about: where a converted rule fails at run time
// as the Python tool's does, and conditions whose cost only the run-time limits bound.
func policyWarnings(p *policies.Policy, c *evaluator.Compiled) []evaluator.Warning {
	var warnings []evaluator.Warning
	for _, w := range p.ConversionWarnings {
		warnings = append(warnings, evaluator.Warning{RuleID: w.RuleID, Msg: "condition (Python): " + w.Msg})
	}
	return append(warnings, c.Warnings()...)
}

// validateJSON prints a file's validation as one JSON line and says whether it passed.
func validateJSON(a *app, file string, p *policies.Policy, c *evaluator.Compiled, err error, strict bool) bool {
	v := validation{File: file, Errors: []validationIssue{}, Warnings: []validationIssue{}}
	if err != nil {
		v.Errors = issuesOf(err)
	} else {
		v.Rules = len(p.Rules)
		for _, w := range policyWarnings(p, c) {
			place, msg := splitPlace(w.Msg)
			issue := validationIssue{RuleID: w.RuleID, Place: place, Message: msg}
			if strict {
				v.Errors = append(v.Errors, issue)
			} else {
				v.Warnings = append(v.Warnings, issue)
			}
		}
	}
	v.OK = len(v.Errors) == 0
	line, merr := json.Marshal(v)
	if merr != nil { // strings and ints only: cannot happen
		panic(merr)
	}
	a.stdout.Write(append(line, '\n'))
	return v.OK
}

// issuesOf splits a load error into its issues: each *policies.Error of a joined error
// gives its rule and place; another error is one issue with its message.
func issuesOf(err error) []validationIssue {
	var out []validationIssue
	var walk func(error)
	walk = func(err error) {
		if joined, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range joined.Unwrap() {
				walk(e)
			}
			return
		}
		var pe *policies.Error
		if !errors.As(err, &pe) {
			out = append(out, validationIssue{Message: err.Error()})
			return
		}
		issue := validationIssue{}
		issue.Place, issue.Message = splitPlace(pe.Msg)
		switch label := pe.Rule; {
		case strings.HasPrefix(label, "rule "):
			if id, uerr := strconv.Unquote(strings.TrimPrefix(label, "rule ")); uerr == nil {
				issue.RuleID = id
			}
		case label != "": // rules[i]: the rule has no usable id
			issue.Place = strings.TrimSuffix(label+"."+issue.Place, ".")
		}
		out = append(out, issue)
	}
	walk(err)
	return out
}

// placePrefix is a message's leading field name, such as "severity: " or
// "condition (Python): ".
var placePrefix = regexp.MustCompile(`^([a-z_]+(?:\[\d+\])?)(?: \(Python\))?: `)

// splitPlace takes a message's leading field name off as its place.
func splitPlace(msg string) (place, rest string) {
	m := placePrefix.FindStringSubmatch(msg)
	if m == nil {
		return "", msg
	}
	return m[1], strings.TrimPrefix(msg, m[0])
}
