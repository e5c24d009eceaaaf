// Package policies holds troy's policy file format: loading and validating policy JSON,
// the bundled templates embedded in the binary, and merging templates into one policy.
//
// A policy is data here; compiling its conditions is the evaluator's work. This package
// imports schemas and the standard library only.
package policies

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/troy-audit/troy/schemas"
)

// Defaults the policy format gives a rule that omits them.
const (
	DefaultSeverity = schemas.SeverityMedium
	DefaultWeight   = 10
)

// MaxFileSize bounds a policy file; policies are small, and a bigger file is a mistake.
const MaxFileSize = 16 << 20

// Rule is one policy rule: its condition is true at a step when the rule is violated there.
type Rule struct {
	RuleID      string
	Description string
	Condition   string
	Severity    string
	Weight      int
	// Judge, when set, asks the configured model for the verdict at the steps where the
	// condition holds (see JudgeKey); nil for ordinary rules.
	Judge *Judge
	// Extra holds keys the format does not define (such as "mitigation"), kept as written.
	Extra map[string]json.RawMessage
}

// Policy is a named list of rules.
type Policy struct {
	PolicyID    string
	Description string
	Rules       []Rule
	// Extra holds top-level keys the format does not define (such as "global_config").
	Extra map[string]json.RawMessage
	// Source says where the policy came from: a file path or "template NAME". Not serialized.
	Source string
	// Converted counts the conditions converted from the Python tool's dialect as the
	// file loaded (see ConvertPython). Not serialized.
	Converted int
	// ConversionWarnings say where the converted rules fail at run time as the Python
	// tool's do (see Conversion.Warnings). Not serialized.
	ConversionWarnings []ConversionWarning
}

// Error is a problem in a policy document.
type Error struct {
	Source string // file path or "template NAME"
	Rule   string // rule id, or rules[i] when the id itself is the problem; empty for the document
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		b.WriteString(": ")
	}
	if e.Rule != "" {
		b.WriteString(e.Rule)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// OnRuleErrorKey is the top-level key that says what a guard in enforce mode does with a
// step at which a rule could not be evaluated: "block" (the default) or "skip". A flag of
// check and serve overrides it.
const OnRuleErrorKey = "on_rule_error"

// OnRuleError is the policy's setting under OnRuleErrorKey, validated when it loaded; the
// default is schemas.OnRuleErrorBlock.
func (p *Policy) OnRuleError() string {
	var v string
	if raw, ok := p.Extra[OnRuleErrorKey]; ok && json.Unmarshal(raw, &v) == nil && v != "" {
		return v
	}
	return schemas.OnRuleErrorBlock
}

func quotedList(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, " or ")
}

// RuleLabel names a rule in messages: `rule "id"`.
func RuleLabel(id string) string { return fmt.Sprintf("rule %q", id) }

// LoadFile reads and validates a policy file. The policy id defaults to the file's name
// without its extension. A policy written for the Python tool is converted as it loads.
func LoadFile(path string) (*Policy, error) {
	p, err := LoadFileAsWritten(path)
	if err != nil {
		return nil, err
	}
	if err := p.fromPython(); err != nil {
		return nil, err
	}
	return p, nil
}

// LoadFileAsWritten reads and validates a policy file, leaving Python conditions as they
// are (for the converter itself).
func LoadFileAsWritten(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, &Error{Source: path, Msg: err.Error()}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, &Error{Source: path, Msg: err.Error()}
	}
	if len(data) > MaxFileSize {
		return nil, &Error{Source: path, Msg: fmt.Sprintf("policy file is over the %d MiB limit", MaxFileSize>>20)}
	}
	stem := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	return Parse(data, path, stem)
}

// ParseConverted validates a policy document as LoadFile does a file: one written for
// the Python tool is converted as it loads.
func ParseConverted(data []byte, source, defaultID string) (*Policy, error) {
	p, err := Parse(data, source, defaultID)
	if err != nil {
		return nil, err
	}
	if err := p.fromPython(); err != nil {
		return nil, err
	}
	return p, nil
}

