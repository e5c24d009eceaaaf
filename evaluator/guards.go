package evaluator

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/vm/runtime"

	"github.com/troy-audit/troy/schemas"
)

// Budget-aware builtins. The limit patcher rewrites a call of one of these builtins, of
// the converted-Python helpers that build values, and a match against a pattern computed
// at run time into __troy_guard(kind, __troy_budget, args...).
// The guard works out what the call will allocate from its arguments, charges it to the
// evaluation's budget (failing before allocating when it is over), and then calls the
// original, so the result is the builtin's own. Calls are typed as the original was when
// the condition was checked, so the checker does not see the rewrite.
type guard struct {
	name string
	// cost is what the call will allocate, in bytes, or an error from the budget.
	cost func(b *budget, args []any) error
	// call computes the result; nil calls the expr builtin of the same name.
	call func(b *budget, args []any) (any, error)
}

// Kinds of guarded calls, by position in guards.
const (
	gRepeat = iota
	gJoin
	gSplit
	gSplitAfter
	gReplace
	gUpper
	gLower
	gString
	gToJSON
	gFromJSON
	gToBase64
	gFromBase64
	gKeys
	gValues
	gToPairs
	gFromPairs
	gConcat
	gFlatten
	gUniq
	gReverse
	gSort
	gMatches // a matches b, with b computed at run time
	gPyStr
	gPyAdd
	gPySlice
)

// guards is indexed by kind. It is never written to.
var guards = [...]guard{
	gRepeat: {name: "repeat", cost: func(b *budget, a []any) error {
		s, _ := a[0].(string)
		n := runtime.ToInt(a[1])
		return b.charge(mul(int64(len(s)), int64(n)), func() string { return fmt.Sprintf("repeat of %dx%d bytes", len(s), n) })
	}},
	gJoin: {name: "join", cost: func(b *budget, a []any) error {
		glue := ""
		if len(a) == 2 {
			glue, _ = a[1].(string)
		}
		var n, total int64
		switch v := a[0].(type) {
		case []string:
			for _, s := range v {
				total += int64(len(s))
			}
			n = int64(len(v))
		case []any:
			for _, s := range v {
				if s, ok := s.(string); ok {
					total += int64(len(s))
				}
			}
			n = int64(len(v))
			total += n * 16 // the strings are gathered first
		}
		total += mul(n, int64(len(glue)))
		return b.charge(total, func() string { return fmt.Sprintf("join of %d texts", n) })
	}},
	gSplit:      {name: "split", cost: splitCost},
	gSplitAfter: {name: "splitAfter", cost: splitCost},
	gReplace: {name: "replace", cost: func(b *budget, a []any) error {
		s, _ := a[0].(string)
		old, _ := a[1].(string)
		repl, _ := a[2].(string)
		n := int64(occurrences(s, old))
		if old != "" {
			n-- // matches, not pieces
		}
		if len(a) == 4 {
			if limit := int64(runtime.ToInt(a[3])); limit >= 0 {
				n = min(n, limit)
			}
		}
		total := int64(len(s)) + mul(n, int64(len(repl)))
		return b.charge(total, func() string { return fmt.Sprintf("replace making %d bytes", total) })
	}},
	gUpper:      {name: "upper", cost: textCost("upper", 1)},
	gLower:      {name: "lower", cost: textCost("lower", 1)},
	gString:     {name: "string", cost: valueCost("string", 1)},
	gToJSON:     {name: "toJSON", cost: valueCost("toJSON", 2)}, // indented
	gFromJSON:   {name: "fromJSON", cost: textCost("fromJSON", 8)},
	gToBase64:   {name: "toBase64", cost: textCost("toBase64", 2)},
	gFromBase64: {name: "fromBase64", cost: textCost("fromBase64", 1)},
	gKeys:       {name: "keys", cost: lengthCost("keys", slotBytes)},
	gValues:     {name: "values", cost: lengthCost("values", slotBytes)},
	gToPairs:    {name: "toPairs", cost: lengthCost("toPairs", 2*slotBytes)},
	gFromPairs:  {name: "fromPairs", cost: lengthCost("fromPairs", 4*slotBytes)},
	gConcat: {name: "concat", cost: func(b *budget, a []any) error {
		var n int64
		for _, x := range a {
			n += int64(lengthOf(x))
		}
		return b.charge(mul(n, slotBytes), func() string { return fmt.Sprintf("concat of %d elements", n) })
	}},
	gFlatten: {name: "flatten", cost: func(b *budget, a []any) error {
		n := leaves(reflect.ValueOf(a[0]), b.remaining()/slotBytes+1)
		return b.charge(mul(n, slotBytes), func() string { return fmt.Sprintf("flatten of %d or more elements", n) })
	}},
	gUniq:    {name: "uniq", cost: lengthCost("uniq", slotBytes), call: uniq},
	gReverse: {name: "reverse", cost: lengthCost("reverse", slotBytes)},
	gSort:    {name: "sort", cost: lengthCost("sort", slotBytes)},
	gMatches: {name: "matches", cost: func(b *budget, a []any) error {
		p, _ := deref(a[1]).(string)
		if len(p) > maxDynamicPattern {
			return &LimitError{Limit: LimitMemory, Msg: fmt.Sprintf("a pattern of %s computed at run time exceeds the %s limit", size(int64(len(p))), size(maxDynamicPattern))}
		}
		return b.charge(patternBytes(p), func() string { return "compiling a pattern" })
	}, call: infixMatches},
	gPyStr: {name: "py_str", cost: valueCost("str", 1), call: func(_ *budget, a []any) (any, error) { return pyStr(a[0]), nil }},
	gPyAdd: {name: "py_add", cost: func(b *budget, a []any) error {
		if x, ok := a[0].(string); ok {
			if y, ok := a[1].(string); ok {
				n := int64(len(x)) + int64(len(y))
				return b.charge(n, func() string { return fmt.Sprintf("concatenation of %d bytes", n) })
			}
		}
		n := int64(lengthOf(a[0]) + lengthOf(a[1]))
		return b.charge(mul(n, slotBytes), func() string { return fmt.Sprintf("concatenation of %d elements", n) })
	}, call: func(_ *budget, a []any) (any, error) { return pyAdd(a[0], a[1]) }},
	gPySlice: {name: "py_slice", cost: func(b *budget, a []any) error {
		var n int64
		if s, ok := a[0].(string); ok {
			n = 4 * int64(len(s)) // as runes
		} else {
			n = mul(int64(lengthOf(a[0])), slotBytes)
		}
		return b.charge(n, func() string { return "slice of " + size(n) })
	}, call: func(_ *budget, a []any) (any, error) { return pySlice(a[0], a[1], a[2]) }},
}

