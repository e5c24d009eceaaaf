package evaluator

import (
	"github.com/expr-lang/expr/ast"

	"github.com/troy-audit/troy/schemas/pyjson"
)

// precheck is the leading part of a condition made of tests of the step's fields against
// constants, such as step.type == 'tool_call' or step.metadata.data_classification in
// ['pii', 'phi']. Conditions evaluate left to right and stop at the first false part of an
// and, so when a test fails the rule is false and nothing after it would run: the rule is
// skipped without starting the expression machine. When the whole condition is such
// tests, it is decided without the machine at all. This is rule indexing, as policy
// engines do it; most rules apply to few steps.
type precheck struct {
	checks []check
	whole  bool // the condition is these tests and nothing else
}

// check is one test: the field at path equals one of values (or, negated, none of them).
type check struct {
	path   []string // ["type"], or ["metadata", "key"]
	key    int      // of a metadata key, its index in the runner's metadata read (see metaValue)
	values []any    // nil, string, bool, int or float64 constants
	negate bool
	// strs holds values when they are all strings, the usual case, compared without
	// going through equalConst.
	strs []string
	// typed is set for a test of the step type against strings: types has the bit of
	// each of schemas.StepTypes among them (by index), tested in place of the strings.
	typed bool
	types uint8
}

// withStrings fills strs when every value is a string.
func (c check) withStrings() check {
	strs := make([]string, 0, len(c.values))
	for _, v := range c.values {
		s, ok := v.(string)
		if !ok {
			return c
		}
		strs = append(strs, s)
	}
	c.strs = strs
	if len(c.path) == 1 {
		c.typed = true
		for _, s := range strs {
			if i := typeIndex(s); i < otherType {
				c.types |= 1 << i
			}
		}
	}
	return c
}

// Roots a precheck can test: the current step of a rule, or the element of a predicate.
const (
	stepRoot = iota
	elementRoot
)

// firstCheck finds the precheck of a condition's syntax tree, if it has one.
func firstCheck(n ast.Node, root int) *precheck {
	parts := chain(n, true, nil)
	pc := &precheck{}
	for _, part := range parts {
		c, ok := checkOf(part, root)
		if !ok {
			break
		}
		pc.checks = append(pc.checks, c)
	}
	if len(pc.checks) == 0 {
		return nil
	}
	pc.whole = len(pc.checks) == len(parts)
	return pc
}

func checkOf(n ast.Node, root int) (check, bool) {
	b, ok := n.(*ast.BinaryNode)
	if !ok {
		return check{}, false
	}
	switch b.Operator {
	case "==", "!=":
		c := check{negate: b.Operator == "!="}
		path, other := stepPath(b.Left, root), b.Right
		if path == nil {
			path, other = stepPath(b.Right, root), b.Left
		}
		v, ok := constant(other)
		if path == nil || !ok {
			return check{}, false
		}
		c.path, c.values = path, []any{v}
		return c.withStrings(), true
	case "in":
		c := check{path: stepPath(b.Left, root)}
		arr, ok := b.Right.(*ast.ArrayNode)
		if c.path == nil || !ok {
			return check{}, false
		}
		for _, e := range arr.Nodes {
			v, ok := constant(e)
			if !ok {
				return check{}, false
			}
			c.values = append(c.values, v)
		}
		return c.withStrings(), true
	}
	return check{}, false
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
	case *ast.NilNode:
		return nil, true
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

// pass reports whether every test holds at step v, comparing as expr's == does.
func (p *precheck) pass(s *runner, v *stepView) bool {
	for i := range p.checks {
		if !p.checks[i].passes(s, v) {
			return false
		}
	}
	return true
}

// passes reports whether the test holds at step v.
func (c *check) passes(s *runner, v *stepView) bool {
	if c.typed && v.typ < otherType {
		return (c.types>>v.typ)&1 != 0 != c.negate
	}
	return c.holds(c.value(s, v))
}

// value reads the field the check tests.
func (c *check) value(s *runner, v *stepView) any {
	if len(c.path) == 1 { // ["type"]
		return v.Type
	}
	return s.metaValue(v, c.key, c.path[1])
}

// metaRead holds the metadata keys prechecks read at one step: the rules of a step test
// the same few keys many times, each a lookup in a map.
type metaRead struct {
	view  *stepView
	epoch uint32 // of view: a value read at another epoch is stale
	vals  []metaVal
}

type metaVal struct {
	epoch uint32
	val   any
}

// metaValue is v.Metadata[name], read once per step (name is the policy's key number k).
func (s *runner) metaValue(v *stepView, k int, name string) any {
	m := &s.meta
	if m.view != v {
		m.view = v
		m.epoch++
		if m.epoch == 0 { // wrapped: values read 2³² steps ago would look current
			clear(m.vals)
			m.epoch = 1
		}
	}
	if e := &m.vals[k]; e.epoch == m.epoch {
		return e.val
	}
	x := v.Metadata[name]
	m.vals[k] = metaVal{m.epoch, x}
	return x
}

// keyed numbers the metadata keys pc tests, policy-wide, for metaValue.
func (b *builder) keyed(pc *precheck) *precheck {
	if pc != nil {
		for i := range pc.checks {
			pc.checks[i] = b.keyedCheck(pc.checks[i])
		}
	}
	return pc
}

func (b *builder) keyedCheck(c check) check {
	if len(c.path) != 2 {
		return c
	}
	k, ok := b.metaIndex[c.path[1]]
	if !ok {
		if b.metaIndex == nil {
			b.metaIndex = map[string]int{}
		}
		k = len(b.metaIndex)
		b.metaIndex[c.path[1]] = k
		b.c.metaRead = k + 1
	}
	c.key = k
	return c
}

func (c *check) holds(v any) bool {
	found := false
	if c.strs != nil {
		// equalConst with a string constant: equal strings only.
		if x, ok := v.(string); ok {
			for _, want := range c.strs {
				if x == want {
					found = true
					break
				}
			}
		}
		return found != c.negate
	}
	for _, want := range c.values {
		if equalConst(v, want) {
			found = true
			break
		}
	}
	return found != c.negate
}

// excludes reports whether the tests cannot all hold at a step of type typ, whatever its
// metadata: the rule need not be looked at for such steps.
func (p *precheck) excludes(typ string) bool {
	if p == nil {
		return false
	}
	for i := range p.checks {
		if c := &p.checks[i]; len(c.path) == 1 && !c.holds(boxType(typ)) {
			return true
		}
	}
	return false
}

func equalConst(v, c any) bool {
	switch c := c.(type) {
	case nil:
		return v == nil
	case string:
		s, ok := v.(string)
		return ok && s == c
	case bool:
		b, ok := v.(bool)
		return ok && b == c
	}
	if x, ok := v.(int64); ok {
		v = int(x)
	}
	n, ok := pyjson.Compare(v, c) // exact, as expr's == with the comparison rewrite
	return ok && n == 0
}
