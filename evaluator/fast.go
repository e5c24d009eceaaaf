package evaluator

import (
	"errors"
	"reflect"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"

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
			return b.chainFast(x, root)
		}
		c, ok := checkOf(x, root)
		if !ok {
			return b.compareFast(x, root)
		}
		c = b.keyedCheck(c)
		return func(s *runner, v *stepView) bool { return c.passes(s, v) }, true
	case *ast.BuiltinNode:
		if root != stepRoot {
			return nil, false
		}
		return b.quantifierFast(x)
	case *ast.VariableDeclaratorNode:
		return b.letFast(x, root)
	case *ast.CallNode:
		id, ok := x.Callee.(*ast.IdentifierNode)
		if ok && id.Value == "py_eq" && len(x.Arguments) == 2 {
			a, aok := b.operand(x.Arguments[0], root)
			c, cok := b.operand(x.Arguments[1], root)
			if !aok || !cok {
				return nil, false
			}
			return func(s *runner, v *stepView) bool { return pyEq(a(s, v), c(s, v)) }, true
		}
		if !ok || id.Value != matchesName || len(x.Arguments) != 2 {
			return nil, false
		}
		lit, ok := x.Arguments[1].(*ast.StringNode)
		if !ok {
			return nil, false
		}
		pat := b.c.patterns[lit.Value]
		if pat == nil {
			return nil, false
		}
		if text, ok := stepText(x.Arguments[0], root); ok {
			return func(s *runner, v *stepView) bool { return s.match(text(v), pat) }, true
		}
		return b.matchComputed(x.Arguments[0], pat, root)
	}
	return nil, false
}

// chainFast compiles a chain of and (or of or): its parts run from a list, in order, until
// one decides, rather than down a nest of calls, one per operator.
func (b *builder) chainFast(x *ast.BinaryNode, root int) (fastCond, bool) {
	and := x.Operator == "and" || x.Operator == "&&"
	var parts []fastCond
	for _, n := range chain(x, and, nil) {
		f, ok := b.compileFast(n, root)
		if !ok {
			return nil, false
		}
		parts = append(parts, f)
	}
	if len(parts) == 2 {
		l, r := parts[0], parts[1]
		if and {
			return func(s *runner, v *stepView) bool { return l(s, v) && r(s, v) }, true
		}
		return func(s *runner, v *stepView) bool { return l(s, v) || r(s, v) }, true
	}
	if and {
		return func(s *runner, v *stepView) bool {
			for _, f := range parts {
				if !f(s, v) {
					return false
				}
			}
			return true
		}, true
	}
	return func(s *runner, v *stepView) bool {
		for _, f := range parts {
			if f(s, v) {
				return true
			}
		}
		return false
	}, true
}

