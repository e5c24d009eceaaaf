package pyjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// Every message and position below is what Python 3.11's json.loads says of the document.
func TestDecodeTextErrorsAsPython(t *testing.T) {
	tests := []struct{ doc, want string }{
		{"", "Expecting value: line 1 column 1 (char 0)"},
		{" ", "Expecting value: line 1 column 2 (char 1)"},
		{"   \t", "Expecting value: line 1 column 5 (char 4)"},
		{"{", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"},
		{"{\"a\"", "Expecting ':' delimiter: line 1 column 5 (char 4)"},
		{"{\"a\":", "Expecting value: line 1 column 6 (char 5)"},
		{"{\"a\":1", "Expecting ',' delimiter: line 1 column 7 (char 6)"},
		{"{\"a\":1,", "Expecting property name enclosed in double quotes: line 1 column 8 (char 7)"},
		{"{\"a\":1,}", "Expecting property name enclosed in double quotes: line 1 column 8 (char 7)"},
		{"[1,]", "Expecting value: line 1 column 4 (char 3)"},
		{"[", "Expecting value: line 1 column 2 (char 1)"},
		{"[1", "Expecting ',' delimiter: line 1 column 3 (char 2)"},
		{"[1 2]", "Expecting ',' delimiter: line 1 column 4 (char 3)"},
		{"nul", "Expecting value: line 1 column 1 (char 0)"},
		{"tru", "Expecting value: line 1 column 1 (char 0)"},
		{"nope", "Expecting value: line 1 column 1 (char 0)"},
		{"{nope", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"},
		{"True", "Expecting value: line 1 column 1 (char 0)"},
		{"None", "Expecting value: line 1 column 1 (char 0)"},
		{"\"abc", "Unterminated string starting at: line 1 column 1 (char 0)"},
		{"\"a\\", "Unterminated string starting at: line 1 column 1 (char 0)"},
		{"\"a\\x\"", "Invalid \\escape: line 1 column 3 (char 2)"},
		{"\"\\u12\"", "Invalid \\uXXXX escape: line 1 column 3 (char 2)"},
		{"\"\\u12G4\"", "Invalid \\uXXXX escape: line 1 column 3 (char 2)"},
		{"\"\\u0041", "Invalid \\uXXXX escape: line 1 column 3 (char 2)"},
		{"\"\\ud800\\u12G4\"", "Invalid \\uXXXX escape: line 1 column 9 (char 8)"},
		{"\"a\nb\"", "Invalid control character at: line 1 column 3 (char 2)"},
		{"\"a\tb\"", "Invalid control character at: line 1 column 3 (char 2)"},
		{"{\"a\" 1}", "Expecting ':' delimiter: line 1 column 6 (char 5)"},
		{"{a:1}", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"},
		{"1 2", "Extra data: line 1 column 3 (char 2)"},
		{"{\"a\":1} x", "Extra data: line 1 column 9 (char 8)"},
		{"{\"a\":1}}", "Extra data: line 1 column 8 (char 7)"},
		{"-", "Expecting value: line 1 column 1 (char 0)"},
		{"-a", "Expecting value: line 1 column 1 (char 0)"},
		{"01", "Extra data: line 1 column 2 (char 1)"},
		{"1.", "Extra data: line 1 column 2 (char 1)"},
		{"1.e5", "Extra data: line 1 column 2 (char 1)"},
		{"1e", "Extra data: line 1 column 2 (char 1)"},
		{"1e+", "Extra data: line 1 column 2 (char 1)"},
		{"-Infinityx", "Extra data: line 1 column 10 (char 9)"},
		{"--1", "Expecting value: line 1 column 1 (char 0)"},
		{"+1", "Expecting value: line 1 column 1 (char 0)"},
		{".5", "Expecting value: line 1 column 1 (char 0)"},
		{"Infinity x", "Extra data: line 1 column 10 (char 9)"},
		{"\n\n  x", "Expecting value: line 3 column 3 (char 4)"},
		{"\ufeff{}", "Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)"},
		{"{\"\u00e9\": \"\u00fc\", x}", "Expecting property name enclosed in double quotes: line 1 column 12 (char 11)"},
		{"{'a': 1}", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"},
		{"[1,\n 2,,]", "Expecting value: line 2 column 4 (char 7)"},
		{"{\"a\": [1, {\"b\": }]}", "Expecting value: line 1 column 17 (char 16)"},
		{"{\"k\": \"v\"", "Expecting ',' delimiter: line 1 column 10 (char 9)"},
		{"{\"k\": \"v\\\"}", "Unterminated string starting at: line 1 column 7 (char 6)"},
		{"\"😀\" x", "Extra data: line 1 column 5 (char 4)"},
		{"[1]\r\n\r\n2", "Extra data: line 3 column 1 (char 7)"},
	}
	for _, tt := range tests {
		_, err := DecodeText(tt.doc)
		var de *DecodeError
		if !errors.As(err, &de) || err.Error() != tt.want {
			t.Errorf("DecodeText(%q) = %v, want %s", tt.doc, err, tt.want)
		}
	}
}

// What Python's json.loads accepts, and how json.dumps(v, indent=2) writes it back.
func TestDumpsAsPython(t *testing.T) {
	tests := []struct{ doc, want string }{
		{"{\"policy_id\": \"p\", \"rules\": [{\"rule_id\": \"r—x\", \"weight\": 10, \"w2\": 10.0, \"f\": 1e16, \"g\": 1.5e-5, \"e\": [], \"o\": {}, \"big\": 123456789012345678901234567890, \"neg\": -0, \"nf\": -0.0, \"inf\": 1e999, \"n\": NaN, \"t\": true, \"z\": null, \"s\": \"a\\\"b\\\\c\\n\\t\\u0001\\u007f\\u00e9😀\", \"nested\": [[], [1, [2]], {\"a\": {}}]}]}", "{\n  \"policy_id\": \"p\",\n  \"rules\": [\n    {\n      \"rule_id\": \"r\\u2014x\",\n      \"weight\": 10,\n      \"w2\": 10.0,\n      \"f\": 1e+16,\n      \"g\": 1.5e-05,\n      \"e\": [],\n      \"o\": {},\n      \"big\": 123456789012345678901234567890,\n      \"neg\": 0,\n      \"nf\": -0.0,\n      \"inf\": Infinity,\n      \"n\": NaN,\n      \"t\": true,\n      \"z\": null,\n      \"s\": \"a\\\"b\\\\c\\n\\t\\u0001\\u007f\\u00e9\\ud83d\\ude00\",\n      \"nested\": [\n        [],\n        [\n          1,\n          [\n            2\n          ]\n        ],\n        {\n          \"a\": {}\n        }\n      ]\n    }\n  ]\n}"},
		{"[]", "[]"},
		{"{}", "{}"},
		{"\"x\"", "\"x\""},
		{"{\"a\":1,\"b\":2,\"a\":3}", "{\n  \"a\": 3,\n  \"b\": 2\n}"},
	}
	for _, tt := range tests {
		got, err := Reindent([]byte(tt.doc), "  ")
		if err != nil || string(got) != tt.want {
			t.Errorf("Reindent(%q) = %v\n%s\nwant\n%s", tt.doc, err, got, tt.want)
		}
	}
}

func TestDecodeTextValues(t *testing.T) {
	v, err := DecodeText(` {"a": [1, "x\u00e9\ud83d\ude00", true, null, -1.5e3], "b": {}} `)
	if err != nil {
		t.Fatal(err)
	}
	obj, ok := v.(Object)
	if !ok || len(obj) != 2 {
		t.Fatalf("%#v", v)
	}
	a, _ := obj.Get("a")
	list, _ := a.([]any)
	if len(list) != 5 || list[0] != Literal("1") || list[1] != "xé😀" || list[2] != true || list[3] != nil || list[4] != Literal("-1.5e3") {
		t.Fatalf("%#v", list)
	}
	if _, ok := obj.Get("c"); ok {
		t.Fatal("Get of a missing key")
	}
}

// DecodeText accepts exactly what encoding/json accepts, besides Python's NaN, Infinity
// and -Infinity; what it reads, Dumps writes as JSON that reads back to the same text.
// (Python itself agreed on 40,000 mutated documents, messages and output included.)
func FuzzDecodeText(f *testing.F) {
	for _, seed := range []string{
		`{"a": [1, 2.5, -0, 1E5, 1e999999, 123456789012345678901234567890, "\u00e9\ud83d\ude00"]}`,
		`[NaN, Infinity, -Infinity]`, `{"a":1,"a":2}`, `"\ud800"`, `[1,]`, `{"a" 1}`, " \ufeff1", `"\u12"`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		v, err := DecodeText(s)
		python := strings.Contains(s, "NaN") || strings.Contains(s, "Infinity")
		if std := json.Valid([]byte(s)) && !strings.HasPrefix(s, "\ufeff"); std != (err == nil) && !python {
			t.Fatalf("encoding/json valid: %v; DecodeText: %v", std, err)
		}
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Pos < 0 || de.Pos > utf8.RuneCountInString(s) {
				t.Fatalf("error %v", err)
			}
			return
		}
		out, err := Dumps(v, "  ")
		if err != nil {
			if !strings.Contains(err.Error(), "digits") { // integers beyond Python's 4300 digits
				t.Fatalf("Dumps: %v", err)
			}
			return
		}
		for _, c := range out {
			if c >= 0x80 {
				t.Fatalf("Dumps wrote a byte beyond ASCII: %s", out)
			}
		}
		v2, err := DecodeText(string(out))
		if err != nil {
			t.Fatalf("Dumps wrote what DecodeText refuses: %v\n%s", err, out)
		}
		out2, _ := Dumps(v2, "  ")
		if !bytes.Equal(out, out2) {
			t.Fatalf("not stable:\n%s\n%s", out, out2)
		}
	})
}
