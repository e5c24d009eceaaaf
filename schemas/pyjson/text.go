package pyjson

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file reads and writes JSON text as Python's json.loads and json.dumps(indent=...)
// do, where the text itself is the contract: the error messages users' scripts see, and
// files written byte for byte as the Python tool writes them. Values keep their order.

// Object is a JSON object with its keys in document order. A key given twice keeps its
// first position and its last value, as a Python dict built by json.loads does.
type Object []Member

// Member is one key of an Object.
type Member struct {
	Key   string
	Value any
}

// Get returns the value of key and whether the object has it.
func (o Object) Get(key string) (any, bool) {
	for _, m := range o {
		if m.Key == key {
			return m.Value, true
		}
	}
	return nil, false
}

// Literal is a number as written in the document: its value is decided when it is
// written (see Dumps) or read (Number).
type Literal string

// DecodeError is a document json.loads refuses, with Python's message and position
// (counted in characters, as Python counts them).
type DecodeError struct {
	Msg       string // "Expecting value", "Extra data", ...
	Pos       int    // zero-based character offset
	Line, Col int    // one-based
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("%s: line %d column %d (char %d)", e.Msg, e.Line, e.Col, e.Pos)
}

// DecodeText reads a document as Python's json.loads reads a str: it returns nil, bool,
// string, Literal, []any or Object, or a *DecodeError with the message Python gives
// (Python 3.11 and 3.12; 3.13 words a trailing comma differently). NaN, Infinity and
// -Infinity are read as Literals, as Python reads them.
func DecodeText(s string) (any, error) {
	d := &textDecoder{s: []rune(s)}
	if len(d.s) > 0 && d.s[0] == '\ufeff' {
		return nil, d.fail("Unexpected UTF-8 BOM (decode using utf-8-sig)", 0)
	}
	v, end, err := d.value(d.ws(0))
	if err != nil {
		return nil, err
	}
	if end = d.ws(end); end != len(d.s) {
		return nil, d.fail("Extra data", end)
	}
	return v, nil
}

// textDecoder follows CPython's C scanner (Modules/_json.c) step for step, so that every
// refusal happens at the character, and with the message, that Python's has.
type textDecoder struct {
	s []rune
}

// errStop is the scanner's StopIteration: no value starts at pos.
type errStop struct{ pos int }

func (e errStop) Error() string { return "Expecting value" }

func (d *textDecoder) fail(msg string, pos int) *DecodeError {
	line, col := 1, pos+1
	for i := 0; i < pos && i < len(d.s); i++ {
		if d.s[i] == '\n' {
			line, col = line+1, pos-i
		}
	}
	return &DecodeError{Msg: msg, Pos: pos, Line: line, Col: col}
}

func (d *textDecoder) ws(i int) int {
	for i < len(d.s) && (d.s[i] == ' ' || d.s[i] == '\t' || d.s[i] == '\n' || d.s[i] == '\r') {
		i++
	}
	return i
}

func (d *textDecoder) has(i int, word string) bool {
	w := []rune(word)
	if i+len(w) > len(d.s) {
		return false
	}
	for k, r := range w {
		if d.s[i+k] != r {
			return false
		}
	}
	return true
}

// value scans one value at i, where no whitespace is skipped, and returns it with the
// offset after it.
func (d *textDecoder) value(i int) (any, int, error) {
	v, end, err := d.scan(i)
	if stop, ok := err.(errStop); ok {
		return nil, 0, d.fail("Expecting value", stop.pos)
	}
	return v, end, err
}

func (d *textDecoder) scan(i int) (any, int, error) {
	if i >= len(d.s) {
		return nil, 0, errStop{i}
	}
	switch d.s[i] {
	case '"':
		return d.str(i + 1)
	case '{':
		return d.object(i + 1)
	case '[':
		return d.array(i + 1)
	case 'n':
		if d.has(i, "null") {
			return nil, i + 4, nil
		}
	case 't':
		if d.has(i, "true") {
			return true, i + 4, nil
		}
	case 'f':
		if d.has(i, "false") {
			return false, i + 5, nil
		}
	case 'N':
		if d.has(i, "NaN") {
			return Literal("NaN"), i + 3, nil
		}
	case 'I':
		if d.has(i, "Infinity") {
			return Literal("Infinity"), i + 8, nil
		}
	case '-':
		if d.has(i, "-Infinity") {
			return Literal("-Infinity"), i + 9, nil
		}
	}
	return d.number(i)
}

func isDigit(r rune) bool { return r >= '0' && r <= '9' }

