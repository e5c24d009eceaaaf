package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/troy-audit/troy/schemas/pyjson"
)

// check's --input and --metadata parsing never panics; it refuses JSON that Python's
// json refuses with Python's one-line message (check names the flag around it), and other
// values with one line naming the flag; what it accepts is an object whose values encode
// again.
func FuzzJSONObjectFlag(f *testing.F) {
	for _, seed := range []string{
		`{"amount": 1e999999}`, `{"n": NaN, "i": Infinity, "j": -Infinity}`, `{"big": 123456789012345678901234567890}`,
		`{"a": [1, 2.5, -0, -0.0, 1E5]}`, `{"q": "SELECT * FROM users"}`, `[1]`, `"x"`, `{"a": -NaN}`, `{"a": 1} {"b": 2}`, ``, `   `, `{`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		m, err := jsonObjectFlag("--input", value)
		var de *pyjson.DecodeError
		if errors.As(err, &de) {
			if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), ": line ") {
				t.Fatalf("error %q: want Python's one-line message", err)
			}
			return
		}
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
