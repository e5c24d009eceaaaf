package pyjson

import (
	"bytes"
	"encoding/json"
	"math/big"
	"testing"
)

// Unmarshal accepts what encoding/json accepts, with the same structure (numbers read as
// Python reads them); without Python's literals it refuses what encoding/json refuses;
// and what it reads, Marshal writes so that it reads back to the same bytes.
func FuzzUnmarshal(f *testing.F) {
	for _, seed := range []string{
		`{"a": [1, 2.5, -0, -0.0, 1E5, 1e999999, -1e-999999, 123456789012345678901234567890]}`,
		`[NaN, Infinity, -Infinity, "NaN", 0E0, 0e0]`, `{"k": "v\"NaN\\"}`, `[-NaN]`, `[NaN1]`, `[1NaN]`, `{NaN: 1}`,
		`1 2`, `{"a":`, `"\ud800"`, `null`, `true`, `  7  `, `[[[[]]]]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got any
		err := Unmarshal(data, &got)
		var want any
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		stdErr := dec.Decode(&want)
		if stdErr == nil && len(bytes.TrimLeft(data[dec.InputOffset():], " \t\r\n")) > 0 {
			stdErr = errTrailing
		}
		python := bytes.Contains(data, []byte("NaN")) || bytes.Contains(data, []byte("Infinity"))
		if stdErr == nil && err != nil && !python {
			if _, tooLong := err.(*PathError); !tooLong {
				t.Fatalf("encoding/json accepts, pyjson refuses: %v", err)
			}
		}
		if stdErr != nil && err == nil && !python {
			t.Fatalf("encoding/json refuses (%v), pyjson accepts", stdErr)
		}
		if err != nil {
			return
		}
		if stdErr == nil && !sameShape(got, want) {
			t.Fatalf("pyjson %#v, encoding/json %#v", got, want)
		}
		out, err := Marshal(got)
		if err != nil {
			t.Fatalf("what was read does not encode: %v", err)
		}
		var back any
		if err := Unmarshal(out, &back); err != nil {
			t.Fatalf("what was written does not read back: %v\n%s", err, out)
		}
		again, err := Marshal(back)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("written twice differently:\n%s\n%s", out, again)
		}
	})
}

var errTrailing = &TrailingDataError{}

// sameShape compares a pyjson value with encoding/json's: the same objects, arrays,
// strings and booleans, and numbers where encoding/json has json.Number.
func sameShape(p, s any) bool {
	switch x := p.(type) {
	case map[string]any:
		y, ok := s.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if !sameShape(v, y[k]) {
				return false
			}
		}
		return true
	case []any:
		y, ok := s.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameShape(x[i], y[i]) {
				return false
			}
		}
		return true
	case int, float64, *big.Int:
		_, ok := s.(json.Number)
		return ok
	}
	return p == s
}
