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
)

//go:embed templates/*.json
var templateFS embed.FS

// Template is a policy bundled with troy.
type Template struct {
	Name   string // file name without .json: what users type
	Policy *Policy
	Raw    []byte // the template file as shipped, for copying
}

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

// LookupTemplate finds a template by name or by its policy id.
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
