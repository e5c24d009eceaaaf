package evaluator

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/expr-lang/expr"

	"github.com/troy-audit/troy/evaluator/match"
	"github.com/troy-audit/troy/schemas/pyjson"
)

// Functions with Python's semantics, for conditions converted from the Python tool's
// dialect (policies/pyconv writes calls to them). Each behaves as the Python operation it
// is named after: the same truthiness, equality, membership and str(); the errors Python
// raises (a missing key, a comparison of a number with a string) are errors here too, so
// the rule is skipped at that step as the Python tool skips it.
func pythonFunctions() []expr.Option {
	return []expr.Option{
		expr.Function("py_truth", func(a ...any) (any, error) { return pyTruth(a[0]), nil }, new(func(any) bool)),
		expr.Function("py_eq", func(a ...any) (any, error) { return pyEq(a[0], a[1]), nil }, new(func(any, any) bool)),
		expr.Function("py_cmp", func(a ...any) (any, error) { return pyCmp(a[0].(string), a[1], a[2]) }, new(func(string, any, any) bool)),
		expr.Function("py_in", func(a ...any) (any, error) { return pyIn(a[0], a[1]) }, new(func(any, any) bool)),
		expr.Function("py_is", func(a ...any) (any, error) { return pyIs(a[0], a[1]), nil }, new(func(any, any) bool)),
		expr.Function("py_item", func(a ...any) (any, error) { return pyItem(a[0], a[1]) }),
		expr.Function("py_get", func(a ...any) (any, error) { return pyGet(a[0], a[1], a[2]) }),
		expr.Function("py_slice", func(a ...any) (any, error) { return pySlice(a[0], a[1], a[2]) }),
		expr.Function("py_str", func(a ...any) (any, error) { return pyStr(a[0]), nil }, new(func(any) string)),
		expr.Function("py_len", func(a ...any) (any, error) { return pyLen(a[0]) }),
		expr.Function("py_int", func(a ...any) (any, error) { return pyInt(a[0]) }),
		expr.Function("py_add", func(a ...any) (any, error) { return pyAdd(a[0], a[1]) }),
		expr.Function("py_sub", func(a ...any) (any, error) { return pySub(a[0], a[1]) }),
		// Assignment expressions (:=): a frame per scope (the condition, each call of a
		// lambda) holds the names bound so far; reading one not yet bound is Python's error.
		expr.Function("py_frame", func(...any) (any, error) { return &pyFrame{}, nil }, new(func() *pyFrame)),
		expr.Function("py_set", func(a ...any) (any, error) {
			f := a[0].(*pyFrame)
			if f.vars == nil {
				f.vars = map[string]any{}
			}
			f.vars[a[1].(string)] = a[2]
			return a[2], nil
		}, new(func(*pyFrame, string, any) any)),
		expr.Function("py_load", func(a ...any) (any, error) {
			v, ok := a[0].(*pyFrame).vars[a[1].(string)]
			if !ok {
				return nil, fmt.Errorf("NameError: name '%s' is not defined", a[1])
			}
			return v, nil
		}, new(func(*pyFrame, string) any)),
		// float('inf'): a literal too large for a float is infinity in Python.
		expr.Function("py_float", func(a ...any) (any, error) {
			f, err := strconv.ParseFloat(a[0].(string), 64)
			if err != nil {
				return nil, fmt.Errorf("ValueError: could not convert string to float: %s", pyRepr(a[0]))
			}
			return f, nil
		}, new(func(string) float64)),
		// get()'s path, which the Python tool splits on dots: a str, or AttributeError.
		expr.Function("py_path", func(a ...any) (any, error) {
			s, ok := a[0].(string)
			if !ok {
				return nil, fmt.Errorf("AttributeError: '%s' object has no attribute 'split'", typeName(a[0]))
			}
			return s, nil
		}, new(func(any) string)),
		// A failure Python has at this place whatever the step: a name the Python tool's
		// namespace lacks.
		expr.Function("py_error", func(a ...any) (any, error) { return nil, errors.New(a[0].(string)) }, new(func(string) any)),
	}
}

