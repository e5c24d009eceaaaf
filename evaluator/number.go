package evaluator

import (
	"math/big"
	"reflect"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm/runtime"

	"github.com/troy-audit/troy/schemas/pyjson"
)

// Comparisons of values read from a trace. Numbers there are ints, float64s and, for
// integers beyond 64 bits, *big.Int (see pyjson); expr's own operators know nothing of the
// last and compare ints with floats through float64. A comparison with an operand whose
// type is only known at run time is therefore rewritten into a call that compares
// numbers exactly, as Python does, and leaves everything else to expr.
var compareNames = map[string]string{
	"<": "__troy_lt", "<=": "__troy_le", ">": "__troy_gt", ">=": "__troy_ge",
	"==": "__troy_eq", "!=": "__troy_ne",
}

// numberOptions are the comparison functions and the patch that calls them. The patch
// must come after the quantifier rewrite, which reads predicates as written.
func numberOptions() []expr.Option {
	order := func(name string, test func(int) bool, fallback func(a, b any) bool) expr.Option {
		return expr.Function(name, func(a ...any) (any, error) {
			if c, ok := pyjson.Compare(a[0], a[1]); ok {
				return test(c), nil
			}
			if isNaN(a[0]) || isNaN(a[1]) {
				return false, nil // NaN is ordered with nothing
			}
			return fallback(a[0], a[1]), nil // panics on what cannot be ordered, as expr does
		}, new(func(any, any) bool))
	}
	equal := func(a, b any) bool {
		if c, ok := pyjson.Compare(a, b); ok {
			return c == 0
		}
		return runtime.Equal(a, b)
	}
	return []expr.Option{
		order("__troy_lt", func(c int) bool { return c < 0 }, runtime.Less),
		order("__troy_le", func(c int) bool { return c <= 0 }, runtime.LessOrEqual),
		order("__troy_gt", func(c int) bool { return c > 0 }, runtime.More),
		order("__troy_ge", func(c int) bool { return c >= 0 }, runtime.MoreOrEqual),
		expr.Function("__troy_eq", func(a ...any) (any, error) { return equal(a[0], a[1]), nil }, new(func(any, any) bool)),
		expr.Function("__troy_ne", func(a ...any) (any, error) { return !equal(a[0], a[1]), nil }, new(func(any, any) bool)),
		expr.Patch(comparePatcher{}),
	}
}

func isNaN(v any) bool {
	f, ok := v.(float64)
	return ok && f != f
}

// comparePatcher rewrites comparisons with an operand of unknown type. Equality with a
// string, bool or nil operand is left to expr: only numbers need the exact comparison.
type comparePatcher struct{}

func (comparePatcher) Visit(n *ast.Node) {
	b, ok := (*n).(*ast.BinaryNode)
	if !ok {
		return
	}
	name, ok := compareNames[b.Operator]
	if !ok {
		return
	}
	l, r := b.Left.Type(), b.Right.Type()
	if !dynamic(l) && !dynamic(r) {
		return
	}
	if (b.Operator == "==" || b.Operator == "!=") && !(numeric(l) && numeric(r)) {
		return
	}
	call := &ast.CallNode{
		Callee:    &ast.IdentifierNode{Value: name},
		Arguments: []ast.Node{b.Left, b.Right},
	}
	call.SetLocation(b.Location())
	call.Callee.SetLocation(b.Location())
	ast.Patch(n, call)
}

var bigIntType = reflect.TypeFor[*big.Int]()

func dynamic(t reflect.Type) bool { return t != nil && t.Kind() == reflect.Interface }

// numeric reports whether a value of type t may be a number.
func numeric(t reflect.Type) bool {
	if t == nil {
		return false
	}
	switch t.Kind() {
	case reflect.Interface, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return true
	}
	return t == bigIntType
}