// guardIndex finds the guard of an expr builtin or a converted-Python helper by name.
func guardIndex(name string) (int, bool) {
	for i, g := range guards {
		if g.name == name && i != gMatches {
			return i, true
		}
	}
	return 0, false
}

// guardFunction is the one expr function every guarded call goes through.
func guardFunction() expr.Option {
	return expr.Function(guardName, func(args ...any) (any, error) {
		kind, _ := args[0].(int)
		b, _ := args[1].(*budget)
		if b == nil || kind < 0 || kind >= len(guards) {
			return nil, fmt.Errorf("%s: not a guarded call", guardName)
		}
		g := &guards[kind]
		a := args[2:]
		if kind < gMatches { // expr's builtins get their arguments dereferenced
			for i, x := range a {
				a[i] = deref(x)
			}
		}
		if err := g.cost(b, a); err != nil {
			return nil, err
		}
		if g.call != nil {
			return g.call(b, a)
		}
		return callBuiltin(g.name, a)
	}, new(func(...any) any))
}

// tick counts one iteration of a loop that keeps cost bytes: __troy_tick(cost).
func (s *runner) tick(cost int) bool {
	if err := s.bud.tick(int64(cost)); err != nil {
		panic(err)
	}
	return true
}

// add is a + b as the machine computes it, with a concatenation of texts charged first.
func (s *runner) add(a, b any) any {
	x, ok := a.(string)
	y, ok2 := b.(string)
	if !ok || !ok2 {
		return runtime.Add(deref(a), deref(b))
	}
	n := int64(len(x)) + int64(len(y))
	if err := s.bud.charge(n, func() string { return fmt.Sprintf("concatenation of %d bytes", n) }); err != nil {
		panic(err)
	}
	return x + y
}

// callBuiltin calls an expr builtin as the machine would.
func callBuiltin(name string, args []any) (any, error) {
	f := builtin.Builtins[builtin.Index[name]]
	switch {
	case f.Fast != nil:
		return f.Fast(args[0]), nil
	case f.Safe != nil:
		out, _, err := f.Safe(args...)
		return out, err
	}
	return f.Func(args...)
}

// deref is what the machine does to a builtin's arguments: pointers are followed.
func deref(x any) any {
	if x == nil {
		return nil
	}
	v := reflect.ValueOf(x)
	if v.Kind() != reflect.Pointer {
		return x
	}
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	return v.Interface()
}

func splitCost(b *budget, a []any) error {
	s, _ := a[0].(string)
	sep, _ := a[1].(string)
	n := int64(occurrences(s, sep))
	if len(a) == 3 {
		if limit := int64(runtime.ToInt(a[2])); limit >= 0 {
			n = min(n, limit)
		}
	}
	return b.charge(mul(n, 16), func() string { return fmt.Sprintf("split into %d parts", n) })
}

// occurrences is how many pieces a search for sep in s gives at most.
func occurrences(s, sep string) int {
	if sep == "" {
		return utf8.RuneCountInString(s) + 1
	}
	return strings.Count(s, sep) + 1
}

// textCost charges factor bytes per byte of the text argument.
func textCost(name string, factor int64) func(*budget, []any) error {
	return func(b *budget, a []any) error {
		s, _ := a[0].(string)
		n := mul(int64(len(s)), factor)
		return b.charge(n, func() string { return fmt.Sprintf("%s of %s", name, size(int64(len(s)))) })
	}
}