// Parse validates a policy document. source names it in errors; defaultID is used when the
// document has no policy_id.
func Parse(data []byte, source, defaultID string) (*Policy, error) {
	fail := func(rule, format string, args ...any) error {
		return &Error{Source: source, Rule: rule, Msg: fmt.Sprintf(format, args...)}
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a byte-order mark some editors write
	if !utf8.Valid(data) {
		return nil, fail("", "invalid UTF-8")
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fail("", "empty document: expected a policy object")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fail("", "%s", jsonProblem(data, err, "a policy object"))
	}
	if top == nil {
		return nil, fail("", "expected a policy object, got null")
	}
	p := &Policy{PolicyID: defaultID, Source: source, Extra: map[string]json.RawMessage{}}
	if raw, ok := top["policy_id"]; ok {
		if err := json.Unmarshal(raw, &p.PolicyID); err != nil || p.PolicyID == "" {
			return nil, fail("", "policy_id: expected a non-empty string, got %s", kind(raw))
		}
	}
	if raw, ok := top["description"]; ok {
		if err := json.Unmarshal(raw, &p.Description); err != nil {
			return nil, fail("", "description: expected a string, got %s", kind(raw))
		}
	}
	for key, raw := range top {
		switch key {
		case "policy_id", "description", "rules":
		default:
			p.Extra[key] = raw
		}
	}
	if raw, ok := top[OnRuleErrorKey]; ok {
		var v string
		if json.Unmarshal(raw, &v) != nil || !slices.Contains(schemas.OnRuleErrors(), v) {
			return nil, fail("", "%s: expected %s, got %s", OnRuleErrorKey, quotedList(schemas.OnRuleErrors()), kindOrValue(raw))
		}
	}
	if raw, ok := top[ToolCategoriesKey]; ok {
		if _, err := parseToolCategories(raw); err != nil {
			return nil, fail("", "%s", err.Error())
		}
	}
	raw, ok := top["rules"]
	if !ok {
		return nil, fail("", "rules: required field is missing (is this a policy file?)")
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || items == nil {
		return nil, fail("", "rules: expected an array of rules, got %s", kind(raw))
	}
	// Every rule is checked, so that one run reports all of a file's problems.
	seen := map[string]int{}
	var errs []error
	for i, item := range items {
		r, err := parseRule(item, i, fail)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if first, dup := seen[r.RuleID]; dup {
			errs = append(errs, fail(RuleLabel(r.RuleID), "duplicate rule_id (rules[%d] and rules[%d])", first, i))
			continue
		}
		seen[r.RuleID] = i
		p.Rules = append(p.Rules, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

func parseRule(item json.RawMessage, i int, fail func(rule, format string, args ...any) error) (Rule, error) {
	at := fmt.Sprintf("rules[%d]", i)
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(item, &obj); err != nil || obj == nil {
		return Rule{}, fail(at, "expected a rule object, got %s", kind(item))
	}
	r := Rule{Severity: DefaultSeverity, Weight: DefaultWeight, Extra: map[string]json.RawMessage{}}
	str := func(key string, raw json.RawMessage, dst *string) error {
		if err := json.Unmarshal(raw, dst); err != nil || raw == nil || string(raw) == "null" {
			return fail(at, "%s: expected a string, got %s", key, kind(raw))
		}
		return nil
	}
	idRaw, ok := obj["rule_id"]
	if !ok {
		return r, fail(at, "rule_id: required field is missing")
	}
	if err := str("rule_id", idRaw, &r.RuleID); err != nil {
		return r, err
	}
	if strings.TrimSpace(r.RuleID) == "" {
		return r, fail(at, "rule_id: expected a non-empty string")
	}
	label := RuleLabel(r.RuleID)
	for _, key := range []string{"description", "condition"} {
		if _, ok := obj[key]; !ok {
			return r, fail(label, "%s: required field is missing", key)
		}
	}
	if raw, ok := obj["description"]; ok {
		if err := str("description", raw, &r.Description); err != nil {
			return r, fail(label, "description: expected a string, got %s", kind(raw))
		}
	}
	if raw, ok := obj["condition"]; ok {
		if err := str("condition", raw, &r.Condition); err != nil {
			return r, fail(label, "condition: expected a string, got %s", kind(raw))
		}
		if strings.TrimSpace(r.Condition) == "" {
			return r, fail(label, "condition: is empty; write an expression that is true when the rule is violated")
		}
	}
	if raw, ok := obj["severity"]; ok {
		if err := json.Unmarshal(raw, &r.Severity); err != nil || !slices.Contains(schemas.Severities(), r.Severity) {
			return r, fail(label, "severity: %s is not one of %s", kindOrValue(raw), strings.Join(schemas.Severities(), ", "))
		}
	}
	if raw, ok := obj["weight"]; ok {
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil || string(raw) == "null" {
			return r, fail(label, "weight: expected a whole number, got %s", kind(raw))
		}
		if f < 0 {
			return r, fail(label, "weight: %s is negative; weights are points added to the risk score (0 or more)", raw)
		}
		if f != math.Trunc(f) || f > math.MaxInt32 {
			return r, fail(label, "weight: expected a whole number, got %s", raw)
		}
		r.Weight = int(f)
	}
	if raw, ok := obj[JudgeKey]; ok {
		j, err := parseJudge(raw)
		if err != nil {
			return r, fail(label, "%s", err.Error())
		}
		r.Judge = j
	}
	for key, raw := range obj {
		switch key {
		case "rule_id", "description", "condition", "severity", "weight", JudgeKey:
		default:
			r.Extra[key] = raw
		}
	}
	return r, nil
}

// kind names a raw JSON value's kind for messages.
func kind(raw json.RawMessage) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return "nothing"
	}
	switch t[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string " + string(t)
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number " + string(t)
}

func kindOrValue(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return fmt.Sprintf("%q", s)
	}
	return kind(raw)
}

// jsonProblem describes a decoding failure with its line and column.
func jsonProblem(data []byte, err error, want string) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		line, col := lineCol(data, int(se.Offset)-1) // the offset is just past the offending byte
		return fmt.Sprintf("line %d, column %d: invalid JSON: %v", line, col, se)
	case errors.As(err, &te):
		return fmt.Sprintf("expected %s, got %s", want, te.Value)
	}
	return "invalid JSON: " + err.Error()
}

func lineCol(data []byte, off int) (int, int) {
	off = max(0, min(off, len(data)))
	lines := bytes.Split(data[:off], []byte("\n"))
	return len(lines), utf8.RuneCount(lines[len(lines)-1]) + 1
}

// MarshalJSON writes the policy with its keys in the documented order and unknown keys kept.
func (p *Policy) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"policy_id":`)
	writeJSON(&b, p.PolicyID)
	b.WriteString(`,"description":`)
	writeJSON(&b, p.Description)
	writeExtra(&b, p.Extra)
	b.WriteString(`,"rules":[`)
	for i, r := range p.Rules {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"rule_id":`)
		writeJSON(&b, r.RuleID)
		b.WriteString(`,"description":`)
		writeJSON(&b, r.Description)
		b.WriteString(`,"condition":`)
		writeJSON(&b, r.Condition)
		b.WriteString(`,"severity":`)
		writeJSON(&b, r.Severity)
		fmt.Fprintf(&b, `,"weight":%d`, r.Weight)
		if r.Judge != nil {
			b.WriteString(`,"judge":`)
			raw, _ := r.Judge.MarshalJSON()
			b.Write(raw)
		}
		writeExtra(&b, r.Extra)
		b.WriteByte('}')
	}
	b.WriteString("]}")
	return b.Bytes(), nil
}

