package evaluator

import (
	"reflect"

	"github.com/expr-lang/expr/ast"

	"github.com/troy-audit/troy/evaluator/match"
)

// fastCond is a condition compiled to Go. Most rules are and/or/not of tests of the step's
// fields against constants and of matches() on a step field with a constant pattern;
// such rules are decided by a few Go calls instead of the expression machine. None of
// these forms can fail at run time, so results and failures are those of the machine.
type fastCond func(s *runner, v *stepView) bool

// compileFast compiles a condition (or a predicate, with root elementRoot) when every part
// of it has one of the forms above; ok is false otherwise.
func (b *builder) compileFast(n ast.Node, root int) (fastCond, bool) {
	switch x := n.(type) {
	case *ast.BoolNode:
		v := x.Value
		return func(*runner, *stepView) bool { return v }, true
	case *ast.UnaryNode:
		if x.Operator != "not" && x.Operator != "!" {
			return nil, false
		}
		inner, ok := b.compileFast(x.Node, root)
		if !ok {
			return nil, false
		}
		return func(s *runner, v *stepView) bool { return !inner(s, v) }, true
	case *ast.BinaryNode:
		switch x.Operator {
		case "and", "&&", "or", "||":
			l, ok := b.compileFast(x.Left, root)
			if !ok {
				return nil, false
			}
			r, ok := b.compileFast(x.Right, root)
			if !ok {
				return nil, false
			}
			if x.Operator == "and" || x.Operator == "&&" {
				return func(s *runner, v *stepView) bool { return l(s, v) && r(s, v) }, true
			}
			return func(s *runner, v *stepView) bool { return l(s, v) || r(s, v) }, true
		}
		c, ok := checkOf(x, root)
		if !ok {
			return nil, false
		}
		pc := &precheck{checks: []check{c}}
		return func(_ *runner, v *stepView) bool { return pc.pass(v) }, true
	case *ast.CallNode:
		id, ok := x.Callee.(*ast.IdentifierNode)
		if !ok || id.Value != matchesName || len(x.Arguments) != 2 {
			return nil, false
		}
		lit, ok := x.Arguments[1].(*ast.StringNode)
		if !ok {
			return nil, false
		}
		pat := b.c.patterns[lit.Value]
		text, ok := stepText(x.Arguments[0], root)
		if pat == nil || !ok {
			return nil, false
		}
		return func(s *runner, v *stepView) bool { return s.match(text(v), pat) }, true
	}
	return nil, false
}

// stepText compiles the text argument of matches() when it reads the step: the step
// itself, a field or a key of one (step.input, step.input.url), or get(step, 'path'[,
// constant default]).
func stepText(n ast.Node, root int) (func(*stepView) any, bool) {
	if isRoot(n, root) {
		return func(v *stepView) any { return v }, true
	}
	switch x := n.(type) {
	case *ast.MemberNode:
		prop, ok := x.Property.(*ast.StringNode)
		if !ok || x.Method {
			return nil, false
		}
		key := any(prop.Value) // boxed once, not at every call
		if isRoot(x.Node, root) {
			if !hasField(reflect.TypeFor[*stepView](), prop.Value) {
				return nil, false
			}
			return func(v *stepView) any { return field(v, key) }, true
		}
		inner, ok := x.Node.(*ast.MemberNode)
		if !ok || inner.Method || !isRoot(inner.Node, root) {
			return nil, false
		}
		mid, ok := inner.Property.(*ast.StringNode)
		if !ok {
			return nil, false
		}
		switch mid.Value {
		case "input", "output", "metadata":
		default:
			return nil, false // a text field has no keys: expr would fail
		}
		outer := any(mid.Value)
		return func(v *stepView) any {
			m, _ := field(v, outer).(map[string]any)
			return m[prop.Value]
		}, true
	case *ast.CallNode:
		id, ok := x.Callee.(*ast.IdentifierNode)
		if !ok || id.Value != getName || len(x.Arguments) < 2 || !isRoot(x.Arguments[0], root) {
			return nil, false
		}
		path, ok := x.Arguments[1].(*ast.StringNode)
		if !ok {
			return nil, false
		}
		var def any
		if len(x.Arguments) == 3 {
			if def, ok = constant(x.Arguments[2]); !ok {
				return nil, false
			}
		}
		return func(v *stepView) any { return get(v, path.Value, def) }, true
	}
	return nil, false
}

// match is matches() with a pattern known when the policy was compiled.
func (s *runner) match(text any, p *match.Pattern) bool {
	t := s.text(text, false)
	if t == nil {
		return false
	}
	return p.Match(t)
}