// chain lists the parts of an and-chain (or of an or-chain) in the order they run.
func chain(n ast.Node, and bool, out []ast.Node) []ast.Node {
	if b, ok := n.(*ast.BinaryNode); ok {
		switch b.Operator {
		case "and", "&&":
			if and {
				return chain(b.Right, and, chain(b.Left, and, out))
			}
		case "or", "||":
			if !and {
				return chain(b.Right, and, chain(b.Left, and, out))
			}
		}
	}
	return append(out, n)
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

// operand compiles a value a fast condition compares: a constant, a field of the step as
// stepText reads it, or get(agent, 'path') and get(trace, 'path'), which read the
// evaluation's agent and trace as they are when the condition runs. None of them can fail.
func (b *builder) operand(n ast.Node, root int) (func(*runner, *stepView) any, bool) {
	if c, ok := constant(n); ok {
		return func(*runner, *stepView) any { return c }, true
	}
	if f, ok := stepText(n, root); ok {
		return func(_ *runner, v *stepView) any { return f(v) }, true
	}
	if id, ok := n.(*ast.IdentifierNode); ok {
		k, bound := b.lets[id.Value]
		return func(s *runner, _ *stepView) any { return s.slots[k] }, bound
	}
	if bn, ok := n.(*ast.BuiltinNode); ok && bn.Name == "type" && len(bn.Arguments) == 1 {
		x, ok := b.operand(bn.Arguments[0], root)
		return func(s *runner, v *stepView) any { return builtin.Type(x(s, v)) }, ok
	}
	call, ok := n.(*ast.CallNode)
	if !ok || len(call.Arguments) != 2 {
		return nil, false
	}
	id, ok := call.Callee.(*ast.IdentifierNode)
	base, bok := call.Arguments[0].(*ast.IdentifierNode)
	path, pok := call.Arguments[1].(*ast.StringNode)
	if !ok || id.Value != getName || !bok || !pok {
		return nil, false
	}
	switch base.Value {
	case "agent":
		return func(s *runner, _ *stepView) any { return get(s.agent, path.Value, nil) }, true
	case "trace":
		return func(s *runner, _ *stepView) any { return get(s.trace, path.Value, nil) }, true
	}
	return nil, false
}

// compareFast compiles a comparison checkOf does not take: an operand (see operand)
// against a constant with == or !=, as the precheck compares, and step_index against an
// integer constant.
func (b *builder) compareFast(x *ast.BinaryNode, root int) (fastCond, bool) {
	if root == stepRoot {
		if f, ok := stepIndexCompare(x); ok {
			return f, true
		}
	}
	if x.Operator != "==" && x.Operator != "!=" {
		return nil, false
	}
	val, other := x.Left, x.Right
	if _, isConst := constant(val); isConst {
		val, other = other, val
	}
	want, ok := constant(other)
	if !ok {
		return nil, false
	}
	f, ok := b.operand(val, root)
	if !ok {
		return nil, false
	}
	if x.Operator == "!=" {
		return func(s *runner, v *stepView) bool { return !equalConst(f(s, v), want) }, true
	}
	return func(s *runner, v *stepView) bool { return equalConst(f(s, v), want) }, true
}

// stepIndexCompare compiles step_index compared with an integer constant.
func stepIndexCompare(x *ast.BinaryNode) (fastCond, bool) {
	op := x.Operator
	id, ok := x.Left.(*ast.IdentifierNode)
	k, kok := x.Right.(*ast.IntegerNode)
	if !ok || !kok {
		// The constant first: 50 <= step_index is step_index >= 50.
		id, ok = x.Right.(*ast.IdentifierNode)
		k, kok = x.Left.(*ast.IntegerNode)
		op = map[string]string{"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}[op]
	}
	if !ok || !kok || id.Value != "step_index" {
		return nil, false
	}
	n := k.Value
	switch op {
	case "<":
		return func(s *runner, _ *stepView) bool { return s.env.StepIndex < n }, true
	case "<=":
		return func(s *runner, _ *stepView) bool { return s.env.StepIndex <= n }, true
	case ">":
		return func(s *runner, _ *stepView) bool { return s.env.StepIndex > n }, true
	case ">=":
		return func(s *runner, _ *stepView) bool { return s.env.StepIndex >= n }, true
	case "==":
		return func(s *runner, _ *stepView) bool { return s.env.StepIndex == n }, true
	case "!=":
		return func(s *runner, _ *stepView) bool { return s.env.StepIndex != n }, true
	}
	return nil, false
}

// quantifierFast compiles any, all, none and one over prev_steps, next_steps or steps with
// a predicate the quantifier patcher memoizes and that is decided in Go: the answer is a
// difference of the predicate's prefix counts (see runner.count), and cannot fail.
func (b *builder) quantifierFast(bn *ast.BuiltinNode) (fastCond, bool) {
	if len(bn.Arguments) != 2 {
		return nil, false
	}
	scope, ok := quantScope(bn.Arguments[0])
	if !ok {
		return nil, false
	}
	pn, ok := bn.Arguments[1].(*ast.PredicateNode)
	if !ok || !independent(pn.Node) {
		return nil, false
	}
	p, ok := b.predicate(pn.Node)
	if !ok || (b.c.preds[p].fast == nil && !b.c.preds[p].whole) {
		return nil, false
	}
	hits, misses := quantKey(p, scope, false), quantKey(p, scope, true)
	switch bn.Name {
	case "any":
		return func(s *runner, _ *stepView) bool { return s.count(hits) > 0 }, true
	case "none":
		return func(s *runner, _ *stepView) bool { return s.count(hits) == 0 }, true
	case "one":
		return func(s *runner, _ *stepView) bool { return s.count(hits) == 1 }, true
	case "all":
		return func(s *runner, _ *stepView) bool { return s.count(misses) == 0 }, true
	}
	return nil, false
}

// errBail stops a condition compiled to Go at a value it does not handle; the rule's
// program then decides the step (see runner.outcome).
var errBail = errors.New("not decided in Go")

// letFast compiles let name = value; body, when value is an operand: the value is kept in
// a slot of the runner while the body runs. A name that the other forms read as the step,
// the agent or the trace is left to the machine.
func (b *builder) letFast(x *ast.VariableDeclaratorNode, root int) (fastCond, bool) {
	switch x.Name {
	case "step", "agent", "trace", "step_index", stepsName, prevName, nextName:
		return nil, false
	}
	val, ok := b.operand(x.Value, root)
	if !ok {
		return nil, false
	}
	if b.lets == nil {
		b.lets = map[string]int{}
	}
	k := b.c.slots
	b.c.slots++
	outer, had := b.lets[x.Name]
	b.lets[x.Name] = k
	body, ok := b.compileFast(x.Expr, root)
	if had {
		b.lets[x.Name] = outer
	} else {
		delete(b.lets, x.Name)
	}
	if !ok {
		return nil, false
	}
	return func(s *runner, v *stepView) bool {
		s.slots[k] = val(s, v)
		return body(s, v)
	}, true
}

// matchComputed compiles matches() of a + b over operands. Two strings are joined, with
// the concatenation charged as the machine charges it; anything else (and concat(), which
// builds a list) is left to the machine, through errBail.
func (b *builder) matchComputed(n ast.Node, pat *match.Pattern, root int) (fastCond, bool) {
	switch x := n.(type) {
	case *ast.BuiltinNode:
		if x.Name != "concat" {
			return nil, false
		}
		b.bails = true
		return func(*runner, *stepView) bool { panic(errBail) }, true
	case *ast.BinaryNode:
		if x.Operator != "+" {
			return nil, false
		}
		l, lok := b.operand(x.Left, root)
		r, rok := b.operand(x.Right, root)
		if !lok || !rok {
			return nil, false
		}
		b.bails = true
		return func(s *runner, v *stepView) bool {
			a, aok := l(s, v).(string)
			c, cok := r(s, v).(string)
			// Far under the memory limit only: near it, the machine's own count decides.
			if !aok || !cok || int64(len(a))+int64(len(c)) > s.bud.maxBytes/2 {
				panic(errBail)
			}
			return s.match(a+c, pat)
		}, true
	}
	return nil, false
}
