package policies

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/troy-audit/troy/policies/pyconv"
	"github.com/troy-audit/troy/schemas"
)

// Conversion is what became of one rule's condition when a policy written for the Python
// tool was converted.
type Conversion struct {
	RuleID   string
	From, To string
	Err      error // why the condition could not be converted; To is then empty
	// Warnings are the places where the Python tool's rule fails at run time (a name its
	// namespace lacks, operand types that raise); the converted rule fails there too.
	Warnings []pyconv.Warning
}

// IsPython reports whether the policy's conditions are written in the Python tool's
// dialect (see pyconv.Dialect).
func (p *Policy) IsPython() bool {
	conds := make([]string, len(p.Rules))
	for i, r := range p.Rules {
		conds[i] = r.Condition
	}
	return len(conds) > 0 && pyconv.LooksLikePython(conds)
}

// ConvertPython rewrites every condition from the Python tool's dialect into troy's,
// in place where it can, and says what became of each. The policy's on_rule_error becomes
// "skip" unless it says otherwise: the Python tool takes a rule that raises as not
// violated, in its guard too, and a converted policy keeps that (rule errors are still
// recorded).
func (p *Policy) ConvertPython() []Conversion {
	out := make([]Conversion, len(p.Rules))
	for i := range p.Rules {
		r := &p.Rules[i]
		c := Conversion{RuleID: r.RuleID, From: r.Condition}
		res, err := pyconv.Translate(r.Condition)
		c.To, c.Err, c.Warnings = res.Expr, err, res.Warnings
		if c.Err == nil {
			r.Condition = c.To
		}
		out[i] = c
	}
	if _, ok := p.Extra[OnRuleErrorKey]; !ok {
		if p.Extra == nil {
			p.Extra = map[string]json.RawMessage{}
		}
		p.Extra[OnRuleErrorKey], _ = json.Marshal(schemas.OnRuleErrorSkip)
	}
	return out
}

// fromPython converts a policy written for the Python tool as it loads: Converted counts
// the conditions, ConversionWarnings says where the Python tool's rules fail at run time,
// and a condition that cannot be converted is an error naming its rule.
func (p *Policy) fromPython() error {
	if !p.IsPython() {
		return nil
	}
	var errs []error
	for _, c := range p.ConvertPython() {
		if c.Err != nil {
			errs = append(errs, &Error{Source: p.Source, Rule: RuleLabel(c.RuleID), Msg: fmt.Sprintf("condition (Python) cannot be converted: %v", c.Err)})
		}
		for _, w := range c.Warnings {
			p.ConversionWarnings = append(p.ConversionWarnings, ConversionWarning{Source: p.Source, RuleID: c.RuleID, Msg: w.String()})
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	p.Converted = len(p.Rules)
	return nil
}

// ConversionWarning is a place where a converted rule fails at run time, as the Python
// tool's rule does (see Conversion.Warnings).
type ConversionWarning struct {
	Source, RuleID string
	Msg            string // where in the condition, and why
}

// String words the warning on one line, naming the file and the rule.
func (w ConversionWarning) String() string {
	e := &Error{Source: w.Source, Rule: RuleLabel(w.RuleID), Msg: "condition (Python): " + w.Msg}
	return e.Error()
}
