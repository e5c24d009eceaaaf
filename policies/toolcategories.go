package policies

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/troy-audit/troy/category"
)

// ToolCategoriesKey is the top-level key that sets the categories of tools by name,
// replacing the ones inferred: an object from a tool name (matched case-insensitively) to
// a list of category names; an empty list means none.
const ToolCategoriesKey = "tool_categories"

// ToolCategories returns the policy's categories of tools by lower-case name, as validated
// when it loaded; nil when it sets none.
func (p *Policy) ToolCategories() map[string]category.Set {
	raw, ok := p.Extra[ToolCategoriesKey]
	if !ok {
		return nil
	}
	m, err := parseToolCategories(raw)
	if err != nil {
		return nil // Parse refused it; a Policy built in code gets no overrides
	}
	return m
}

// parseToolCategories validates the value of tool_categories. Its error names the entry
// and what was expected; names are looked at in order, so the first problem is the same
// on every run.
func parseToolCategories(raw json.RawMessage) (map[string]category.Set, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("%s: expected an object from tool names to lists of categories, got %s", ToolCategoriesKey, kind(raw))
	}
	tools := make([]string, 0, len(obj))
	for t := range obj {
		tools = append(tools, t)
	}
	slices.Sort(tools)
	out := make(map[string]category.Set, len(obj))
	first := make(map[string]string, len(obj))
	for _, t := range tools {
		at := fmt.Sprintf("%s[%q]", ToolCategoriesKey, t)
		if strings.TrimSpace(t) == "" {
			return nil, fmt.Errorf("%s: expected a tool name, got an empty one", at)
		}
		key := strings.ToLower(t)
		if other, dup := first[key]; dup {
			return nil, fmt.Errorf("%s: names the same tool as %q (names are matched case-insensitively)", at, other)
		}
		first[key] = t
		var names []json.RawMessage
		if err := json.Unmarshal(obj[t], &names); err != nil || names == nil {
			return nil, fmt.Errorf("%s: expected a list of categories, got %s", at, kind(obj[t]))
		}
		var set category.Set
		for _, n := range names {
			var name string
			if json.Unmarshal(n, &name) != nil {
				return nil, fmt.Errorf("%s: expected category names, got %s", at, kind(n))
			}
			c, ok := category.Parse(name)
			if !ok {
				return nil, fmt.Errorf("%s: unknown category %q, expected one of %s", at, name, strings.Join(category.All(), ", "))
			}
			set |= c
		}
		out[key] = set
	}
	return out, nil
}

// mergeToolCategories gathers the tool_categories of policies into one object; for a tool
// several set, the first policy's entry wins, as its rule would.
func mergeToolCategories(ps []*Policy) json.RawMessage {
	var merged map[string]json.RawMessage
	seen := map[string]bool{}
	for _, p := range ps {
		var obj map[string]json.RawMessage
		if json.Unmarshal(p.Extra[ToolCategoriesKey], &obj) != nil {
			continue
		}
		tools := make([]string, 0, len(obj))
		for t := range obj {
			tools = append(tools, t)
		}
		slices.Sort(tools)
		for _, t := range tools {
			if key := strings.ToLower(t); !seen[key] {
				seen[key] = true
				if merged == nil {
					merged = map[string]json.RawMessage{}
				}
				merged[t] = obj[t]
			}
		}
	}
	if merged == nil {
		return nil
	}
	raw, _ := json.Marshal(merged) // raw messages that unmarshalled marshal again
	return raw
}
