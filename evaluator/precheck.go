package evaluator

import (
	"github.com/expr-lang/expr/ast"
)

// precheck is a rule's first condition when it compares a field of the step with
// constants, such as step.type == 'tool_call' or step.metadata.data_classification in
// ['pii', 'phi']. Conditions evaluate left to right and stop at the first false part of an
// and, so when the precheck fails the rule is false and nothing else in it would run: it
// is skipped without starting the expression machine. This is rule indexing, as policy
// engines do it; most rules apply to few steps.
type precheck struct {
	path   []string // ["type"], or ["metadata", "key"]
	values []any    // string, bool, int or float64 constants
}

// Roots a precheck can test: the current step of a rule, or the element of a predicate.
const (
	stepRoot = iota
	elementRoot
)

// firstCheck finds the precheck of a condition's syntax tree, if it has one.
func firstCheck(n ast.Node, root int) *precheck {
	for {
		b, ok := n.(*ast.BinaryNode)
		if !ok || (b.Operator != "and" && b.Operator != "&&") {
			break
		}
		n = b.Left
	}
	b, ok := n.(*ast.BinaryNode)
	if !ok {
		return nil
	}
	switch b.Operator {
	case "==":
		if p := stepPath(b.Left, root); p != nil {
			if v, ok := constant(b.Right); ok {
				return &precheck{path: p, values: []any{v}}
			}
		}
		if p := stepPath(b.Right, root); p != nil {
			if v, ok := constant(b.Left); ok {
				return &precheck{path: p, values: []any{v}}
			}
		}
	case "in":
		p := stepPath(b.Left, root)
		arr, ok := b.Right.(*ast.ArrayNode)
		if p == nil || !ok {
			return nil
		}
		pc := &precheck{path: p}
		for _, e := range arr.Nodes {
			v, ok := constant(e)
			if !ok {
				return nil
			}
			pc.values = append(pc.values, v)
		}
		return pc
	}
	return nil
}

// isRoot reports whether n is the root a precheck tests: the identifier step, or #.
func isRoot(n ast.Node, root int) bool {
	if root == elementRoot {
		p, ok := n.(*ast.PointerNode)
		return ok && p.Name == ""
	}
	id, ok := n.(*ast.IdentifierNode)
	return ok && id.Value == "step"
}

// stepPath recognizes step.type, step['type'], step.metadata.key and get(step, 'type') or
// get(step, 'metadata.key'), the forms whose value is a field of the step or nil (with #,
// or a leading dot, in place of step in predicates).
func stepPath(n ast.Node, root int) []string {
	switch x := n.(type) {
	case *ast.MemberNode:
		if x.Optional || x.Method {
			return nil
		}
		prop, ok := x.Property.(*ast.StringNode)
		if !ok {
			return nil
		}
		if isRoot(x.Node, root) && prop.Value == "type" {
			return []string{"type"}
		}
		inner, ok := x.Node.(*ast.MemberNode)
		if !ok || inner.Optional || inner.Method {
			return nil
		}
		mid, ok := inner.Property.(*ast.StringNode)
		if ok && isRoot(inner.Node, root) && mid.Value == "metadata" {
			return []string{"metadata", prop.Value}
		}
	case *ast.CallNode:
		id, ok := x.Callee.(*ast.IdentifierNode)
		if !ok || id.Value != getName || len(x.Arguments) != 2 {
			return nil
		}
		path, ok := x.Arguments[1].(*ast.StringNode)
		if !ok || !isRoot(x.Arguments[0], root) {
			return nil
		}
		switch p := splitPath(path.Value); {
		case len(p) == 1 && p[0] == "type":
			return p
		case len(p) == 2 && p[0] == "metadata":
			return p
		}
	}
	return nil
}

func splitPath(p string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '.' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return out
}

func constant(n ast.Node) (any, bool) {
	switch x := n.(type) {
	case *ast.StringNode:
		return x.Value, true
	case *ast.BoolNode:
		return x.Value, true
	case *ast.IntegerNode:
		return x.Value, true
	case *ast.FloatNode:
		return x.Value, true
	}
	return nil, false
}

// pass reports whether the step's field equals one of the constants, as expr's == does.
func (p *precheck) pass(s *stepView) bool {
	var v any
	if p.path[0] == "type" {
		v = s.Type
	} else {
		v = s.Metadata[p.path[1]]
	}
	for _, c := range p.values {
		if equalConst(v, c) {
			return true
		}
	}
	return false
}

func equalConst(v, c any) bool {
	switch c := c.(type) {
	case string:
		s, ok := v.(string)
		return ok && s == c
	case bool:
		b, ok := v.(bool)
		return ok && b == c
	}
	cf, _ := number(c)
	vf, ok := number(v)
	return ok && vf == cf
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case float64:
		return x, true
	case int64:
		return float64(x), true
	}
	return 0, false
}
