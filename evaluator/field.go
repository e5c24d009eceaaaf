package evaluator

import (
	"reflect"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm/runtime"
)

// fieldPatcher rewrites member access (a.b, a['b']) on the values conditions see into calls
// of field, which reads maps and the condition types directly. expr reaches them through
// reflection, which is most of the cost of a typical condition. Accesses the checker could
// not type, optional chains (a?.b) and method calls are left alone.
type fieldPatcher struct{}

func (fieldPatcher) Visit(n *ast.Node) {
	m, ok := (*n).(*ast.MemberNode)
	if !ok || m.Optional || m.Method {
		return
	}
	if !fastBase(m.Node.Type(), m.Property) {
		return
	}
	call := &ast.CallNode{
		Callee:    &ast.IdentifierNode{Value: fieldName},
		Arguments: []ast.Node{m.Node, m.Property},
	}
	call.Callee.SetLocation(m.Location())
	// Typed here because the checker does not revisit a call it finds already typed, as
	// arguments of env functions are, and an untyped callee compiles to a reflective call.
	call.Callee.SetType(reflect.TypeFor[func(base, key any) any]())
	ast.Patch(n, call)
}

// fastBase reports whether field handles member access on a value of type t: maps, values
// of unknown type (handled at run time), and the known fields of the condition types.
func fastBase(t reflect.Type, prop ast.Node) bool {
	switch t {
	case reflect.TypeFor[any](), reflect.TypeFor[map[string]any]():
		return true
	}
	s, ok := prop.(*ast.StringNode)
	if !ok {
		return false
	}
	switch t {
	case reflect.TypeFor[*stepView](), reflect.TypeFor[*TraceInfo](), reflect.TypeFor[*AgentInfo]():
		return hasField(t, s.Value)
	}
	return false
}

// hasField reports whether the struct t points to has a field conditions know as name.
func hasField(t reflect.Type, name string) bool {
	for f := range t.Elem().Fields() {
		if f.IsExported() && f.Tag.Get("expr") == name {
			return true
		}
	}
	return false
}

// field is base.key as expr computes it, without reflection for the common cases.
func field(base, key any) any {
	if k, ok := key.(string); ok {
		switch b := base.(type) {
		case map[string]any:
			return b[k]
		case *stepView:
			if b != nil {
				switch k {
				case "step_id":
					return b.StepID
				case "type":
					return b.Type
				case "description":
					return b.Description
				case "input":
					return b.Input
				case "output":
					return b.Output
				case "metadata":
					return b.Metadata
				case "timestamp":
					return b.Timestamp
				case "parent_step_id":
					return b.ParentStepID
				}
			}
		case *TraceInfo:
			if b != nil {
				switch k {
				case "trace_id":
					return b.TraceID
				case "agent_name":
					return b.AgentName
				case "metadata":
					return b.Metadata
				}
			}
		case *AgentInfo:
			if b != nil {
				switch k {
				case "name":
					return b.Name
				case "metadata":
					return b.Metadata
				}
			}
		}
	}
	return runtime.Fetch(base, key)
}
