package evaluator

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

// repr as Python 3 writes it (each expected value checked against CPython's repr).
func TestPyRepr(t *testing.T) {
	tests := []struct {
		in   any
		want string
	}{
		{nil, "None"},
		{true, "True"},
		{12, "12"},
		{1.5, "1.5"},
		{100.0, "100.0"},
		{1e16, "1e+16"},
		{1e15, "1000000000000000.0"},
		{1e-5, "1e-05"},
		{0.0001, "0.0001"},
		{math.Copysign(0, -1), "-0.0"},
		{123456789012345.6, "123456789012345.6"},
		{"plain", "'plain'"},
		{"it's", `"it's"`},
		{`say "hi" it's`, `'say "hi" it\'s'`},
		{"tab\tnew\nline", `'tab\tnew\nline'`},
		{"back\\slash", `'back\\slash'`},
		{"bell\x07", `'bell\x07'`},
		{"café ✓ 😀", "'café ✓ 😀'"},
		{"nbsp\u00a0", `'nbsp\xa0'`},
		{"zero\u200bwidth", `'zero\u200bwidth'`},
		{[]any{"a", 1, nil, true, 2.5}, "['a', 1, None, True, 2.5]"},
		{map[string]any{"b": []any{}, "a": map[string]any{"x": "y"}}, "{'a': {'x': 'y'}, 'b': []}"},
	}
	for _, tt := range tests {
		if got := pyRepr(tt.in); got != tt.want {
			t.Errorf("repr(%#v) = %s, want %s", tt.in, got, tt.want)
		}
	}
	if pyStr("text") != "text" {
		t.Error("str() of a string is the string")
	}
}

// Dicts of any size are written with their keys sorted.
func TestPyReprSortsKeys(t *testing.T) {
	for _, n := range []int{0, 1, 2, 5, 16, 17, 40} {
		m := map[string]any{}
		var keys []string
		for i := range n {
			k := fmt.Sprintf("k%03d", (i*37)%101)
			m[k] = i
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("'%s': %d", k, m[k]))
		}
		if got, want := pyRepr(m), "{"+strings.Join(parts, ", ")+"}"; got != want {
			t.Errorf("%d keys: repr %s, want %s", n, got, want)
		}
	}
}
