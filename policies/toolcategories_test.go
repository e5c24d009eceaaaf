package policies_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/troy-audit/troy/category"
	"github.com/troy-audit/troy/policies"
)

func TestToolCategories(t *testing.T) {
	doc := func(tc string) string {
		return `{"tool_categories": ` + tc + `, "rules": [{"rule_id": "r", "description": "d", "condition": "true"}]}`
	}
	tests := []struct {
		name string
		tc   string
		want map[string][]string // by lower-case name; nil with err
		err  string
	}{
		{"set and emptied", `{"Acme_Pay": ["money", "outbound"], "lookup": []}`, map[string][]string{"acme_pay": {"outbound", "money"}, "lookup": nil}, ""},
		{"no entries", `{}`, map[string][]string{}, ""},
		{"not an object", `["money"]`, nil, `tool_categories: expected an object from tool names to lists of categories, got an array`},
		{"null", `null`, nil, `tool_categories: expected an object from tool names to lists of categories, got null`},
		{"not a list", `{"pay": "money"}`, nil, `tool_categories["pay"]: expected a list of categories, got a string "money"`},
		{"not names", `{"pay": [1]}`, nil, `tool_categories["pay"]: expected category names, got a number 1`},
		{"unknown name", `{"pay": ["payments"]}`, nil, `tool_categories["pay"]: unknown category "payments", expected one of outbound, money, credential, destructive, file_write, code_exec, read`},
		{"same tool twice", `{"Pay": ["money"], "pay": []}`, nil, `tool_categories["pay"]: names the same tool as "Pay" (names are matched case-insensitively)`},
		{"empty name", `{" ": []}`, nil, `tool_categories[" "]: expected a tool name, got an empty one`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := policies.Parse([]byte(doc(tt.tc)), "p.json", "p")
			if tt.err != "" {
				if err == nil || err.Error() != "p.json: "+tt.err {
					t.Fatalf("error %v, want %q", err, "p.json: "+tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := p.ToolCategories()
			if len(got) != len(tt.want) {
				t.Fatalf("%d tools, want %d: %v", len(got), len(tt.want), got)
			}
			for tool, names := range tt.want {
				set, ok := got[tool]
				if !ok || strings.Join(set.Names(), " ") != strings.Join(names, " ") {
					t.Errorf("%s: %v (%v), want %v", tool, set.Names(), ok, names)
				}
			}
		})
	}
}

func TestToolCategoriesChangeTheHashAndMerge(t *testing.T) {
	parse := func(tc string) *policies.Policy {
		t.Helper()
		p, err := policies.Parse([]byte(`{"tool_categories": `+tc+`, "rules": [{"rule_id": "r", "description": "d", "condition": "true"}]}`), "p.json", "p")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b := parse(`{"pay": ["money"]}`), parse(`{"PAY": [], "wipe": ["destructive"]}`)
	if a.Hash() == b.Hash() {
		t.Error("policies that set different categories have the same hash")
	}
	m := policies.Merge("m", "merged", a, b).ToolCategories()
	if m["pay"] != mustSet(t, "money") || m["wipe"] != mustSet(t, "destructive") || len(m) != 2 {
		t.Errorf("merged categories %v, want pay from the first policy and wipe from the second", m)
	}
	if raw := policies.Merge("m", "merged", a).Extra[policies.ToolCategoriesKey]; !json.Valid(raw) {
		t.Errorf("merged tool_categories is not JSON: %s", raw)
	}
}

func mustSet(t *testing.T, name string) category.Set {
	t.Helper()
	s, ok := category.Parse(name)
	if !ok {
		t.Fatalf("no category %q", name)
	}
	return s
}
