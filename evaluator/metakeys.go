package evaluator

import (
	"slices"
	"strings"

	"github.com/expr-lang/expr/ast"

	"github.com/troy-audit/troy/schemas"
)

// stepMetadataKeys lists the keys of a step's metadata a condition reads: step.metadata.k,
// s.metadata['k'] inside a quantifier, get(step, 'metadata.k'), and the same forms of
// converted Python conditions. The metadata of the trace and the agent is not a step's.
func stepMetadataKeys(node ast.Node) []string {
	var keys []string
	add := func(k string) {
		if k != "" && !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	ast.Walk(&node, visitor(func(n *ast.Node) {
		switch x := (*n).(type) {
		case *ast.MemberNode:
			if base, ok := x.Node.(*ast.MemberNode); ok && isMetadata(base.Property) && stepLike(base.Node) {
				if k, ok := x.Property.(*ast.StringNode); ok {
					add(k.Value)
				}
			}
		case *ast.CallNode:
			id, ok := x.Callee.(*ast.IdentifierNode)
			if !ok || len(x.Arguments) < 2 {
				return
			}
			path, ok := x.Arguments[1].(*ast.StringNode)
			if !ok {
				return
			}
			switch id.Value {
			case getName:
				if rest, ok := strings.CutPrefix(path.Value, "metadata."); ok && stepLike(x.Arguments[0]) {
					add(strings.SplitN(rest, ".", 2)[0])
				}
			case "py_get", "py_item":
				if inner, ok := x.Arguments[0].(*ast.CallNode); ok && len(inner.Arguments) == 2 {
					if f, ok := inner.Callee.(*ast.IdentifierNode); ok && f.Value == "py_item" && isMetadata(inner.Arguments[1]) && stepLike(inner.Arguments[0]) {
						add(path.Value)
					}
				}
			}
		}
	}))
	slices.Sort(keys)
	return keys
}

func isMetadata(n ast.Node) bool {
	s, ok := n.(*ast.StringNode)
	return ok && s.Value == "metadata"
}

// stepLike reports whether a node is a step: not the trace or the agent.
func stepLike(n ast.Node) bool {
	if id, ok := n.(*ast.IdentifierNode); ok {
		return id.Value != "trace" && id.Value != "agent"
	}
	return true
}

// MetadataKeys lists the keys of a step's metadata each rule reads, as (rule, key) pairs
// in rule order, so that adapters can tell their users which metadata their steps lack.
// The slice is the policy's own: read it, do not change it.
func (c *Compiled) MetadataKeys() []schemas.MissingMetadata { return c.metaKeys }
