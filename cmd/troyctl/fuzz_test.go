package main

import (
	"strings"
	"testing"

	"github.com/troy-audit/troy/schemas/pyjson"
)

// check's --input and --metadata parsing never panics, refuses with one line naming the
// flag, and what it accepts is an object whose values encode again.
func FuzzJSONObjectFlag(f *testing.F) {
	for _, seed := range []string{
		`{"amount": 1e999999}`, `{"n": NaN, "i": Infinity, "j": -Infinity}`, `{"big": 123456789012345678901234567890}`,
		`{"a": [1, 2.5, -0, -0.0, 1E5]}`, `{"q": "SELECT * FROM users"}`, `[1]`, `"x"`, `{"a": -NaN}`, `{"a": 1} {"b": 2}`, ``, `   `, `{`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		m, err := jsonObjectFlag("--input", value)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--input: ") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q: want one line naming the flag", err)
			}
			return
		}
		if m == nil {
			t.Fatal("accepted without an object")
		}
		if _, err := pyjson.Marshal(m); err != nil {
			t.Fatalf("accepted values do not encode: %v", err)
		}
	})
}
