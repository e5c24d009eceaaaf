// Package pyjson reads and writes JSON as Python's json module does, so that values in
// traces, guard requests and events mean here what they mean to the Python tool troy grew
// from. It is the one place that decides how a JSON number becomes a Go value:
//
//   - an integer literal (no fraction, no exponent) is an int when it fits in 64 bits and
//     a *big.Int otherwise, exact however long (up to Python's 4300 digits); -0 is 0;
//   - any other number literal is a float64; one too large for a float64, such as
//     1e999999, is ±Inf (Python's float('inf')), one too small is 0 or -0;
//   - the literals NaN, Infinity and -Infinity, which Python's json writes by default, are
//     read as float64 NaN and ±Inf.
//
// Writing is the reverse: ints and big integers digit for digit, floats as Python writes
// them (5.0 stays a float), and NaN, Infinity and -Infinity as Python writes them.
//
// Decoding is encoding/json's for documents (with UseNumber, for its error offsets) and
// goccy/go-json's for the structs of events and requests (several times faster), after
// Python's non-finite literals are replaced by number literals of the same length, so
// error offsets stay true. It imports the standard library and goccy/go-json only.
package pyjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"

	gojson "github.com/goccy/go-json"
)

// MaxIntDigits is the longest integer literal read, as in Python (sys.int_info's default
// str_digits_check_threshold): converting longer ones costs time quadratic in their length.
const MaxIntDigits = 4300

// Number converts a JSON number literal into the value it denotes (see the package
// comment). The literal must be valid JSON.
func Number(lit string) (any, error) {
	if !strings.ContainsAny(lit, ".eE") {
		if i, err := strconv.ParseInt(lit, 10, 64); err == nil {
			return int(i), nil
		}
		if n := len(strings.TrimPrefix(lit, "-")); n > MaxIntDigits {
			return nil, fmt.Errorf("an integer of %d digits: at most %d are read, as in Python", n, MaxIntDigits)
		}
		b, ok := new(big.Int).SetString(lit, 10)
		if !ok {
			return nil, fmt.Errorf("invalid number literal %q", lit)
		}
		return b, nil
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) { // out of range gives ±Inf, as in Python
		return nil, fmt.Errorf("invalid number literal %q", lit)
	}
	return f, nil
}

// Normalize replaces the json.Number values inside decoded JSON (objects, arrays, and
// values held in structs, slices and maps) with the values Number gives, in place where it
// can, and returns v. An error names the JSON path of the number.
func Normalize(v any) (any, error) { return normalize(v, false) }

// nanLit stands for NaN while decoding: decode replaces Python's NaN literal with it and
// any genuine occurrence with the equal 0e0, so it is unambiguous.
const nanLit = "0E0"