// pyFrame holds the names bound by := in one scope of a converted condition.
type pyFrame struct{ vars map[string]any }

// stepKeys are the keys of a step as the Python tool gives it to conditions, in its order:
// timestamp and parent_step_id are not there.
var stepKeys = []string{"step_id", "type", "description", "input", "output", "metadata"}

// dictKeys lists the keys of the objects that look like dicts to Python conditions.
func dictKeys(d any) ([]string, bool) {
	switch v := d.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys) // Go maps keep no order; Python's repr would follow the file's
		return keys, true
	case *stepView:
		return stepKeys, true
	case *TraceInfo:
		return []string{"trace_id", "agent_name", "metadata"}, true
	case *AgentInfo:
		return []string{"name", "metadata"}, true
	}
	return nil, false
}

// dictValue reads a key of a dict-like value; ok is false when the key is absent.
func dictValue(d any, key string) (any, bool) {
	switch v := d.(type) {
	case map[string]any:
		x, ok := v[key]
		return x, ok
	case *stepView:
		if !slices.Contains(stepKeys, key) {
			return nil, false
		}
		x, _ := v.step.Field(key)
		return x, true
	case fielder:
		return v.Field(key)
	}
	return nil, false
}

func pyList(x any) ([]any, bool) {
	switch v := x.(type) {
	case []any:
		return v, true
	case []*stepView:
		out := make([]any, len(v))
		for i, s := range v {
			out[i] = s
		}
		return out, true
	}
	return nil, false
}

func pyTruth(x any) bool {
	switch v := x.(type) {
	case nil:
		return false
	case bool:
		return v
	case int:
		return v != 0
	case float64:
		return v != 0
	case *big.Int:
		return v.Sign() != 0
	case string:
		return v != ""
	case map[string]any:
		return len(v) > 0
	case []any:
		return len(v) > 0
	case []*stepView:
		return len(v) > 0
	}
	return true // steps, the trace and the agent are non-empty dicts
}