// valueCost charges factor bytes per byte of the value argument written out.
func valueCost(name string, factor int64) func(*budget, []any) error {
	return func(b *budget, a []any) error {
		n := mul(textSize(a[0], b.remaining()/factor+1), factor)
		return b.charge(n, func() string { return fmt.Sprintf("%s of a value of %s or more", name, size(n/factor)) })
	}
}

// lengthCost charges per element of the list or map argument.
func lengthCost(name string, per int64) func(*budget, []any) error {
	return func(b *budget, a []any) error {
		n := int64(lengthOf(a[0]))
		return b.charge(mul(n, per), func() string { return fmt.Sprintf("%s of %d elements", name, n) })
	}
}

func lengthOf(x any) int {
	switch v := x.(type) {
	case []any:
		return len(v)
	case map[string]any:
		return len(v)
	case []*stepView:
		return len(v)
	case string:
		return len(v)
	case nil:
		return 0
	}
	rv := reflect.ValueOf(x)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array, reflect.Map, reflect.String:
		return rv.Len()
	}
	return 0
}

// leaves counts the elements flatten gives, stopping once there are more than max.
func leaves(v reflect.Value, max int64) int64 {
	var n int64
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		for v.Kind() == reflect.Interface && !v.IsNil() {
			v = v.Elem()
		}
		if v.Kind() != reflect.Slice && v.Kind() != reflect.Array {
			n++
			return
		}
		for i := 0; i < v.Len() && n <= max; i++ {
			walk(v.Index(i))
		}
	}
	walk(v)
	return n
}

// patternBytes estimates what compiling a regular expression takes.
func patternBytes(p string) int64 { return 64 * int64(len(p)+1) }

// infixMatches is `a matches b` as the machine computes it when b is not a constant,
// failing as it does on operands of other types.
func infixMatches(_ *budget, a []any) (any, error) {
	x, p := deref(a[0]), deref(a[1])
	if runtime.IsNil(x) || runtime.IsNil(p) {
		return false, nil
	}
	if s, ok := x.(string); ok {
		return regexp.MatchString(p.(string), s)
	}
	return regexp.Match(p.(string), x.([]byte))
}

// uniq is expr's uniq (the first of equal elements, in order), counting its comparisons
// as work: they grow with the square of the list.
func uniq(b *budget, a []any) (any, error) {
	v := reflect.ValueOf(a[0])
	if v.Kind() != reflect.Array && v.Kind() != reflect.Slice {
		return nil, fmt.Errorf("cannot uniq %s", v.Kind())
	}
	ret := []any{}
	for i := 0; i < v.Len(); i++ {
		x := v.Index(i).Interface()
		seen := false
		for _, r := range ret {
			if runtime.Equal(x, r) {
				seen = true
				break
			}
		}
		if err := b.spend(int64(len(ret))); err != nil {
			return nil, err
		}
		if !seen {
			ret = append(ret, x)
		}
	}
	return ret, nil
}

// textSize estimates the length of a value written out (as JSON, Python's repr or Go's
// %v: within a small factor of each other), stopping once it passes limit.
func textSize(x any, limit int64) int64 {
	var n int64
	var walk func(x any)
	walk = func(x any) {
		if n > limit {
			return
		}
		switch v := x.(type) {
		case nil, bool, int, float64:
			n += 8
		case string:
			n += int64(len(v)) + 2
		case map[string]any:
			n += 2
			for k, e := range v {
				n += int64(len(k)) + 4
				walk(e)
				if n > limit {
					return
				}
			}
		case []any:
			n += 2
			for _, e := range v {
				walk(e)
				n++
				if n > limit {
					return
				}
			}
		case []*stepView:
			n += 2
			for _, s := range v {
				walk(s)
				if n > limit {
					return
				}
			}
		case *stepView:
			if v != nil {
				walk(v.step)
			}
		case stepView: // a builtin's argument, dereferenced
			walk(v.step)
		case TraceInfo:
			walk(&v)
		case AgentInfo:
			walk(&v)
		case *schemas.Step:
			if v != nil {
				n += int64(len(v.StepID)+len(v.Type)+len(v.Description)) + 128
				walk(v.Input)
				walk(v.Output)
				walk(v.Metadata)
			}
		case *TraceInfo:
			if v != nil {
				n += int64(len(v.TraceID)+len(v.AgentName)) + 48
				walk(v.Metadata)
			}
		case *AgentInfo:
			if v != nil {
				n += int64(len(v.Name)) + 32
				walk(v.Metadata)
			}
		default:
			rv := reflect.ValueOf(x)
			switch rv.Kind() {
			case reflect.Slice, reflect.Array:
				n += 2
				for i := 0; i < rv.Len() && n <= limit; i++ {
					walk(rv.Index(i).Interface())
					n++
				}
			case reflect.Map:
				n += 2
				it := rv.MapRange()
				for it.Next() && n <= limit {
					walk(it.Key().Interface())
					walk(it.Value().Interface())
				}
			case reflect.String:
				n += int64(rv.Len()) + 2
			default:
				n += 32
			}
		}
	}
	walk(x)
	return n
}
