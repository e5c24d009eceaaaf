package policies_test

import (
	"errors"
	"testing"

	"github.com/troy-audit/troy/policies"
)

// Every template is found by its name (the file stem) and by its policy id, and the name
// wins when both could match.
func TestLookupTemplateByNameOrPolicyID(t *testing.T) {
	all, err := policies.Templates()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range all {
		for _, name := range []string{want.Name, want.Policy.PolicyID} {
			got, err := policies.LookupTemplate(name)
			if err != nil || got.Name != want.Name || string(got.Raw) != string(want.Raw) {
				t.Errorf("LookupTemplate(%q) = %q, %v; want %q", name, got.Name, err, want.Name)
			}
		}
		if want.FileName() != want.Name+".json" || want.File() != "embedded:templates/"+want.Name+".json" {
			t.Errorf("%s: file name %q, file %q", want.Name, want.FileName(), want.File())
		}
	}
	for _, name := range []string{"", "nope", "../policy", "templates/minimal", "minimal.json"} {
		if _, err := policies.LookupTemplate(name); !errors.Is(err, policies.ErrNoTemplate) {
			t.Errorf("LookupTemplate(%q): %v, want ErrNoTemplate", name, err)
		}
	}
}

// Combine writes what the Python tool's init writes for the same templates, byte for
// byte (the expected text is Python's json.dumps(..., indent=2) + "\n" of the same
// rules): rules as written, in order, the first of a rule id winning; key order kept;
// characters beyond ASCII escaped; numbers as Python writes them.
func TestCombineAsPython(t *testing.T) {
	a := policies.Template{Name: "a", Raw: []byte(`{"policy_id": "test-a", "rules": [{"rule_id": "a", "description": "first é", "condition": "true", "severity": "critical", "weight": 50}]}`)}
	b := policies.Template{Name: "test-b", Raw: []byte("{\n  \"policy_id\": \"test-b\",\n  \"description\": \"B \u2014 second\",\n  \"rules\": [\n    {\"rule_id\": \"a\", \"description\": \"dup\", \"condition\": \"false\"},\n    {\"weight\": 5, \"rule_id\": \"c\", \"condition\": \"true\", \"description\": \"caf\u00e9 😀\", \"severity\": \"low\", \"x\": [1.5, 1e16, {}]}\n  ]\n}\n")}
	want := `{
  "policy_id": "custom-policy",
  "description": "Combined policy from: a, test-b",
  "rules": [
    {
      "rule_id": "a",
      "description": "first \u00e9",
      "condition": "true",
      "severity": "critical",
      "weight": 50
    },
    {
      "weight": 5,
      "rule_id": "c",
      "condition": "true",
      "description": "caf\u00e9 \ud83d\ude00",
      "severity": "low",
      "x": [
        1.5,
        1e+16,
        {}
      ]
    }
  ]
}
`
	got, n, err := policies.Combine("Combined policy from: a, test-b", a, b)
	if err != nil || n != 2 || string(got) != want {
		t.Fatalf("Combine: %d rules, %v\n%s\nwant\n%s", n, err, got, want)
	}
	got, n, err = policies.Combine("none")
	if err != nil || n != 0 || string(got) != "{\n  \"policy_id\": \"custom-policy\",\n  \"description\": \"none\",\n  \"rules\": []\n}\n" {
		t.Fatalf("Combine of nothing: %d %v\n%s", n, err, got)
	}
	bad := policies.Template{Name: "bad", Raw: []byte(`{"rules": [{"rule_id": 7}]}`)}
	if _, _, err := policies.Combine("x", bad); err == nil || err.Error() != "template bad: rules[0].rule_id: expected a string" {
		t.Fatalf("a rule id that is no string: %v", err)
	}
}
