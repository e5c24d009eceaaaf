package pyjson

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"

	gojson "github.com/goccy/go-json"
)

// Placeholders for the literals JSON encoders refuse to write: substitute puts them in
// (as json.Number, which encoders write as they are) and finish turns them into Python's
// literals. Any json.Number a caller gave is replaced by its value first, so these are the
// only ones left.
const (
	posInfLit = "1e999999"
	negInfLit = "-1e999999"
	nanMark   = "-0.0e-999999"
)

// Marshal encodes v as encoding/json does (without escaping <, > and &), except that
// numbers are written as Python's json writes them: floats keep a fraction (5.0), big
// integers all their digits, and non-finite floats are NaN, Infinity and -Infinity.
func Marshal(v any) ([]byte, error) {
	out, err := encode(v, "")
	return bytes.TrimSuffix(out, []byte("\n")), err
}

// Encode writes v as Marshal does, indented by indent when it is not empty, with a final
// newline.
func Encode(w io.Writer, v any, indent string) error {
	out, err := encode(v, indent)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

func encode(v any, indent string) ([]byte, error) {
	sub, changed := substitute(reflect.ValueOf(&v).Elem())
	if changed {
		v = sub.Interface()
	}
	var b bytes.Buffer
	enc := gojson.NewEncoder(&b) // the bytes of encoding/json, several times faster
	enc.SetEscapeHTML(false)
	if indent != "" {
		enc.SetIndent("", indent)
	}
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if changed {
		return finish(b.Bytes()), nil
	}
	return b.Bytes(), nil
}

// FloatRepr writes a finite float as Python's repr does: the shortest digits that read back
// the same, positional from 1e-4 up to 1e16 with at least one decimal, scientific
// otherwise (1e+16, 1.5e-05).
func FloatRepr(f float64) string {
	exp := 0
	if f != 0 {
		s := strconv.FormatFloat(f, 'e', -1, 64) // the shortest digits, and their exponent
		exp, _ = strconv.Atoi(s[strings.IndexByte(s, 'e')+1:])
	}
	if exp < -4 || exp >= 16 {
		s := strconv.FormatFloat(f, 'e', -1, 64)
		mant, e, _ := strings.Cut(s, "e")
		digits := strings.TrimLeft(e[1:], "0")
		if len(digits) < 2 {
			digits = strings.Repeat("0", 2-len(digits)) + digits
		}
		return mant + "e" + e[:1] + digits
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

// numberValue is the placeholder or literal a float is encoded as, and whether encoders
// would write it otherwise: they refuse non-finite floats and write integral ones as ints.
func numberValue(f float64) (json.Number, bool) {
	switch {
	case math.IsNaN(f):
		return nanMark, true
	case math.IsInf(f, 1):
		return posInfLit, true
	case math.IsInf(f, -1):
		return negInfLit, true
	case f == math.Trunc(f) && math.Abs(f) < 1e21:
		return json.Number(FloatRepr(f)), true
	}
	return "", false
}

var (
	numberType = reflect.TypeFor[json.Number]()
	bigType    = reflect.TypeFor[*big.Int]()
)

// substitute returns v with the numbers that encoders would write unlike Python replaced by
// json.Number literals (see numberValue) and json.Number values by their canonical form,
// copying only the maps, slices, structs and pointers on the way to a change.
func substitute(v reflect.Value) (reflect.Value, bool) {
	switch v.Kind() {
	case reflect.Interface:
		if v.IsNil() {
			return v, false
		}
		if x, plain := decoded(v.Interface()); plain {
			// Decoded JSON, the bulk of what is written: walked without reflection.
			y, changed := substituteValue(x)
			if !changed {
				return v, false
			}
			out := reflect.New(v.Type()).Elem()
			out.Set(reflect.ValueOf(&y).Elem())
			return out, true
		}
		inner, changed := substitute(v.Elem())
		if !changed {
			return v, false
		}
		out := reflect.New(v.Type()).Elem()
		out.Set(inner)
		return out, true
	case reflect.Float64, reflect.Float32:
		if n, ok := numberValue(v.Float()); ok {
			return reflect.ValueOf(n), true
		}
	case reflect.String:
		if v.Type() != numberType {
			return v, false
		}
		val, err := Number(v.String())
		if err != nil {
			return v, false // the encoder reports it
		}
		return substitute(reflect.ValueOf(&val).Elem())
	case reflect.Pointer:
		if v.IsNil() || v.Type() == bigType {
			return v, false
		}
		inner, changed := substitute(v.Elem())
		if !changed {
			return v, false
		}
		p := reflect.New(v.Type().Elem())
		p.Elem().Set(inner)
		return p, true
	case reflect.Struct:
		var out reflect.Value
		t := v.Type()
		for i := range t.NumField() {
			if !t.Field(i).IsExported() {
				continue
			}
			f, changed := substitute(v.Field(i))
			if !changed {
				continue
			}
			if !out.IsValid() {
				out = reflect.New(t).Elem()
				out.Set(v)
			}
			if !assign(out.Field(i), f) {
				return v, false
			}
		}
		if out.IsValid() {
			return out, true
		}
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() || !holdsNumbers(v.Type().Elem()) {
			return v, false
		}
		var out reflect.Value
		for i := range v.Len() {
			e, changed := substitute(v.Index(i))
			if !changed {
				continue
			}
			if !out.IsValid() {
				if v.Kind() == reflect.Slice {
					out = reflect.MakeSlice(v.Type(), v.Len(), v.Len())
				} else {
					out = reflect.New(v.Type()).Elem()
				}
				reflect.Copy(out, v)
			}
			if !assign(out.Index(i), e) {
				return v, false
			}
		}
		if out.IsValid() {
			return out, true
		}
	case reflect.Map:
		if v.IsNil() || !holdsNumbers(v.Type().Elem()) {
			return v, false
		}
		if m, ok := v.Interface().(map[string]any); ok {
			y, changed := substituteValue(m)
			if !changed {
				return v, false
			}
			return reflect.ValueOf(y), true
		}
		var out reflect.Value
		it := v.MapRange()
		for it.Next() {
			e, changed := substitute(it.Value())
			if !changed {
				continue
			}
			if !out.IsValid() {
				out = reflect.MakeMapWithSize(v.Type(), v.Len())
				all := v.MapRange()
				for all.Next() {
					out.SetMapIndex(all.Key(), all.Value())
				}
			}
			if !e.Type().AssignableTo(v.Type().Elem()) {
				return v, false
			}
			out.SetMapIndex(it.Key(), e)
		}
		if out.IsValid() {
			return out, true
		}
	}
	return v, false
}

// decoded reports whether x is a value of decoded JSON (or nil), which substituteValue
// walks.
func decoded(x any) (any, bool) {
	switch x.(type) {
	case nil, string, bool, int, float64, json.Number, map[string]any, []any:
		return x, true
	}
	return x, false
}

// substituteValue is substitute for decoded JSON, by type switches.
func substituteValue(x any) (any, bool) {
	switch v := x.(type) {
	case float64:
		if n, ok := numberValue(v); ok {
			return n, true
		}
	case json.Number:
		val, err := Number(string(v))
		if err != nil {
			return x, false // the encoder reports it
		}
		if f, ok := val.(float64); ok {
			if n, ok := numberValue(f); ok {
				return n, true
			}
		}
		return val, true
	case map[string]any:
		var out map[string]any
		for k, e := range v {
			n, changed := substituteValue(e)
			if !changed {
				continue
			}
			if out == nil {
				out = make(map[string]any, len(v))
				for k2, e2 := range v {
					out[k2] = e2
				}
			}
			out[k] = n
		}
		if out != nil {
			return out, true
		}
	case []any:
		var out []any
		for i, e := range v {
			n, changed := substituteValue(e)
			if !changed {
				continue
			}
			if out == nil {
				out = append([]any(nil), v...)
			}
			out[i] = n
		}
		if out != nil {
			return out, true
		}
	default:
		if _, plain := decoded(x); !plain {
			y, changed := substitute(reflect.ValueOf(&x).Elem())
			if changed {
				return y.Interface(), true
			}
		}
	}
	return x, false
}

// assign sets dst to v when v's type fits: a float field of a struct cannot hold a
// placeholder, and is then left for the encoder to report.
func assign(dst, v reflect.Value) bool {
	if !v.Type().AssignableTo(dst.Type()) {
		return false
	}
	dst.Set(v)
	return true
}

func holdsNumbers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Interface, reflect.Pointer, reflect.Struct, reflect.Slice, reflect.Array, reflect.Map, reflect.Float32, reflect.Float64:
		return true
	case reflect.String:
		return t == numberType
	}
	return false
}

// finish turns the placeholders in encoded JSON into Python's literals.
func finish(data []byte) []byte {
	return rewriteTokens(data, func(tok string) string {
		switch tok {
		case posInfLit:
			return "Infinity"
		case negInfLit:
			return "-Infinity"
		case nanMark:
			return "NaN"
		}
		return ""
	})
}

// rewriteTokens replaces the bare tokens (numbers and literals, outside strings) for which
// repl gives a replacement. data is not modified.
func rewriteTokens(data []byte, repl func(string) string) []byte {
	var out []byte
	last := 0
	for i := 0; i < len(data); {
		c := data[i]
		if c == '"' {
			i = skipString(data, i)
			continue
		}
		if !tokenByte(c) {
			i++
			continue
		}
		j := i
		for j < len(data) && tokenByte(data[j]) {
			j++
		}
		if r := repl(string(data[i:j])); r != "" {
			out = append(append(out, data[last:i]...), r...)
			last = j
		}
		i = j
	}
	if out == nil {
		return data
	}
	return append(out, data[last:]...)
}
