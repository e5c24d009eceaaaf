package policies

import (
	"errors"
	"fmt"

	"github.com/troy-audit/troy/policies/pyconv"
)

// Conversion is what became of one rule's condition when a policy written for the Python
// tool was converted.
type Conversion struct {
	RuleID   string
	From, To string
	Err      error // why the condition could not be converted; To is then empty
}

// IsPython reports whether the policy's conditions are written in the Python tool's
// dialect (see pyconv.LooksLikePython).
func (p *Policy) IsPython() bool {
	conds := make([]string, len(p.Rules))
	for i, r := range p.Rules {
		conds[i] = r.Condition
	}
	return len(conds) > 0 && pyconv.LooksLikePython(conds)
}

// ConvertPython rewrites every condition from the Python tool's dialect into troy's,
// in place where it can, and says what became of each.
func (p *Policy) ConvertPython() []Conversion {
	out := make([]Conversion, len(p.Rules))
	for i := range p.Rules {
		r := &p.Rules[i]
		c := Conversion{RuleID: r.RuleID, From: r.Condition}
		c.To, c.Err = pyconv.Convert(r.Condition)
		if c.Err == nil {
			r.Condition = c.To
		}
		out[i] = c
	}
	return out
}

// fromPython converts a policy written for the Python tool as it loads: Converted counts
// the conditions, and a condition that cannot be converted is an error naming its rule.
func (p *Policy) fromPython() error {
	if !p.IsPython() {
		return nil
	}
	var errs []error
	for _, c := range p.ConvertPython() {
		if c.Err != nil {
			errs = append(errs, &Error{Source: p.Source, Rule: RuleLabel(c.RuleID), Msg: fmt.Sprintf("condition (Python) cannot be converted: %v", c.Err)})
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	p.Converted = len(p.Rules)
	return nil
}