func normalize(v any, nan bool) (any, error) {
	switch x := v.(type) {
	case json.Number:
		if nan && string(x) == nanLit {
			return math.NaN(), nil
		}
		return Number(string(x))
	case map[string]any:
		return v, normalizeMap(x, nan)
	case []any:
		return v, normalizeSlice(x, nan)
	case nil, string, bool, int, float64:
		return v, nil
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		if err := normalizeValue(rv.Elem(), nan); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// normalizeMap normalizes an object in place.
func normalizeMap(m map[string]any, nan bool) error {
	for k, e := range m {
		n, write, err := normalizeElem(e, nan)
		if err != nil {
			return pathError(quoteKey(k), err)
		}
		if write {
			m[k] = n
		}
	}
	return nil
}

// normalizeSlice normalizes an array in place.
func normalizeSlice(a []any, nan bool) error {
	for i, e := range a {
		n, write, err := normalizeElem(e, nan)
		if err != nil {
			return pathError(fmt.Sprintf("[%d]", i), err)
		}
		if write {
			a[i] = n
		}
	}
	return nil
}

// normalizeElem normalizes a value an object or an array holds: objects and arrays in
// place, a number into the value to write back in its stead (write). Strings, booleans
// and nulls, most of what a document holds, are neither visited nor written back.
func normalizeElem(e any, nan bool) (n any, write bool, err error) {
	switch x := e.(type) {
	case nil, string, bool, int, float64:
		return e, false, nil
	case map[string]any:
		return e, false, normalizeMap(x, nan)
	case []any:
		return e, false, normalizeSlice(x, nan)
	}
	n, err = normalize(e, nan)
	return n, err == nil, err
}

// normalizeValue normalizes the interface values reachable from an addressable value.
func normalizeValue(v reflect.Value, nan bool) error {
	switch v.Kind() {
	case reflect.Interface:
		if v.IsNil() {
			return nil
		}
		n, err := normalize(v.Interface(), nan)
		if err != nil {
			return err
		}
		if v.CanSet() {
			v.Set(reflect.ValueOf(&n).Elem())
		}
	case reflect.Pointer:
		if !v.IsNil() {
			return normalizeValue(v.Elem(), nan)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Field(i)
			// An unexported field is not settable; the type's field (costly to get) is
			// looked up only to name the path of an error.
			if !holdsInterfaces(f.Type()) || !f.CanSet() {
				continue
			}
			if err := normalizeValue(f, nan); err != nil {
				return pathError(jsonName(v.Type().Field(i)), err)
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type() == rawType {
			if nan && v.CanSet() {
				v.SetBytes(restoreNaN(v.Bytes()))
			}
			return nil
		}
		if !holdsInterfaces(v.Type().Elem()) {
			return nil
		}
		for i := range v.Len() {
			if err := normalizeValue(v.Index(i), nan); err != nil {
				return pathError(fmt.Sprintf("[%d]", i), err)
			}
		}
	case reflect.Map:
		if m, ok := v.Interface().(map[string]any); ok {
			return normalizeMap(m, nan)
		}
		if !holdsInterfaces(v.Type().Elem()) {
			return nil
		}
		it := v.MapRange()
		for it.Next() {
			e := reflect.New(it.Value().Type()).Elem()
			e.Set(it.Value())
			if err := normalizeValue(e, nan); err != nil {
				return pathError(fmt.Sprint(it.Key().Interface()), err)
			}
			v.SetMapIndex(it.Key(), e)
		}
	}
	return nil
}

var rawType = reflect.TypeFor[json.RawMessage]()

// restoreNaN puts Python's NaN back where decoding replaced it, in raw JSON kept as it is.
func restoreNaN(raw []byte) []byte {
	return rewriteTokens(raw, func(tok string) string {
		if tok == nanLit {
			return "NaN"
		}
		return ""
	})
}

// holdsInterfaces reports whether values of type t can hold a json.Number somewhere.
func holdsInterfaces(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Interface, reflect.Pointer, reflect.Struct, reflect.Slice, reflect.Array, reflect.Map:
		return true
	}
	return false
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if f.Anonymous && name == "" {
		return ""
	}
	if name == "" {
		return f.Name
	}
	return name
}

func quoteKey(k string) string {
	for _, r := range k {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return strconv.Quote(k)
		}
	}
	return k
}

// PathError is a number that could not be read, at a JSON path such as steps[3].input.n.
type PathError struct {
	Path string
	Err  error
}

func (e *PathError) Error() string {
	if e.Path == "" {
		return e.Err.Error()
	}
	return e.Path + ": " + e.Err.Error()
}

func (e *PathError) Unwrap() error { return e.Err }

func pathError(part string, err error) error {
	var pe *PathError
	if !errors.As(err, &pe) {
		pe = &PathError{Err: err}
	}
	switch {
	case part == "":
	case pe.Path == "" || pe.Path[0] == '[':
		pe.Path = part + pe.Path
	default:
		pe.Path = part + "." + pe.Path
	}
	return pe
}

// TrailingDataError is data after the one JSON value a document must hold.
type TrailingDataError struct{ Offset int64 }

func (e *TrailingDataError) Error() string {
	return fmt.Sprintf("unexpected data after the JSON value (at byte %d)", e.Offset)
}

// useNumber is goccy's UseNumber for Unmarshal, which has no option of that name: the
// Decoder's UseNumber sets this flag (decoder.UseNumberOption, the fourth). A test checks
// that numbers still come out as json.Number with it.
func useNumber(o *gojson.DecodeOption) { o.Flags |= 1 << 3 }

// errEmpty is a document without a value; it is io.EOF.
type errEmpty struct{}

func (errEmpty) Error() string        { return "unexpected end of JSON input: no value" }
func (errEmpty) Is(target error) bool { return target == io.EOF }

// errTruncated is a document that ends inside its value; it is io.ErrUnexpectedEOF.
type errTruncated struct{}

func (errTruncated) Error() string        { return "unexpected end of JSON input" }
func (errTruncated) Is(target error) bool { return target == io.ErrUnexpectedEOF }

// Unmarshal decodes one JSON value from data into v, as encoding/json does with
// UseNumber, then turns every number into its value (see the package comment). Syntax
// errors are *json.SyntaxError with the offset in data; data after the value is a
// *TrailingDataError.
func Unmarshal(data []byte, v any) error {
	src, nan := prepare(data)
	if _, doc := v.(*any); !doc {
		// Events and requests: goccy, as the stages used before; syntax errors are its own.
		if err := gojson.UnmarshalWithOption(src, v, useNumber); err != nil {
			return err
		}
		_, err := normalize(v, nan)
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		switch {
		case errors.Is(err, io.ErrUnexpectedEOF):
			return errTruncated{}
		case errors.Is(err, io.EOF):
			return errEmpty{}
		}
		return err
	}
	if off := dec.InputOffset(); len(bytes.TrimLeft(src[off:], " \t\r\n")) > 0 {
		return &TrailingDataError{Offset: off + int64(len(src[off:])-len(bytes.TrimLeft(src[off:], " \t\r\n")))}
	}
	if p, ok := v.(*any); ok {
		n, err := normalize(*p, nan)
		if err != nil {
			return err
		}
		*p = n
		return nil
	}
	_, err := normalize(v, nan)
	return err
}

// prepare replaces Python's literals NaN, Infinity and -Infinity outside strings with
// number literals of the same length (nanLit, 1e999999, -1e999999, which Number reads as
// ±Inf), and a genuine nanLit with 0e0; nan reports whether NaN occurred. A literal is
// replaced only when it is a whole token, so "-NaN" or "NaNx" stay as invalid as they are
// to Python. data is not modified.
func prepare(data []byte) (out []byte, nan bool) {
	if !bytes.Contains(data, []byte("NaN")) && !bytes.Contains(data, []byte("Infinity")) {
		return data, false
	}
	out = rewriteTokens(data, func(tok string) string {
		switch tok {
		case "NaN":
			nan = true
			return nanLit
		case "Infinity":
			return posInfLit
		case "-Infinity":
			return negInfLit
		case nanLit:
			return "0e0"
		}
		return ""
	})
	return out, nan
}

// skipString returns the offset just past the string starting at data[i] (a quote).
func skipString(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(data)
}

// tokenByte reports whether c can be part of a number or a bare literal.
func tokenByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '+' || c == '.'
}
