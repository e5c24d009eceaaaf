package evaluator

import (
	"fmt"
	"testing"

	"github.com/troy-audit/troy/policies"
)

func TestMetadataKeys(t *testing.T) {
	tests := []struct{ cond, want string }{
		{`step.metadata.network_zone == 'external'`, "[network_zone]"},
		{`step.metadata['data_classification'] == 'pii' and any(next_steps, .metadata.network_zone == 'x')`, "[data_classification network_zone]"},
		{`get(step, 'metadata.permission_level') == 'admin' and get(agent, 'metadata.permission_level') != 'admin'`, "[permission_level]"},
		{`get(step, 'metadata.a.b') == 1 and trace.metadata.env == 'prod'`, "[a]"},
		{`py_eq(py_get(py_item(step, "metadata"), "zone", nil), "x") && py_truth(py_item(py_item(step, "metadata"), "tier"))`, "[tier zone]"},
		{`step.type == 'tool_call'`, "[]"},
	}
	for _, tt := range tests {
		c, err := Compile(&policies.Policy{PolicyID: "p", Rules: []policies.Rule{{RuleID: "r", Description: "d", Condition: tt.cond, Severity: "low"}}})
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, m := range c.MetadataKeys() {
			keys = append(keys, m.Key)
		}
		if got := fmt.Sprint(keys); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.cond, got, tt.want)
		}
	}
}
