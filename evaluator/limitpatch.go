package evaluator

import (
	"reflect"

	"github.com/expr-lang/expr/ast"
)

// loopBuiltins are expr's builtins that loop over a list, running their predicate on each
// element.
var loopBuiltins = map[string]bool{
	"all": true, "none": true, "any": true, "one": true, "filter": true, "map": true,
	"find": true, "findIndex": true, "findLast": true, "findLastIndex": true,
	"count": true, "sum": true, "groupBy": true, "sortBy": true, "reduce": true,
}

// iterationBytes is what one iteration of a loop builtin keeps: the element of the list
// it builds and its place on the machine's stack.
var iterationBytes = map[string]int64{
	"map": 3 * slotBytes, "filter": 3 * slotBytes, "sortBy": 3 * slotBytes, "groupBy": 4 * slotBytes,
}

// limitPatcher rewrites a checked condition so that it keeps to its budget. It runs
// after the other patchers, on what they produced:
//   - each iteration of a loop builtin first calls __troy_tick(bytes), where
//     bytes is what the iteration keeps (see iterationBytes) and the state of the loops
//     its predicate starts; the tick also watches the clock;
//   - calls of builtins that build texts or lists, the converted-Python helpers that do
//     and `matches` against a pattern computed at run time go through __troy_guard (see
//     guards); a + that may join texts calls __troy_add.
//
// The tick and the addition are the session's own functions, which the machine calls
// directly; the guards are rarer and take the budget as an argument.
//
// Rewritten calls keep the type the checker gave the original, so what the condition
// means does not change.
type limitPatcher struct {
	guarded bool // a call was rewritten to a typed call (a guard, or __troy_add)
}

func (p *limitPatcher) Visit(n *ast.Node) {
	switch x := (*n).(type) {
	case *ast.BuiltinNode:
		if loopBuiltins[x.Name] {
			tickLoop(x)
			return
		}
		if k, ok := guardIndex(x.Name); ok && k < gMatches {
			p.guard(n, k, x.Arguments)
		}
	case *ast.CallNode:
		id, ok := x.Callee.(*ast.IdentifierNode)
		if !ok {
			return
		}
		switch id.Value {
		case "py_str", "py_add", "py_slice":
			k, _ := guardIndex(id.Value)
			p.guard(n, k, x.Arguments)
		}
	case *ast.BinaryNode:
		switch x.Operator {
		case "+":
			if mayBeText(x.Left) && mayBeText(x.Right) && !(literal(x.Left) && literal(x.Right)) {
				add := &ast.CallNode{
					Callee:    typedIdent(addName, reflect.TypeFor[func(any, any) any]()),
					Arguments: []ast.Node{x.Left, x.Right},
				}
				add.SetNature(*x.Nature())
				p.guarded = true
				orig := *n
				ast.Patch(n, add)
				add.Callee.SetLocation(orig.Location())
			}
		case "matches":
			if _, ok := x.Right.(*ast.StringNode); !ok {
				p.guard(n, gMatches, []ast.Node{x.Left, x.Right})
			}
		}
	}
}

// guard replaces *n by __troy_guard(kind, __troy_budget, args...), typed as *n was.
func (p *limitPatcher) guard(n *ast.Node, kind int, args []ast.Node) {
	p.guarded = true
	orig := *n
	call := &ast.CallNode{
		Callee:    typedIdent(guardName, reflect.TypeFor[func(...any) any]()),
		Arguments: append([]ast.Node{typedInt(kind), typedIdent(budgetName, reflect.TypeFor[*budget]())}, args...),
	}
	call.SetNature(*orig.Nature())
	ast.Patch(n, call)
	call.Callee.SetLocation(orig.Location())
}

// tickLoop makes each iteration of a loop builtin count itself first.
func tickLoop(bn *ast.BuiltinNode) {
	if len(bn.Arguments) < 2 {
		return
	}
	pn, ok := bn.Arguments[1].(*ast.PredicateNode)
	if !ok {
		return
	}
	if id, ok := bn.Arguments[0].(*ast.IdentifierNode); ok && id.Value == oneName {
		return // a memoized predicate's single step
	}
	cost := iterationBytes[bn.Name] + scopeBytes*loopsIn(pn.Node)
	tick := &ast.CallNode{
		Callee:    typedIdent(tickName, reflect.TypeFor[func(int) bool]()),
		Arguments: []ast.Node{typedInt(int(cost))},
	}
	tick.SetType(reflect.TypeFor[bool]())
	tick.SetLocation(bn.Location())
	tick.Callee.SetLocation(bn.Location())
	seq := &ast.SequenceNode{Nodes: []ast.Node{tick, pn.Node}}
	seq.SetNature(*pn.Node.Nature())
	seq.SetLocation(pn.Node.Location())
	pn.Node = seq
}

// loopsIn counts the loops a predicate starts at each iteration: loop builtins in it that
// are not inside another loop's predicate.
func loopsIn(n ast.Node) int64 {
	var all []*ast.BuiltinNode
	nested := map[ast.Node]bool{}
	ast.Walk(&n, visitor(func(x *ast.Node) {
		if bn, ok := (*x).(*ast.BuiltinNode); ok && loopBuiltins[bn.Name] {
			all = append(all, bn)
		}
	}))
	for _, bn := range all {
		if len(bn.Arguments) < 2 {
			continue
		}
		pred := bn.Arguments[1] // runs per iteration of bn, not of n
		ast.Walk(&pred, visitor(func(x *ast.Node) {
			if inner, ok := (*x).(*ast.BuiltinNode); ok && loopBuiltins[inner.Name] {
				nested[inner] = true
			}
		}))
	}
	return int64(len(all) - len(nested))
}

func typedIdent(name string, t reflect.Type) *ast.IdentifierNode {
	id := &ast.IdentifierNode{Value: name}
	id.SetType(t)
	return id
}

func typedInt(v int) *ast.IntegerNode {
	i := &ast.IntegerNode{Value: v}
	i.SetType(reflect.TypeFor[int]())
	return i
}

// mayBeText reports whether a node can be a string when it runs.
func mayBeText(n ast.Node) bool {
	switch n.Type().Kind() {
	case reflect.String, reflect.Interface:
		return true
	}
	return false
}

func literal(n ast.Node) bool {
	switch n.(type) {
	case *ast.StringNode, *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.NilNode:
		return true
	}
	return false
}
