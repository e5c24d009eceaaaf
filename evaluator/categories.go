package evaluator

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"

	"github.com/troy-audit/troy/category"
	"github.com/troy-audit/troy/schemas"
)

// categoryName is category(step): the list of what a tool call does (see package
// category), empty for steps that are not tool calls.
const categoryName = "category"

// ToolDescriptionKey is the step metadata key that holds a tool's own description, as
// MCP's tools/list and the frameworks' tool schemas give it; category(step) reads it.
const ToolDescriptionKey = "tool_description"

// categoryCost is what one inference keeps: its list, at most one slot per category.
const categoryCost = 7 * slotBytes

// categoryArgument refuses a call of category whose argument cannot be a step: the
// checker takes any value for a function of the environment.
func categoryArgument(call *ast.CallNode, src file.Source) error {
	if len(call.Arguments) != 1 {
		return nil // the checker counts arguments
	}
	arg := call.Arguments[0]
	switch t := arg.Type(); {
	case t == nil, t.Kind() == reflect.Interface, t == reflect.TypeFor[*stepView]():
		return nil
	default:
		fe := &file.Error{Location: arg.Location(), Message: fmt.Sprintf("%s takes a step, got %s", categoryName, kindName(t))}
		return conditionError(fe.Bind(src))
	}
}

// kindName names a type as a condition's author knows it.
func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Map, reflect.Struct, reflect.Pointer:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.String:
		return "a text"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int64, reflect.Float64:
		return "a number"
	}
	return t.String()
}

// category is category(step) for the runner's policy. The result is kept on the view, so
// that the rules and predicates of one step infer once; a view is one evaluation's own.
func (s *runner) category(x any) []any {
	v, ok := x.(*stepView)
	if !ok || v == nil {
		if x == nil {
			return []any{} // get() of a step that is not there
		}
		panic(fmt.Errorf("%s takes a step, got %s", categoryName, kindName(reflect.TypeOf(x))))
	}
	if v.catsDone {
		return v.cats
	}
	st := v.step
	work := int64(categoryCost)
	if st.Type == schemas.StepToolCall {
		// The inference reads bounded prefixes: a name, a description and each argument name.
		work += int64(min(len(st.Description), category.MaxName) + category.MaxDescription + len(st.Input)*(category.MaxArg+int(slotBytes)))
	}
	if err := s.bud.charge(work, func() string { return fmt.Sprintf("%s of a step of %d arguments", categoryName, len(st.Input)) }); err != nil {
		panic(err)
	}
	names := s.c.categoriesOf(st).Names()
	v.cats = make([]any, len(names))
	for i, n := range names {
		v.cats[i] = n
	}
	v.catsDone = true
	return v.cats
}

// categoriesOf infers the categories of a step, or takes the policy's for its tool.
func (c *Compiled) categoriesOf(st *schemas.Step) category.Set {
	if st.Type != schemas.StepToolCall {
		return 0
	}
	if set, ok := c.toolCategories[strings.ToLower(st.Description)]; ok {
		return set
	}
	desc, _ := st.Metadata[ToolDescriptionKey].(string)
	args := make([]string, 0, len(st.Input))
	for k := range st.Input {
		args = append(args, k)
	}
	return category.Infer(category.Tool{Name: st.Description, Description: desc, Args: args})
}
