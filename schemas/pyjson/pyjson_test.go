package pyjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"testing"

	gojson "github.com/goccy/go-json"
)

func bigInt(s string) *big.Int {
	b, ok := new(big.Int).SetString(s, 10)
	if !ok {
		panic(s)
	}
	return b
}

// show renders a decoded value with its Go type, so tables can tell 5 from 5.0.
func show(v any) string {
	switch x := v.(type) {
	case float64:
		switch {
		case math.IsNaN(x):
			return "float(NaN)"
		case x == 0 && math.Signbit(x):
			return "float(-0)"
		}
		return fmt.Sprintf("float(%v)", x)
	case int:
		return fmt.Sprintf("int(%d)", x)
	case *big.Int:
		return "big(" + x.String() + ")"
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = show(e)
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	return fmt.Sprintf("%T(%v)", v, v)
}

// The expected values are what Python 3.11's json.loads gives for the same documents.
func TestUnmarshalNumbersAsPython(t *testing.T) {
	thirty := "123456789012345678901234567890"
	tests := []struct {
		doc, want string
	}{
		{`5`, "int(5)"},
		{`-0`, "int(0)"},
		{`-0.0`, "float(-0)"},
		{`5.0`, "float(5)"},
		{`1E5`, "float(100000)"},
		{`1e-2`, "float(0.01)"},
		{`9223372036854775807`, "int(9223372036854775807)"},
		{`9223372036854775808`, "big(9223372036854775808)"},
		{`-9223372036854775809`, "big(-9223372036854775809)"},
		{thirty, "big(" + thirty + ")"},
		{`1e999999`, "float(+Inf)"},
		{`-1e999999`, "float(-Inf)"},
		{`1e-999999`, "float(0)"},
		{`-1e-999999`, "float(-0)"},
		{`NaN`, "float(NaN)"},
		{`Infinity`, "float(+Inf)"},
		{`-Infinity`, "float(-Inf)"},
		{`[NaN, Infinity, -Infinity, 0E0, 0e0]`, "[float(NaN) float(+Inf) float(-Inf) float(0) float(0)]"},
		{`["NaN", "Infinity", "a \"NaN\" b"]`, "[string(NaN) string(Infinity) string(a \"NaN\" b)]"},
		{` [1,2.5] `, "[int(1) float(2.5)]"},
	}
	for _, tt := range tests {
		var v any
		if err := Unmarshal([]byte(tt.doc), &v); err != nil {
			t.Errorf("Unmarshal(%s): %v", tt.doc, err)
			continue
		}
		if got := show(v); got != tt.want {
			t.Errorf("Unmarshal(%s) = %s, want %s", tt.doc, got, tt.want)
		}
	}
}

// Python's json refuses these too.
func TestUnmarshalRefuses(t *testing.T) {
	tests := []struct{ doc, want string }{
		{`-NaN`, "invalid character"},
		{`[NaN1]`, "invalid character"},
		{`[1NaN]`, "invalid character"},
		{`+Infinity`, "invalid character"},
		{`nan`, "invalid character"},
		{`[- Infinity]`, "invalid character"},
		{`{NaN: 1}`, "invalid character"},
		{`[1] 2`, "unexpected data after the JSON value (at byte 4)"},
		{strings.Repeat("1", MaxIntDigits+1), "an integer of 4301 digits: at most 4300 are read, as in Python"},
		{`{"a": {"b c": [1, -` + strings.Repeat("7", 5000) + `]}}`, `a."b c"[1]: an integer of 5000 digits`},
	}
	for _, tt := range tests {
		var v any
		err := Unmarshal([]byte(tt.doc), &v)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Unmarshal(%.40s) = %v, want an error with %q", tt.doc, err, tt.want)
		}
	}
	var v any
	if err := Unmarshal([]byte(strings.Repeat("9", MaxIntDigits)), &v); err != nil {
		t.Errorf("an integer of %d digits: %v", MaxIntDigits, err)
	}
}

func TestUnmarshalKeepsErrorOffsets(t *testing.T) {
	// The literal replaced before decoding has the same length: the offset is the file's.
	var v any
	err := Unmarshal([]byte(`[Infinity, NaN, -Infinity, x]`), &v)
	var se *json.SyntaxError
	if !errors.As(err, &se) || se.Offset != 28 {
		t.Fatalf("got %v (%#v), want a syntax error at offset 28", err, se)
	}
}

type inner struct {
	Input map[string]any `json:"input"`
}

type outer struct {
	Name  string   `json:"name"`
	Any   any      `json:"any"`
	Step  *inner   `json:"step"`
	Steps []inner  `json:"steps"`
	Plain []string `json:"plain"`
}