func (d *textDecoder) number(start int) (any, int, error) {
	s, i, last := d.s, start, len(d.s)-1
	if s[i] == '-' {
		i++
		if i > last {
			return nil, 0, errStop{start}
		}
	}
	switch {
	case s[i] >= '1' && s[i] <= '9':
		i++
		for i <= last && isDigit(s[i]) {
			i++
		}
	case s[i] == '0':
		i++
	default:
		return nil, 0, errStop{start}
	}
	if i < last && s[i] == '.' && isDigit(s[i+1]) {
		i += 2
		for i <= last && isDigit(s[i]) {
			i++
		}
	}
	if i < last && (s[i] == 'e' || s[i] == 'E') {
		e := i
		i++
		if i < last && (s[i] == '-' || s[i] == '+') {
			i++
		}
		for i <= last && isDigit(s[i]) {
			i++
		}
		if !isDigit(s[i-1]) {
			i = e // no exponent digits: the number ends before the e
		}
	}
	return Literal(string(s[start:i])), i, nil
}

// str scans a string whose opening quote is at begin-1.
func (d *textDecoder) str(end int) (any, int, error) {
	s, begin := d.s, end-1
	var b strings.Builder
	for {
		next := end
		var c rune
		for ; next < len(s); next++ {
			c = s[next]
			if c == '"' || c == '\\' {
				break
			}
			if c <= 0x1f {
				return nil, 0, d.fail("Invalid control character at", next)
			}
		}
		if next >= len(s) {
			return nil, 0, d.fail("Unterminated string starting at", begin)
		}
		b.WriteString(string(s[end:next]))
		next++
		if c == '"' {
			return b.String(), next, nil
		}
		if next == len(s) {
			return nil, 0, d.fail("Unterminated string starting at", begin)
		}
		c = s[next]
		if c != 'u' {
			end = next + 1
			switch c {
			case '"', '\\', '/':
			case 'b':
				c = '\b'
			case 'f':
				c = '\f'
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			default:
				return nil, 0, d.fail(`Invalid \escape`, end-2)
			}
			b.WriteRune(c)
			continue
		}
		next++
		end = next + 4
		if end >= len(s) {
			return nil, 0, d.fail(`Invalid \uXXXX escape`, next-1)
		}
		u, ok := hex4(s[next:end])
		if !ok {
			return nil, 0, d.fail(`Invalid \uXXXX escape`, end-5)
		}
		if u >= 0xd800 && u <= 0xdbff && end+6 < len(s) && s[end] == '\\' && s[end+1] == 'u' {
			u2, ok := hex4(s[end+2 : end+6])
			if !ok {
				return nil, 0, d.fail(`Invalid \uXXXX escape`, end+1)
			}
			if u2 >= 0xdc00 && u2 <= 0xdfff {
				u = 0x10000 + (u-0xd800)<<10 + (u2 - 0xdc00)
				end += 6
			}
		}
		b.WriteRune(u) // a lone surrogate becomes U+FFFD: Go strings cannot hold one
	}
}

func hex4(rs []rune) (rune, bool) {
	var v rune
	for _, r := range rs {
		v <<= 4
		switch {
		case r >= '0' && r <= '9':
			v |= r - '0'
		case r >= 'a' && r <= 'f':
			v |= r - 'a' + 10
		case r >= 'A' && r <= 'F':
			v |= r - 'A' + 10
		default:
			return 0, false
		}
	}
	return v, true
}

func (d *textDecoder) object(i int) (any, int, error) {
	s := d.s
	obj := Object{}
	i = d.ws(i)
	if i < len(s) && s[i] == '}' {
		return obj, i + 1, nil
	}
	for {
		if i >= len(s) || s[i] != '"' {
			return nil, 0, d.fail("Expecting property name enclosed in double quotes", i)
		}
		k, next, err := d.str(i + 1)
		if err != nil {
			return nil, 0, err
		}
		i = d.ws(next)
		if i >= len(s) || s[i] != ':' {
			return nil, 0, d.fail("Expecting ':' delimiter", i)
		}
		v, next, err := d.value(d.ws(i + 1))
		if err != nil {
			return nil, 0, err
		}
		obj = obj.set(k.(string), v)
		i = d.ws(next)
		if i < len(s) && s[i] == '}' {
			return obj, i + 1, nil
		}
		if i >= len(s) || s[i] != ',' {
			return nil, 0, d.fail("Expecting ',' delimiter", i)
		}
		i = d.ws(i + 1)
	}
}