func writeJSON(b *bytes.Buffer, v any) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // strings always encode
	b.Truncate(b.Len() - 1)
}

func writeExtra(b *bytes.Buffer, extra map[string]json.RawMessage) {
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b.WriteByte(',')
		writeJSON(b, k)
		b.WriteByte(':')
		b.Write(extra[k])
	}
}

// Indented returns the policy as indented JSON with a final newline, as written to files.
func (p *Policy) Indented() []byte {
	raw, _ := p.MarshalJSON()
	var out bytes.Buffer
	_ = json.Indent(&out, raw, "", "  ") // raw is valid JSON by construction
	out.WriteByte('\n')
	return out.Bytes()
}

// Hash is the SHA-256 of the policy's canonical JSON: two policies with the same rules,
// conditions, severities and weights have the same hash wherever they were loaded from.
func (p *Policy) Hash() string {
	raw, _ := p.MarshalJSON()
	var compact bytes.Buffer
	_ = json.Compact(&compact, raw)
	sum := sha256.Sum256(compact.Bytes())
	return hex.EncodeToString(sum[:])
}

// Merge combines policies into one, in order; when two define the same rule id, or set
// the categories of the same tool, the first one wins.
func Merge(id, description string, ps ...*Policy) *Policy {
	out := &Policy{PolicyID: id, Description: description, Extra: map[string]json.RawMessage{}}
	seen := map[string]bool{}
	for _, p := range ps {
		for _, r := range p.Rules {
			if !seen[r.RuleID] {
				seen[r.RuleID] = true
				out.Rules = append(out.Rules, r)
			}
		}
	}
	if tc := mergeToolCategories(ps); tc != nil {
		out.Extra[ToolCategoriesKey] = tc
	}
	return out
}
