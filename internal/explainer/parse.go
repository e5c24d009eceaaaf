package explainer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/troy-audit/troy/schemas"
)

var fence = lazyRegexp("(?s)```[A-Za-z]*\\s*\n?(.*?)```")

// errNoJSON says a reply holds no JSON object; the reply is kept raw.
var errNoJSON = errors.New("the reply holds no JSON object")

// parseObject finds the JSON object in a model's reply: the whole reply, a fenced block,
// or the first object after a preamble (text after it is ignored). An array whose first
// element is an object stands for that object.
func parseObject(reply string) (map[string]any, error) {
	candidates := []string{strings.TrimSpace(reply)}
	for _, m := range fence().FindAllStringSubmatch(reply, -1) {
		candidates = append(candidates, strings.TrimSpace(m[1]))
	}
	for _, c := range candidates {
		if obj, ok := decodeObject(c); ok {
			return obj, nil
		}
	}
	// A preamble: try from each opening brace, a bounded number of times.
	for i, tries := 0, 0; tries < 20; tries++ {
		j := strings.IndexAny(reply[i:], "{[")
		if j < 0 {
			break
		}
		if obj, ok := decodeObject(reply[i+j:]); ok {
			return obj, nil
		}
		i += j + 1
	}
	return nil, errNoJSON
}

// decodeObject decodes the first JSON value of s when it is an object (or an array
// starting with one); what follows the value is ignored.
func decodeObject(s string) (map[string]any, bool) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	switch x := v.(type) {
	case map[string]any:
		return x, true
	case []any:
		if len(x) > 0 {
			if obj, ok := x[0].(map[string]any); ok {
				return obj, true
			}
		}
	}
	return nil, false
}

// field looks a key up the way models spell it: any case, with or without underscores,
// dashes or spaces, under any of its names.
func field(obj map[string]any, names ...string) any {
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "", " ", "").Replace(strings.ToLower(s))
	}
	for k, v := range obj {
		if slices.Contains(names, norm(k)) {
			return v
		}
	}
	return nil
}

// text flattens a value to one string: lists are joined, objects become "key: value".
func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return strings.TrimSpace(x)
	case []any:
		parts := make([]string, 0, len(x))
		for _, it := range x {
			if s := text(it); s != "" {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, "; ")
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			if s := text(x[k]); s != "" {
				parts = append(parts, k+": "+s)
			}
		}
		return strings.Join(parts, ", ")
	default:
		return fmt.Sprint(x)
	}
}

// list flattens a value to strings: each item of a list becomes one string (objects as
// "key: value" pairs), and a lone string is split at its bullet lines.
func list(v any) []string {
	switch x := v.(type) {
	case nil:
		return []string{}
	case []any:
		out := make([]string, 0, len(x))
		for _, it := range x {
			if s := text(it); s != "" {
				out = append(out, s)
			}
		}
		return out
	case string:
		var out []string
		for _, line := range strings.Split(x, "\n") {
			line = strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(line), "-*•"))
			if line != "" {
				out = append(out, line)
			}
		}
		if out == nil {
			return []string{}
		}
		return out
	default:
		if s := text(x); s != "" {
			return []string{s}
		}
		return []string{}
	}
}

// parseStep turns a reply into a step's explanation. A reply without JSON is kept raw,
// with the reason in Error; missing keys are empty.
func parseStep(stepID, reply string) schemas.StepExplanation {
	e := schemas.StepExplanation{StepID: stepID, RawResponse: reply, Alternatives: []string{}, RiskFactors: []string{}, DataAccessed: []string{}}
	obj, err := parseObject(reply)
	if err != nil {
		e.Error = err.Error()
		return e
	}
	e.Summary = text(field(obj, "summary", "stepsummary", "description", "what"))
	e.Rationale = text(field(obj, "rationale", "reason", "reasoning", "why"))
	e.Alternatives = list(field(obj, "alternatives", "alternativeactions", "alternativesconsidered"))
	e.RiskFactors = list(field(obj, "riskfactors", "risks", "risk"))
	e.DataAccessed = list(field(obj, "dataaccessed", "data", "dataused"))
	return e
}

// parseSummary turns a reply into the trace's summary, as parseStep does for a step.
func parseSummary(reply string) *schemas.TraceSummary {
	s := &schemas.TraceSummary{RawResponse: reply, KeyActions: []string{}, Concerns: []string{}}
	obj, err := parseObject(reply)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	s.Overview = text(field(obj, "overview", "summary"))
	s.KeyActions = list(field(obj, "keyactions", "actions"))
	s.Concerns = list(field(obj, "concerns", "risks", "riskfactors"))
	return s
}

// compact renders a value as JSON for a prompt, without HTML escaping.
func compact(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSpace(b.String())
}