func TestUnmarshalStructs(t *testing.T) {
	doc := `{"name": "n", "any": 3, "step": {"input": {"x": 1e999999, "y": [NaN, 12345678901234567890]}},
		"steps": [{"input": {"z": 2.0}}], "plain": ["Infinity"]}`
	var o outer
	if err := Unmarshal([]byte(doc), &o); err != nil {
		t.Fatal(err)
	}
	got := show(o.Any) + " " + show(o.Step.Input["x"]) + " " + show(o.Step.Input["y"]) + " " + show(o.Steps[0].Input["z"]) + " " + o.Plain[0]
	if want := "int(3) float(+Inf) [float(NaN) big(12345678901234567890)] float(2) Infinity"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	err := Unmarshal([]byte(`{"steps": [{"input": {"k": `+strings.Repeat("1", 4400)+`}}]}`), &o)
	if err == nil || !strings.HasPrefix(err.Error(), "steps[0].input.k: an integer of 4400 digits") {
		t.Fatalf("got %v, want the path of the number", err)
	}
}

// What Python's json.dumps writes for the same values.
func TestMarshalAsPython(t *testing.T) {
	tests := []struct {
		v    any
		want string
	}{
		{[]any{math.Inf(1), math.Inf(-1), math.NaN(), 5.0, 1e16, 1.5e-05, math.Copysign(0, -1), bigInt("1000000000000000000000000000000"), 1e22, 7, 0.1},
			`[Infinity,-Infinity,NaN,5.0,1e+16,0.000015,-0.0,1000000000000000000000000000000,1e+22,7,0.1]`},
		{map[string]any{"a<b": "Infinity", "n": json.Number("1e999999")}, `{"a<b":"Infinity","n":Infinity}`},
		{outer{Step: &inner{Input: map[string]any{"x": math.NaN()}}}, `{"name":"","any":null,"step":{"input":{"x":NaN}},"steps":null,"plain":null}`},
		{map[string]any{"ok": 1.5}, `{"ok":1.5}`},
	}
	for _, tt := range tests {
		got, err := Marshal(tt.v)
		if err != nil {
			t.Errorf("Marshal(%v): %v", tt.v, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("Marshal(%v) = %s, want %s", tt.v, got, tt.want)
		}
	}
}

func TestMarshalLeavesTheValueAlone(t *testing.T) {
	m := map[string]any{"x": math.Inf(1), "nested": []any{2.0}}
	if _, err := Marshal(&inner{Input: m}); err != nil {
		t.Fatal(err)
	}
	if m["x"] != math.Inf(1) || m["nested"].([]any)[0] != 2.0 {
		t.Fatalf("the value was changed: %v", m)
	}
}

func TestRoundTrip(t *testing.T) {
	doc := `{"a":[NaN,Infinity,-Infinity,5.0,5,-0.0,1e+300,123456789012345678901234567890,-123456789012345678901234567890,"NaN"]}`
	var v any
	if err := Unmarshal([]byte(doc), &v); err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != doc {
		t.Fatalf("round trip:\n got %s\nwant %s", out, doc)
	}
}

func TestCompare(t *testing.T) {
	big30 := bigInt("123456789012345678901234567890")
	tests := []struct {
		a, b any
		want int
		ok   bool
	}{
		{1, 2, -1, true},
		{2, 1.5, 1, true},
		{1.5, 2, -1, true},
		{9007199254740993, 9007199254740992.0, 1, true}, // exact, as Python: not equal as floats would be
		{big30, 1000, 1, true},
		{big30, bigInt("123456789012345678901234567891"), -1, true},
		{bigInt("-123456789012345678901234567890"), -5, -1, true},
		{big30, 1.2345678901234568e29, 1, true}, // the float is 123456789012345677877719597056
		{bigInt("1180591620717411303424"), float64(1 << 70), 0, true},
		{big30, math.Inf(1), -1, true},
		{math.Inf(1), 1000, 1, true},
		{math.Inf(-1), big30, -1, true},
		{math.NaN(), 1, 0, false},
		{1, math.NaN(), 0, false},
		{"1", 1, 0, false},
		{nil, 1, 0, false},
	}
	for _, tt := range tests {
		got, ok := Compare(tt.a, tt.b)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Compare(%v, %v) = %d, %v; want %d, %v", tt.a, tt.b, got, ok, tt.want, tt.ok)
		}
	}
}

// The flag useNumber sets is goccy's UseNumber: without it, numbers in structs would be
// float64s and integers would lose their type.
func TestGoccyUseNumber(t *testing.T) {
	var v struct {
		N any `json:"n"`
	}
	if err := gojson.UnmarshalWithOption([]byte(`{"n": 12345678901234567890123}`), &v, useNumber); err != nil {
		t.Fatal(err)
	}
	if n, ok := v.N.(gojson.Number); !ok || n != "12345678901234567890123" {
		t.Fatalf("got %#v, want the json.Number", v.N)
	}
}