func pyNumber(x any) (float64, bool) {
	switch v := x.(type) {
	case int:
		return float64(v), true
	case float64:
		return v, true
	case *big.Int:
		f, _ := new(big.Float).SetInt(v).Float64()
		return f, true
	case bool: // a bool is an int in Python
		if v {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// pyBig is an integer (an int, a bool or a big one) as a *big.Int, when one of them is big.
func pyBig(x any) (*big.Int, bool) {
	if b, ok := x.(*big.Int); ok {
		return b, true
	}
	if i, ok := pyInteger(x); ok {
		return big.NewInt(int64(i)), true
	}
	return nil, false
}

// normalInt is an integer as pyjson reads it: an int when it fits.
func normalInt(b *big.Int) any {
	if b.IsInt64() {
		return int(b.Int64())
	}
	return b
}

// pyInteger is an int or a bool as Python's int.
func pyInteger(x any) (int, bool) {
	switch v := x.(type) {
	case int:
		return v, true
	case bool:
		if v {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// pyNum is a number as Python sees it: a bool is the int 0 or 1.
func pyNum(x any) (any, bool) {
	switch v := x.(type) {
	case int, float64, *big.Int:
		return v, true
	case big.Int: // expr dereferences the pointers it passes to functions
		return &v, true
	case bool:
		if v {
			return 1, true
		}
		return 0, true
	}
	return nil, false
}

func pyEq(a, b any) bool {
	if x, ok := pyNum(a); ok {
		y, ok := pyNum(b)
		if !ok {
			return false
		}
		c, ordered := pyjson.Compare(x, y)
		return ordered && c == 0 // NaN equals nothing
	}
	switch x := a.(type) {
	case nil:
		return b == nil
	case string:
		y, ok := b.(string)
		return ok && x == y
	}
	if la, ok := pyList(a); ok {
		lb, ok := pyList(b)
		if !ok || len(la) != len(lb) {
			return false
		}
		for i := range la {
			if !pyEq(la[i], lb[i]) {
				return false
			}
		}
		return true
	}
	if ka, ok := dictKeys(a); ok {
		kb, ok := dictKeys(b)
		if !ok || len(ka) != len(kb) {
			return false
		}
		for _, k := range ka {
			va, _ := dictValue(a, k)
			vb, ok := dictValue(b, k)
			if !ok || !pyEq(va, vb) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

func typeName(x any) string {
	switch x.(type) {
	case nil:
		return "NoneType"
	case bool:
		return "bool"
	case int, *big.Int, big.Int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []any, []*stepView:
		return "list"
	}
	if _, ok := dictKeys(x); ok {
		return "dict"
	}
	return fmt.Sprintf("%T", x)
}

// pyCmp is <, <=, > or >=: numbers with numbers, strings with strings, lists
// element-wise; anything else is Python's TypeError.
func pyCmp(op string, a, b any) (bool, error) {
	if x, ok := pyNum(a); ok {
		if y, ok := pyNum(b); ok {
			if _, ordered := pyjson.Compare(x, y); !ordered {
				return false, nil // NaN: every comparison is false
			}
		}
	}
	c, err := order(op, a, b)
	if err != nil {
		return false, err
	}
	switch op {
	case "<":
		return c < 0, nil
	case "<=":
		return c <= 0, nil
	case ">":
		return c > 0, nil
	}
	return c >= 0, nil
}

func order(op string, a, b any) (int, error) {
	if x, ok := pyNum(a); ok {
		if y, ok := pyNum(b); ok {
			c, _ := pyjson.Compare(x, y) // NaN (unordered) is handled by pyCmp
			return c, nil
		}
	}
	if x, ok := a.(string); ok {
		if y, ok := b.(string); ok {
			return strings.Compare(x, y), nil
		}
	}
	if la, ok := pyList(a); ok {
		if lb, ok := pyList(b); ok {
			for i := 0; i < len(la) && i < len(lb); i++ {
				if pyEq(la[i], lb[i]) {
					continue
				}
				return order(op, la[i], lb[i])
			}
			return len(la) - len(lb), nil
		}
	}
	return 0, fmt.Errorf("TypeError: '%s' not supported between instances of '%s' and '%s'", op, typeName(a), typeName(b))
}

func pyIn(x, c any) (bool, error) {
	switch v := c.(type) {
	case string:
		s, ok := x.(string)
		if !ok {
			return false, fmt.Errorf("TypeError: 'in <string>' requires string as left operand, not %s", typeName(x))
		}
		return strings.Contains(v, s), nil
	case nil, bool, int, float64, *big.Int:
		return false, fmt.Errorf("TypeError: argument of type '%s' is not iterable", typeName(c))
	}
	if l, ok := pyList(c); ok {
		for _, e := range l {
			if pyEq(x, e) {
				return true, nil
			}
		}
		return false, nil
	}
	if _, ok := dictKeys(c); ok {
		switch k := x.(type) {
		case string:
			_, ok := dictValue(c, k)
			return ok, nil
		case []any, map[string]any:
			return false, fmt.Errorf("TypeError: unhashable type: '%s'", typeName(x))
		}
		return false, nil // dict keys here are strings
	}
	return false, fmt.Errorf("TypeError: argument of type '%s' is not iterable", typeName(c))
}

// pyIs is `is` against None, True or False: identity, so 1 is not True.
func pyIs(a, b any) bool {
	switch y := b.(type) {
	case nil:
		return a == nil
	case bool:
		x, ok := a.(bool)
		return ok && x == y
	}
	return false
}

func pyItem(d, key any) (any, error) {
	if l, ok := pyList(d); ok {
		i, ok := key.(int)
		if !ok {
			return nil, fmt.Errorf("TypeError: list indices must be integers, not %s", typeName(key))
		}
		if i < 0 {
			i += len(l)
		}
		if i < 0 || i >= len(l) {
			return nil, fmt.Errorf("IndexError: list index out of range")
		}
		return l[i], nil
	}
	if s, ok := d.(string); ok {
		i, ok := key.(int)
		if !ok {
			return nil, fmt.Errorf("TypeError: string indices must be integers")
		}
		r := []rune(s)
		if i < 0 {
			i += len(r)
		}
		if i < 0 || i >= len(r) {
			return nil, fmt.Errorf("IndexError: string index out of range")
		}
		return string(r[i]), nil
	}
	if _, ok := dictKeys(d); ok {
		k, ok := key.(string)
		if ok {
			if v, ok := dictValue(d, k); ok {
				return v, nil
			}
		}
		return nil, fmt.Errorf("KeyError: %s", pyRepr(key))
	}
	return nil, fmt.Errorf("TypeError: '%s' object is not subscriptable", typeName(d))
}

func pyGet(d, key, def any) (any, error) {
	if _, ok := dictKeys(d); !ok {
		return nil, fmt.Errorf("AttributeError: '%s' object has no attribute 'get'", typeName(d))
	}
	if k, ok := key.(string); ok {
		if v, ok := dictValue(d, k); ok {
			return v, nil
		}
	}
	return def, nil
}

func pySlice(x, lo, hi any) (any, error) {
	var n int
	l, isList := pyList(x)
	s, isStr := x.(string)
	r := []rune(s)
	switch {
	case isList:
		n = len(l)
	case isStr:
		n = len(r)
	default:
		return nil, fmt.Errorf("TypeError: '%s' object is not subscriptable", typeName(x))
	}
	bound := func(b any, def int) (int, error) {
		if b == nil {
			return def, nil
		}
		i, ok := b.(int)
		if !ok {
			return 0, fmt.Errorf("TypeError: slice indices must be integers or None")
		}
		if i < 0 {
			i += n
		}
		return min(max(i, 0), n), nil
	}
	from, err := bound(lo, 0)
	if err != nil {
		return nil, err
	}
	to, err := bound(hi, n)
	if err != nil {
		return nil, err
	}
	to = max(to, from)
	if isStr {
		return string(r[from:to]), nil
	}
	if steps, ok := x.([]*stepView); ok {
		return steps[from:to], nil
	}
	return l[from:to], nil
}

func pyLen(x any) (any, error) {
	switch v := x.(type) {
	case string:
		return utf8.RuneCountInString(v), nil
	}
	if l, ok := pyList(x); ok {
		return len(l), nil
	}
	if k, ok := dictKeys(x); ok {
		return len(k), nil
	}
	return nil, fmt.Errorf("TypeError: object of type '%s' has no len()", typeName(x))
}

func pyInt(x any) (any, error) {
	if i, ok := pyInteger(x); ok {
		return i, nil
	}
	switch v := x.(type) {
	case *big.Int:
		return v, nil
	case float64:
		switch {
		case math.IsNaN(v):
			return nil, fmt.Errorf("ValueError: cannot convert float NaN to integer")
		case math.IsInf(v, 0):
			return nil, fmt.Errorf("OverflowError: cannot convert float infinity to integer")
		case math.Abs(v) < 1<<63:
			return int(v), nil
		}
		i, _ := big.NewFloat(v).Int(nil) // exact: a float this large is an integer
		return i, nil
	case string:
		i, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("ValueError: invalid literal for int() with base 10: %s", pyRepr(v))
		}
		return i, nil
	}
	return nil, fmt.Errorf("TypeError: int() argument must be a string or a number, not '%s'", typeName(x))
}

func pyAdd(a, b any) (any, error) {
	if x, ok := pyInteger(a); ok {
		if y, ok := pyInteger(b); ok {
			if s := x + y; (s > x) == (y > 0) {
				return s, nil // int + int (a bool is an int) stays an int
			}
			return new(big.Int).Add(big.NewInt(int64(x)), big.NewInt(int64(y))), nil // no overflow in Python
		}
	}
	if x, ok := pyBig(a); ok {
		if y, ok := pyBig(b); ok {
			return normalInt(new(big.Int).Add(x, y)), nil
		}
	}
	if x, ok := pyNumber(a); ok {
		if y, ok := pyNumber(b); ok {
			return x + y, nil
		}
	}
	if x, ok := a.(string); ok {
		if y, ok := b.(string); ok {
			return x + y, nil
		}
	}
	if x, ok := pyList(a); ok {
		if y, ok := pyList(b); ok {
			return append(slices.Clone(x), y...), nil
		}
	}
	return nil, fmt.Errorf("TypeError: unsupported operand type(s) for +: '%s' and '%s'", typeName(a), typeName(b))
}

// pySub is Python's - on numbers (a bool is an int); anything else is TypeError.
func pySub(a, b any) (any, error) {
	if x, ok := pyBig(a); ok {
		if y, ok := pyBig(b); ok {
			return normalInt(new(big.Int).Sub(x, y)), nil
		}
	}
	if x, ok := pyNumber(a); ok {
		if y, ok := pyNumber(b); ok {
			return x - y, nil
		}
	}
	return nil, fmt.Errorf("TypeError: unsupported operand type(s) for -: '%s' and '%s'", typeName(a), typeName(b))
}

// pyStr is Python's str(): strings as they are, everything else as repr().
func pyStr(x any) string {
	if s, ok := x.(string); ok {
		return s
	}
	return pyRepr(x)
}

// pyRepr is Python's repr() of the values JSON gives: None, True and False, ints,
// floats written as Python writes them, strings quoted and escaped as Python does,
// lists and dicts (keys sorted: the file's order is not kept).
func pyRepr(x any) string { return string(appendRepr(nil, x)) }

// appendRepr appends pyRepr(x) to dst.
func appendRepr(dst []byte, x any) []byte {
	w := reprWriter{buf: dst}
	w.value(x)
	return w.buf
}

// reprWriter writes pyRepr of values: appended to buf or, with sc set, scanned for
// matching as it is written, without being kept (buf is then room for numbers, and runs
// are reprPlain ready for sc's Set).
type reprWriter struct {
	buf  []byte
	sc   *match.Writer
	runs *[2]*match.Run
	// quotesAlike: sc's automaton reads ' and " alike (neither is in a literal).
	quotesAlike bool
}

func (w *reprWriter) str(s string) {
	if w.sc != nil {
		w.sc.WriteString(s)
		return
	}
	w.buf = append(w.buf, s...)
}

func (w *reprWriter) byte(b byte) {
	if w.sc != nil {
		w.sc.WriteByte(b)
		return
	}
	w.buf = append(w.buf, b)
}

func (w *reprWriter) rune(r rune) {
	if w.sc != nil {
		w.sc.WriteRune(r)
		return
	}
	w.buf = utf8.AppendRune(w.buf, r)
}

// room and put write what an append function writes: w.put(strconv.AppendInt(w.room(), ...)).
func (w *reprWriter) room() []byte {
	if w.sc != nil {
		return w.buf[:0]
	}
	return w.buf
}

func (w *reprWriter) put(b []byte) {
	if w.sc != nil {
		w.sc.Write(b)
	}
	w.buf = b
}

func (w *reprWriter) value(x any) {
	switch v := x.(type) {
	case nil:
		w.str("None")
		return
	case bool:
		if v {
			w.str("True")
		} else {
			w.str("False")
		}
		return
	case int:
		w.put(strconv.AppendInt(w.room(), int64(v), 10))
		return
	case *big.Int:
		w.put(v.Append(w.room(), 10))
		return
	case big.Int:
		w.put(v.Append(w.room(), 10))
		return
	case float64:
		w.str(floatRepr(v))
		return
	case string:
		w.quoted(v)
		return
	case map[string]any:
		w.mapDict(v)
		return
	}
	if l, ok := pyList(x); ok {
		w.byte('[')
		for i, e := range l {
			if i > 0 {
				w.str(", ")
			}
			w.value(e)
		}
		w.byte(']')
		return
	}
	if keys, ok := dictKeys(x); ok {
		w.dict(x, keys)
		return
	}
	w.put(fmt.Append(w.room(), x))
}

// mapDict writes the repr of m, its keys sorted as dictKeys sorts them. Keys and values
// are taken together, without allocating for small maps, and not looked up again.
func (w *reprWriter) mapDict(m map[string]any) {
	var arr [16]keyValue
	kvs := arr[:0]
	for k, v := range m {
		kvs = append(kvs, keyValue{k, v})
	}
	if len(kvs) > len(arr) {
		slices.SortFunc(kvs, func(a, b keyValue) int { return strings.Compare(a.k, b.k) })
	} else {
		// Insertion sort: the few keys of most maps are sorted faster so.
		for i := 1; i < len(kvs); i++ {
			for j := i; j > 0 && kvs[j].k < kvs[j-1].k; j-- {
				kvs[j], kvs[j-1] = kvs[j-1], kvs[j]
			}
		}
	}
	w.byte('{')
	for i, kv := range kvs {
		if i > 0 {
			w.str(", ")
		}
		w.quoted(kv.k)
		w.str(": ")
		w.value(kv.v)
	}
	w.byte('}')
}

type keyValue struct {
	k string
	v any
}

// dict writes the repr of the dict d, its keys in the order given.
func (w *reprWriter) dict(d any, keys []string) {
	w.byte('{')
	for i, k := range keys {
		if i > 0 {
			w.str(", ")
		}
		w.quoted(k)
		w.str(": ")
		val, _ := dictValue(d, k)
		w.value(val)
	}
	w.byte('}')
}

// reprPlain holds the bytes Python's repr writes as they are inside quotes of either
// kind: printable ASCII other than that quote and the backslash.
var reprPlain = [2]*match.ByteSet{plainIn('\''), plainIn('"')}

func plainIn(quote byte) *match.ByteSet {
	return match.NewByteSet(func(b byte) bool { return b >= 0x20 && b < 0x7f && b != quote && b != '\\' })
}

func appendStrRepr(dst []byte, s string) []byte {
	w := reprWriter{buf: dst}
	w.quoted(s)
	return w.buf
}

// quoted writes the repr of the string s.
func (w *reprWriter) quoted(s string) {
	quote, q := byte('\''), 0
	// Python quotes with " a string that holds ' and not ". When the automaton reads both
	// quotes alike, a scan need not look for them first: it starts as if quoting with '
	// (what is written before the first ' is the same either way) and decides there.
	decided := w.sc == nil || !w.quotesAlike
	if decided && strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		quote, q = '"', 1
	}
	if w.sc == nil {
		w.buf = slices.Grow(w.buf, len(s)+2)
	}
	w.byte(quote)
	for i := 0; i < len(s); {
		// Printable ASCII other than the quote and the backslash is written as it is, a run
		// at a time: most of what rules search is such text.
		j := i
		if w.sc != nil {
			j += w.sc.WriteRun(s[i:], w.runs[q])
		} else {
			for j < len(s) && reprPlain[q].Has(s[j]) {
				j++
			}
			w.buf = append(w.buf, s[i:j]...)
		}
		if j == len(s) {
			break
		}
		if !decided && s[j] == '\'' {
			decided = true
			if strings.IndexByte(s, '"') < 0 {
				quote, q = '"', 1
			}
			i = j
			continue
		}
		r, size := rune(s[j]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[j:])
		}
		i = j + size
		switch {
		case r == rune(quote) || r == '\\':
			w.byte('\\')
			w.rune(r)
		case r == '\n':
			w.str(`\n`)
		case r == '\r':
			w.str(`\r`)
		case r == '\t':
			w.str(`\t`)
		case r < 0x20 || r == 0x7f:
			w.put(fmt.Appendf(w.room(), `\x%02x`, r))
		case unicode.IsPrint(r):
			w.rune(r)
		case r <= 0xff:
			w.put(fmt.Appendf(w.room(), `\x%02x`, r))
		case r <= 0xffff:
			w.put(fmt.Appendf(w.room(), `\u%04x`, r))
		default:
			w.put(fmt.Appendf(w.room(), `\U%08x`, r))
		}
	}
	w.byte(quote)
}

// floatRepr writes a float as Python's repr: the shortest digits that read back the same,
// positional from 1e-4 up to 1e16, with at least one decimal; scientific otherwise.
func floatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	return pyjson.FloatRepr(f)
}
