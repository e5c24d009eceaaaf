package policies

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/troy-audit/troy/schemas/pyjson"
)

//go:embed templates/*.json
var templateFS embed.FS

// Template is a policy bundled with troy.
type Template struct {
	Name   string // the file name without .json (its stem): what users type
	Policy *Policy
	Raw    []byte // the template file as shipped, for copying
}

// FileName is the template's file name, such as soc2.json.
func (t Template) FileName() string { return t.Name + ".json" }

// File names the template where a file path would be: templates are embedded in the
// binary, so there is no file on disk to point to.
func (t Template) File() string { return "embedded:templates/" + t.FileName() }

// Templates returns every bundled template, sorted by name.
func Templates() ([]Template, error) {
	entries, err := fs.Glob(templateFS, "templates/*.json")
	if err != nil {
		return nil, err
	}
	slices.Sort(entries)
	out := make([]Template, 0, len(entries))
	for _, e := range entries {
		t, err := loadTemplate(strings.TrimSuffix(path.Base(e), ".json"))
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// TemplateNames lists the bundled template names, sorted.
func TemplateNames() []string {
	entries, _ := fs.Glob(templateFS, "templates/*.json") // the pattern is valid
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = strings.TrimSuffix(path.Base(e), ".json")
	}
	slices.Sort(names)
	return names
}

// ErrNoTemplate reports a name that is neither a template name nor a template's policy id.
var ErrNoTemplate = errors.New("no such template")

// LookupTemplate finds a template by its name (the file stem), or else by its policy id.
func LookupTemplate(name string) (Template, error) {
	if slices.Contains(TemplateNames(), name) {
		return loadTemplate(name)
	}
	all, err := Templates()
	if err != nil {
		return Template{}, err
	}
	for _, t := range all {
		if t.Policy.PolicyID == name {
			return t, nil
		}
	}
	return Template{}, fmt.Errorf("%w %q (templates: %s)", ErrNoTemplate, name, strings.Join(TemplateNames(), ", "))
}

func loadTemplate(name string) (Template, error) {
	raw, err := templateFS.ReadFile("templates/" + name + ".json")
	if err != nil {
		return Template{}, fmt.Errorf("%w %q", ErrNoTemplate, name)
	}
	p, err := Parse(raw, "template "+name, name)
	if err != nil {
		return Template{}, err
	}
	return Template{Name: name, Policy: p, Raw: raw}, nil
}

// Resolve loads a policy named on a command line: a file path, or else a bundled template.
func Resolve(arg string) (*Policy, error) {
	if _, err := os.Stat(arg); err == nil {
		return LoadFile(arg)
	}
	t, err := LookupTemplate(arg)
	if err == nil {
		return t.Policy, nil
	}
	if !errors.Is(err, ErrNoTemplate) {
		return nil, err
	}
	return nil, &Error{Source: arg, Msg: fmt.Sprintf("no such file, and no bundled template of that name (templates: %s)", strings.Join(TemplateNames(), ", "))}
}

// Combine writes the policy that combines templates, in the order given: every rule of
// each, copied as written, except a rule whose rule_id an earlier one already took. The
// document is written as the Python tool writes it (json.dumps with indent=2: every
// character beyond ASCII escaped, a final newline), with policy_id custom-policy. It
// returns the document and its number of rules.
func Combine(description string, ts ...Template) ([]byte, int, error) {
	var rules []any
	seen := map[string]bool{}
	for _, t := range ts {
		doc, err := pyjson.DecodeText(string(t.Raw))
		if err != nil {
			return nil, 0, fmt.Errorf("template %s: %w", t.Name, err)
		}
		obj, _ := doc.(pyjson.Object)
		list, _ := obj.Get("rules")
		items, _ := list.([]any)
		for i, item := range items {
			rule, _ := item.(pyjson.Object)
			id, _ := rule.Get("rule_id")
			key, ok := id.(string)
			if !ok {
				return nil, 0, fmt.Errorf("template %s: rules[%d].rule_id: expected a string", t.Name, i)
			}
			if !seen[key] {
				seen[key] = true
				rules = append(rules, rule)
			}
		}
	}
	if rules == nil {
		rules = []any{}
	}
	out, err := pyjson.Dumps(pyjson.Object{
		{Key: "policy_id", Value: "custom-policy"},
		{Key: "description", Value: description},
		{Key: "rules", Value: rules},
	}, "  ")
	if err != nil {
		return nil, 0, err
	}
	return append(out, '\n'), len(rules), nil
}
