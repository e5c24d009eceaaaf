package evaluator

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm/runtime"
)

// inName is `in` where its right operand is a string or of a type known only at run time:
// expr's own `in` knows arrays, maps and structs but not strings, and a condition such as
// 'dangerous' in step.description would fail at run time. Here `in` on two strings is a
// substring test ('a' in 'cat' is true), as in Python; anything else is expr's `in`.
const inName = "__troy_in"

func stringInOptions() []expr.Option {
	return []expr.Option{
		expr.Function(inName, func(a ...any) (any, error) { return stringIn(a[0], a[1]) }, new(func(any, any) bool)),
		expr.Patch(stringInPatcher{}),
	}
}

func stringIn(needle, haystack any) (bool, error) {
	s, ok := haystack.(string)
	if !ok {
		return runtime.In(needle, haystack), nil // panics on what it cannot search, as expr does
	}
	sub, ok := needle.(string)
	if !ok {
		return false, fmt.Errorf(`operator "in": the left operand must be a string when the right one is (%T in string)`, needle)
	}
	return strings.Contains(s, sub), nil
}

// stringInPatcher rewrites `in` whose right operand is a string, or may be one at run time,
// into a call of inName. A left operand known not to be a string next to a string is left
// as it is, for the checker to refuse.
type stringInPatcher struct{}

func (stringInPatcher) Visit(n *ast.Node) {
	b, ok := (*n).(*ast.BinaryNode)
	if !ok || b.Operator != "in" {
		return
	}
	l, r := b.Left.Type(), b.Right.Type()
	switch {
	case r == nil:
		return
	case r.Kind() == reflect.String:
		if l != nil && l.Kind() != reflect.String && l.Kind() != reflect.Interface {
			return
		}
	case r.Kind() != reflect.Interface:
		return
	}
	call := &ast.CallNode{
		Callee:    &ast.IdentifierNode{Value: inName},
		Arguments: []ast.Node{b.Left, b.Right},
	}
	call.SetType(reflect.TypeFor[bool]())
	call.SetLocation(b.Location())
	call.Callee.SetLocation(b.Location())
	ast.Patch(n, call)
}

// patchStringIn applies stringInPatcher to a parsed tree before it is checked, so that the
// checker sees 'a' in 'cat' as the call it becomes (it refuses `in` on two strings). The
// first check, whose errors are ignored, gives the nodes their types.
func patchStringIn(n *ast.Node, check func()) {
	found := false
	ast.Walk(n, visitor(func(x *ast.Node) {
		if b, ok := (*x).(*ast.BinaryNode); ok && b.Operator == "in" {
			found = true
		}
	}))
	if !found {
		return
	}
	check()
	ast.Walk(n, stringInPatcher{})
}