func (o Object) set(key string, v any) Object {
	for i := range o {
		if o[i].Key == key {
			o[i].Value = v
			return o
		}
	}
	return append(o, Member{key, v})
}

func (d *textDecoder) array(i int) (any, int, error) {
	s := d.s
	arr := []any{}
	i = d.ws(i)
	if i < len(s) && s[i] == ']' {
		return arr, i + 1, nil
	}
	for {
		v, next, err := d.value(i)
		if err != nil {
			return nil, 0, err
		}
		arr = append(arr, v)
		i = d.ws(next)
		if i < len(s) && s[i] == ']' {
			return arr, i + 1, nil
		}
		if i >= len(s) || s[i] != ',' {
			return nil, 0, d.fail("Expecting ',' delimiter", i)
		}
		i = d.ws(i + 1)
	}
}

// Dumps writes v (as DecodeText returns it; Go strings, bools, nil, ints, float64s and
// *big.Ints are taken too) as Python's json.dumps(v, indent=len(indent)) writes it:
// ", " and ": " separators on one line, an item per line when indented, every character
// outside printable ASCII escaped (\u00e9, surrogate pairs beyond U+FFFF), integers digit
// for digit, floats as Python's repr, and NaN, Infinity, -Infinity.
func Dumps(v any, indent string) ([]byte, error) {
	var b strings.Builder
	if err := dumps(&b, v, indent, 0); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

// Reindent reads a JSON document and writes it as Dumps does.
func Reindent(src []byte, indent string) ([]byte, error) {
	if !utf8.Valid(src) {
		return nil, fmt.Errorf("invalid UTF-8")
	}
	v, err := DecodeText(string(src))
	if err != nil {
		return nil, err
	}
	return Dumps(v, indent)
}

func dumps(b *strings.Builder, v any, indent string, level int) error {
	newline := func(level int) {
		if indent != "" {
			b.WriteByte('\n')
			b.WriteString(strings.Repeat(indent, level))
		}
	}
	sep := ", "
	if indent != "" {
		sep = ","
	}
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case string:
		writeASCIIString(b, v)
	case Literal:
		lit, err := literalText(string(v))
		if err != nil {
			return err
		}
		b.WriteString(lit)
	case int:
		b.WriteString(strconv.Itoa(v))
	case *big.Int:
		b.WriteString(v.String())
	case float64:
		b.WriteString(floatText(v))
	case []any:
		if len(v) == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteByte('[')
		for i, x := range v {
			if i > 0 {
				b.WriteString(sep)
			}
			newline(level + 1)
			if err := dumps(b, x, indent, level+1); err != nil {
				return err
			}
		}
		newline(level)
		b.WriteByte(']')
	case Object:
		if len(v) == 0 {
			b.WriteString("{}")
			return nil
		}
		b.WriteByte('{')
		for i, m := range v {
			if i > 0 {
				b.WriteString(sep)
			}
			newline(level + 1)
			writeASCIIString(b, m.Key)
			b.WriteString(": ")
			if err := dumps(b, m.Value, indent, level+1); err != nil {
				return err
			}
		}
		newline(level)
		b.WriteByte('}')
	default:
		return fmt.Errorf("pyjson: cannot write %T", v)
	}
	return nil
}

// literalText is how Python writes back the number a literal denotes.
func literalText(lit string) (string, error) {
	switch lit {
	case "NaN", "Infinity", "-Infinity":
		return lit, nil
	}
	n, err := Number(lit)
	if err != nil {
		return "", err
	}
	switch n := n.(type) {
	case int:
		return strconv.Itoa(n), nil
	case *big.Int:
		return n.String(), nil
	case float64:
		return floatText(n), nil
	}
	return "", fmt.Errorf("pyjson: number literal %q", lit)
}

func floatText(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return FloatRepr(f)
}

// writeASCIIString writes s as json.dumps does with ensure_ascii (its default).
func writeASCIIString(b *strings.Builder, s string) {
	const hexDigits = "0123456789abcdef"
	u := func(r rune) {
		b.WriteString(`\u`)
		for shift := 12; shift >= 0; shift -= 4 {
			b.WriteByte(hexDigits[(r>>shift)&0xf])
		}
	}
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r >= ' ' && r <= '~':
			b.WriteRune(r)
		case r >= 0x10000:
			r -= 0x10000
			u(0xd800 | (r>>10)&0x3ff)
			u(0xdc00 | r&0x3ff)
		default:
			u(r)
		}
	}
	b.WriteByte('"')
}
