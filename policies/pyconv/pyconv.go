// Package pyconv converts policy conditions written for the Python tool (Python
// expressions) into troy's condition language (expr), with Python's semantics kept: the
// output calls the evaluator's py_* functions wherever expr would differ (truthiness,
// equality, membership, str(), missing keys).
//
// It parses with gpython's parser (assignment expressions are rewritten first, see
// walrus.go) and translates a documented subset; anything else is an error naming the
// construct and where it is, never a guess. Where the Python tool's own evaluation fails
// (a name its namespace lacks, operand types that raise), the output fails at the same
// place and the conversion warns.
package pyconv

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/go-python/gpython/ast"
	"github.com/go-python/gpython/parser"
	"github.com/go-python/gpython/py"

	exprparser "github.com/expr-lang/expr/parser"
)

// Error is a condition that cannot be converted.
type Error struct {
	Line, Col int // 1-based; 0 when unknown
	Msg       string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Col, e.Msg)
	}
	return e.Msg
}

// globals are the names a condition reads, the same in both dialects.
var globals = map[string]bool{"step": true, "steps": true, "step_index": true, "prev_steps": true, "next_steps": true, "trace": true, "agent": true}

// helpers are the functions of the Python tool's namespace; with True, False, None and the
// globals, they are all a condition can name. No other builtin is there.
var helpers = map[string]bool{"get": true, "matches": true, "str": true, "any_step": true, "any_next": true, "any_prev": true}

// lambdaHelpers map the Python tool's step quantifiers to the list they range over.
var lambdaHelpers = map[string]string{"any_step": "steps", "any_next": "next_steps", "any_prev": "prev_steps"}

// Warning is a place where the Python tool's rule fails at run time, found without running
// it: a name the Python tool's namespace does not have, or an operation whose operand types
// make Python raise. The converted condition fails at the same place (a rule error, no
// violation), as the Python tool's does.
type Warning struct {
	Line, Col int // 1-based; 0 when unknown
	Msg       string
}

func (w Warning) String() string {
	if w.Line > 0 {
		return fmt.Sprintf("line %d, column %d: %s", w.Line, w.Col, w.Msg)
	}
	return w.Msg
}

// Result is a converted condition and what the conversion found.
type Result struct {
	Expr     string
	Warnings []Warning
}

// Convert rewrites one Python condition as an expr condition.
func Convert(src string) (string, error) {
	r, err := Translate(src)
	return r.Expr, err
}

// Translate rewrites one Python condition as an expr condition, with warnings for where the
// Python tool's rule fails at run time.
func Translate(src string) (res Result, err error) {
	defer func() {
		if r := recover(); r != nil { // the parser panics on some inputs; never let it out
			res, err = Result{}, &Error{Msg: fmt.Sprintf("not a Python expression (%v)", r)}
		}
	}()
	trimmed := strings.TrimSpace(src)
	if trimmed == "" {
		return Result{}, &Error{Msg: "empty condition"}
	}
	if strings.Contains(trimmed, walrusName) {
		return Result{}, &Error{Msg: "unknown name " + walrusName}
	}
	hidden, back, err := hideWalrus(strings.ReplaceAll(trimmed, "\n", " "))
	if err != nil {
		return Result{}, err
	}
	defer func() {
		// Columns of the rewritten text, back to the author's.
		var e *Error
		if errors.As(err, &e) && e.Line > 0 {
			e.Col = back(e.Col)
		}
		for i := range res.Warnings {
			if res.Warnings[i].Line > 0 {
				res.Warnings[i].Col = back(res.Warnings[i].Col)
			}
		}
	}()
	tree, err := parser.ParseString(hidden, py.EvalMode)
	if err != nil {
		msg := strings.TrimSpace(strings.SplitN(err.Error(), "\n", 2)[0])
		if looksLikeFString(trimmed) {
			msg = "unsupported: f-strings"
		}
		return Result{}, &Error{Msg: "not a Python expression: " + msg}
	}
	e, ok := tree.(*ast.Expression)
	if !ok {
		return Result{}, &Error{Msg: "not a single Python expression"}
	}
	c := &converter{}
	top, err := c.enter(nil, nil, e.Body)
	if err != nil {
		return Result{}, err
	}
	c.cur = top
	out, err := c.cond(e.Body)
	if err != nil {
		return Result{}, err
	}
	if top.frame != "" {
		out = fmt.Sprintf("(let %s = py_frame(); %s)", top.frame, out)
	}
	return Result{Expr: out, Warnings: c.warnings}, nil
}

func looksLikeFString(s string) bool {
	for i := 0; i+1 < len(s); i++ {
		if (s[i] == 'f' || s[i] == 'F') && (s[i+1] == '\'' || s[i+1] == '"') && (i == 0 || !isIdent(s[i-1])) {
			return true
		}
	}
	return false
}

func isIdent(b byte) bool {
	return b == '_' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

type converter struct {
	cur      *scope
	n        int
	warnings []Warning
}

// scope is the top of the condition or a lambda's body: Python's scopes for names.
type scope struct {
	parent   *scope
	params   map[string]string // a lambda's parameters → expr names
	assigned map[string]bool   // names bound by := in this scope (not in lambdas within)
	frame    string            // the expr name of the scope's frame, where := stores; "" if none
}

// enter makes the scope of a body: its parameters, and the names its := bind.
func (c *converter) enter(parent *scope, params map[string]string, body ast.Expr) (*scope, error) {
	s := &scope{parent: parent, params: params, assigned: map[string]bool{}}
	var err error
	ast.Walk(body, func(n ast.Ast) bool {
		if _, ok := n.(*ast.Lambda); ok {
			return false // its own scope
		}
		name, ok := walrusTarget(n)
		if !ok {
			return true
		}
		switch {
		case err != nil:
		case params[name] != "":
			err = fail(n, "unsupported: := rebinding the lambda's parameter %s", name)
		case parent == nil && (globals[name] || helpers[name]):
			err = fail(n, "unsupported: := rebinding %s, a name of the Python tool's namespace", name)
		}
		s.assigned[name] = true
		return true
	})
	if len(s.assigned) > 0 {
		s.frame = c.fresh()
	}
	return s, err
}

// walrusTarget is the name an assignment expression binds, if n is one.
func walrusTarget(n ast.Ast) (string, bool) {
	call, ok := n.(*ast.Call)
	if !ok {
		return "", false
	}
	f, ok := call.Func.(*ast.Name)
	if !ok || string(f.Id) != walrusName || len(call.Args) != 2 {
		return "", false
	}
	name, ok := call.Args[0].(*ast.Str)
	if !ok {
		return "", false
	}
	return string(name.S), true
}

func (c *converter) fresh() string {
	c.n++
	return fmt.Sprintf("_py%d", c.n)
}

func (c *converter) warn(n ast.Ast, format string, args ...any) {
	e := fail(n, format, args...).(*Error)
	c.warnings = append(c.warnings, Warning{Line: e.Line, Col: e.Col, Msg: e.Msg})
}

func fail(n ast.Ast, format string, args ...any) error {
	e := &Error{Msg: fmt.Sprintf(format, args...)}
	// Every expression node embeds ast.Pos.
	if pos, ok := n.(interface {
		GetLineno() int
		GetColOffset() int
	}); ok {
		e.Line, e.Col = pos.GetLineno(), pos.GetColOffset()+1
	}
	return e
}

// cond translates n where Python takes its truth value: the result is an expr bool.
func (c *converter) cond(n ast.Expr) (string, error) {
	switch x := n.(type) {
	case *ast.BoolOp:
		parts := make([]string, len(x.Values))
		for i, v := range x.Values {
			p, err := c.cond(v)
			if err != nil {
				return "", err
			}
			parts[i] = p
		}
		op := " && "
		if x.Op == ast.Or {
			op = " || "
		}
		return "(" + strings.Join(parts, op) + ")", nil
	case *ast.UnaryOp:
		if x.Op == ast.Not {
			p, err := c.cond(x.Operand)
			if err != nil {
				return "", err
			}
			return "!" + p, nil
		}
	case *ast.Compare:
		return c.compare(x)
	case *ast.NameConstant:
		// Through a call, so that expr does not fold "x or True" into true without
		// evaluating x, which Python does (and which may raise).
		if x.Value == py.True {
			return "py_truth(true)", nil
		}
		return "py_truth(false)", nil
	case *ast.Call:
		if s, ok, err := c.quantifier(x); ok || err != nil {
			return s, err
		}
	}
	v, err := c.value(n)
	if err != nil {
		return "", err
	}
	return "py_truth(" + v + ")", nil
}

// value translates n where Python uses its value.
func (c *converter) value(n ast.Expr) (string, error) {
	switch x := n.(type) {
	case *ast.BoolOp:
		// Python's and/or give one of their operands, evaluated at most once.
		return c.boolValue(x.Op, x.Values)
	case *ast.UnaryOp:
		switch x.Op {
		case ast.Not:
			return c.cond(x)
		case ast.USub, ast.UAdd:
			v, err := c.value(x.Operand)
			if err != nil {
				return "", err
			}
			if x.Op == ast.USub {
				return "py_sub(0, " + v + ")", nil
			}
			return "py_sub(" + v + ", 0)", nil // +x: a number, or TypeError
		}
		return "", fail(n, "unsupported: the ~ operator")
	case *ast.Compare:
		return c.compare(x)
	case *ast.IfExp:
		t, err := c.cond(x.Test)
		if err != nil {
			return "", err
		}
		a, err := c.value(x.Body)
		if err != nil {
			return "", err
		}
		b, err := c.value(x.Orelse)
		if err != nil {
			return "", err
		}
		return "(" + t + " ? " + a + " : " + b + ")", nil
	case *ast.BinOp:
		a, err := c.value(x.Left)
		if err != nil {
			return "", err
		}
		b, err := c.value(x.Right)
		if err != nil {
			return "", err
		}
		switch x.Op {
		case ast.Add:
			c.checkTypes(x, "+", x.Left, x.Right, "strings, both lists or both numbers")
			return "py_add(" + a + ", " + b + ")", nil
		case ast.Sub:
			c.checkTypes(x, "-", x.Left, x.Right, "numbers")
			return "py_sub(" + a + ", " + b + ")", nil
		}
		return "", fail(n, "unsupported: arithmetic other than + and -")
	case *ast.Num:
		switch v := x.N.(type) {
		case py.Int:
			return strconv.FormatInt(int64(v), 10), nil
		case py.Float:
			if math.IsInf(float64(v), 0) { // 1e999: expr has no literal for it
				return `py_float("inf")`, nil
			}
			s := strconv.FormatFloat(float64(v), 'g', -1, 64)
			if !strings.ContainsAny(s, ".eEn") {
				s += ".0"
			}
			return s, nil
		}
		return "", fail(n, "unsupported: this number literal")
	case *ast.Str:
		return strconv.Quote(string(x.S)), nil
	case *ast.Bytes:
		return "", fail(n, "unsupported: bytes literals")
	case *ast.NameConstant:
		switch x.Value {
		case py.True:
			return "true", nil
		case py.False:
			return "false", nil
		}
		return "nil", nil
	case *ast.Name:
		return c.name(x)
	case *ast.List:
		return c.list(x.Elts)
	case *ast.Tuple:
		return c.list(x.Elts)
	case *ast.Dict:
		parts := make([]string, len(x.Keys))
		for i, k := range x.Keys {
			ks, ok := k.(*ast.Str)
			if !ok {
				return "", fail(k, "unsupported: dict keys other than strings")
			}
			v, err := c.value(x.Values[i])
			if err != nil {
				return "", err
			}
			parts[i] = strconv.Quote(string(ks.S)) + ": " + v
		}
		return "{" + strings.Join(parts, ", ") + "}", nil
	case *ast.Subscript:
		return c.subscript(x)
	case *ast.Call:
		return c.call(x)
	case *ast.Attribute:
		return "", fail(n, "unsupported: attribute access .%s (only .get(...) on a dict)", x.Attr)
	case *ast.Lambda:
		return "", fail(n, "unsupported: lambda outside any_step, any_next and any_prev")
	case *ast.GeneratorExp, *ast.ListComp, *ast.SetComp, *ast.DictComp:
		return "", fail(n, "unsupported: comprehensions (and all(), any() and len() are not in the Python tool's namespace)")
	case *ast.Set:
		return "", fail(n, "unsupported: set literals")
	case *ast.Starred:
		return "", fail(n, "unsupported: * unpacking")
	}
	return "", fail(n, "unsupported: %s", strings.TrimPrefix(fmt.Sprintf("%T", n), "*ast."))
}

// name reads a name as Python resolves it: a lambda's parameter or a name bound by := in
// this scope or an enclosing one, then the Python tool's namespace. Anything else is
// Python's NameError when the condition reaches it.
func (c *converter) name(x *ast.Name) (string, error) {
	id := string(x.Id)
	for s := c.cur; s != nil; s = s.parent {
		if local, ok := s.params[id]; ok {
			return local, nil
		}
		if s.assigned[id] {
			return fmt.Sprintf("py_load(%s, %q)", s.frame, id), nil
		}
	}
	if globals[id] {
		return id, nil
	}
	if helpers[id] {
		return "", fail(x, "unsupported: %s other than called", id)
	}
	return c.nameError(x, id, ""), nil
}

// nameError is a name the Python tool's namespace lacks: the condition raises NameError
// where it reaches it, and the converter says so.
func (c *converter) nameError(n ast.Ast, id, call string) string {
	what := "the name " + id
	if call != "" {
		what = id + "()"
	}
	c.warn(n, "%s is not in the Python tool's condition namespace (step, steps, step_index, prev_steps, next_steps, trace, agent, get, matches, str, any_step, any_next, any_prev): it raises NameError wherever it is reached, so the rule never fires there", what)
	return fmt.Sprintf("py_error(%q)", "NameError: name '"+id+"' is not defined")
}

func (c *converter) list(elts []ast.Expr) (string, error) {
	parts := make([]string, len(elts))
	for i, e := range elts {
		v, err := c.value(e)
		if err != nil {
			return "", err
		}
		parts[i] = v
	}
	return "[" + strings.Join(parts, ", ") + "]", nil
}

func (c *converter) boolValue(op ast.BoolOpNumber, values []ast.Expr) (string, error) {
	first, err := c.value(values[0])
	if err != nil {
		return "", err
	}
	if len(values) == 1 {
		return first, nil
	}
	rest, err := c.boolValue(op, values[1:])
	if err != nil {
		return "", err
	}
	t := c.fresh()
	if op == ast.And {
		return fmt.Sprintf("(let %s = %s; py_truth(%s) ? %s : %s)", t, first, t, rest, t), nil
	}
	return fmt.Sprintf("(let %s = %s; py_truth(%s) ? %s : %s)", t, first, t, t, rest), nil
}

func (c *converter) compare(x *ast.Compare) (string, error) {
	left, err := c.value(x.Left)
	if err != nil {
		return "", err
	}
	var parts []string
	var lets []string
	leftNode := x.Left
	for i, op := range x.Ops {
		right, err := c.value(x.Comparators[i])
		if err != nil {
			return "", err
		}
		if i < len(x.Ops)-1 { // a chained operand is evaluated once
			t := c.fresh()
			lets = append(lets, fmt.Sprintf("let %s = %s; ", t, right))
			right = t
		}
		c.checkCompare(x, op, leftNode, x.Comparators[i])
		leftNode = x.Comparators[i]
		p, err := c.cmp(x.Comparators[i], op, left, right)
		if err != nil {
			return "", err
		}
		parts = append(parts, p)
		left = right
	}
	if len(parts) == 1 {
		return parts[0], nil
	}
	// Each let is placed before the comparison that first needs it, keeping Python's
	// short-circuit: a < b < c evaluates c only when a < b.
	out := parts[len(parts)-1]
	for i := len(parts) - 2; i >= 0; i-- {
		out = "(" + lets[i] + parts[i] + " && " + out + ")"
	}
	return out, nil
}

func (c *converter) cmp(rightNode ast.Expr, op ast.CmpOp, a, b string) (string, error) {
	switch op {
	case ast.Eq:
		return "py_eq(" + a + ", " + b + ")", nil
	case ast.NotEq:
		return "!py_eq(" + a + ", " + b + ")", nil
	case ast.Lt, ast.LtE, ast.Gt, ast.GtE:
		sym := map[ast.CmpOp]string{ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}[op]
		return fmt.Sprintf("py_cmp(%q, %s, %s)", sym, a, b), nil
	case ast.In:
		return "py_in(" + a + ", " + b + ")", nil
	case ast.NotIn:
		return "!py_in(" + a + ", " + b + ")", nil
	case ast.Is, ast.IsNot:
		if _, ok := rightNode.(*ast.NameConstant); !ok {
			return "", fail(rightNode, "unsupported: 'is' other than with None, True or False")
		}
		s := "py_is(" + a + ", " + b + ")"
		if op == ast.IsNot {
			s = "!" + s
		}
		return s, nil
	}
	return "", fail(rightNode, "unsupported comparison")
}

func (c *converter) subscript(x *ast.Subscript) (string, error) {
	v, err := c.value(x.Value)
	if err != nil {
		return "", err
	}
	switch s := x.Slice.(type) {
	case *ast.Index:
		k, err := c.value(s.Value)
		if err != nil {
			return "", err
		}
		return "py_item(" + v + ", " + k + ")", nil
	case *ast.Slice:
		if s.Step != nil {
			return "", fail(x, "unsupported: slices with a step")
		}
		lo, hi := "nil", "nil"
		if s.Lower != nil {
			if lo, err = c.value(s.Lower); err != nil {
				return "", err
			}
		}
		if s.Upper != nil {
			if hi, err = c.value(s.Upper); err != nil {
				return "", err
			}
		}
		return "py_slice(" + v + ", " + lo + ", " + hi + ")", nil
	}
	return "", fail(x, "unsupported: extended slices")
}

// quantifier translates any_step/any_next/any_prev(lambda s: ...); ok is false for other
// calls.
func (c *converter) quantifier(x *ast.Call) (string, bool, error) {
	name, ok := x.Func.(*ast.Name)
	if !ok || c.shadowed(string(name.Id)) {
		return "", false, nil
	}
	fn := string(name.Id)
	list, ok := lambdaHelpers[fn]
	if !ok {
		return "", false, nil
	}
	if len(x.Args) != 1 || len(x.Keywords) > 0 || x.Starargs != nil || x.Kwargs != nil {
		return "", true, fail(x, "%s takes one lambda", fn)
	}
	l, ok := x.Args[0].(*ast.Lambda)
	if !ok || len(l.Args.Args) != 1 || l.Args.Vararg != nil || l.Args.Kwarg != nil || len(l.Args.Kwonlyargs) > 0 || len(l.Args.Defaults) > 0 {
		return "", true, fail(x, "%s takes a lambda of one argument", fn)
	}
	local := c.fresh()
	inner, err := c.enter(c.cur, map[string]string{string(l.Args.Args[0].Arg): local}, l.Body)
	if err != nil {
		return "", true, err
	}
	outer := c.cur
	c.cur = inner
	body, err := c.cond(l.Body)
	c.cur = outer
	if err != nil {
		return "", true, err
	}
	if inner.frame != "" {
		body = fmt.Sprintf("let %s = py_frame(); %s", inner.frame, body)
	}
	return fmt.Sprintf("any(%s, {let %s = #; %s})", list, local, body), true, nil
}

// shadowed reports whether a name is a lambda's parameter or bound by := where it is read.
func (c *converter) shadowed(id string) bool {
	for s := c.cur; s != nil; s = s.parent {
		if _, ok := s.params[id]; ok || s.assigned[id] {
			return true
		}
	}
	return false
}

func (c *converter) call(x *ast.Call) (string, error) {
	if s, ok, err := c.quantifier(x); ok || err != nil {
		if err != nil {
			return "", err
		}
		return s, nil
	}
	if target, ok := walrusTarget(x); ok {
		v, err := c.value(x.Args[1])
		if err != nil {
			return "", err
		}
		for s := c.cur; s != nil; s = s.parent {
			if s.assigned[target] {
				return fmt.Sprintf("py_set(%s, %q, %s)", s.frame, target, v), nil
			}
		}
		return "", fail(x, "internal error: no scope binds %s", target) // enter saw every :=
	}
	if f, ok := x.Func.(*ast.Name); ok && !c.shadowed(string(f.Id)) && !helpers[string(f.Id)] && !globals[string(f.Id)] {
		// Python looks the function up before it evaluates the arguments.
		return c.nameError(f, string(f.Id), "call"), nil
	}
	if len(x.Keywords) > 0 || x.Starargs != nil || x.Kwargs != nil {
		return "", fail(x, "unsupported: keyword or * arguments")
	}
	args := make([]string, len(x.Args))
	for i, a := range x.Args {
		v, err := c.value(a)
		if err != nil {
			return "", err
		}
		args[i] = v
	}
	switch f := x.Func.(type) {
	case *ast.Attribute:
		if string(f.Attr) != "get" {
			return "", fail(x, "unsupported: method .%s() (only .get(...) on a dict)", f.Attr)
		}
		if len(args) < 1 || len(args) > 2 {
			return "", fail(x, ".get() takes a key and an optional default")
		}
		d, err := c.value(f.Value)
		if err != nil {
			return "", err
		}
		def := "nil"
		if len(args) == 2 {
			def = args[1]
		}
		return "py_get(" + d + ", " + args[0] + ", " + def + ")", nil
	case *ast.Name:
		want := map[string][2]int{"str": {1, 1}, "get": {2, 3}, "matches": {2, 2}}
		fn := string(f.Id)
		n, ok := want[fn]
		if !ok || c.shadowed(fn) {
			return "", fail(x, "unsupported: call of %s()", fn)
		}
		if len(args) < n[0] || len(args) > n[1] {
			return "", fail(x, "%s() takes %d to %d arguments, not %d", fn, n[0], n[1], len(args))
		}
		switch fn {
		case "str":
			return "py_str(" + args[0] + ")", nil
		case "matches":
			// The Python tool searches str() of the value: Python's repr of anything not a
			// string (None, True, 0.5, lists and dicts as Python writes them).
			if c.kind(x.Args[0]) != "str" {
				args[0] = "py_str(" + args[0] + ")"
			}
			return "matches(" + args[0] + ", " + args[1] + ")", nil
		}
		if _, ok := x.Args[1].(*ast.Str); !ok {
			args[1] = "py_path(" + args[1] + ")" // the Python tool splits it: a str or AttributeError
		}
		return "get(" + strings.Join(args, ", ") + ")", nil
	}
	return "", fail(x, "unsupported: calling this expression")
}

// The dialect of a policy is decided for the whole file, by these rules in order:
//
//  1. A condition that is not a Python expression makes the policy expr.
//  2. Otherwise a condition that is not an expr expression makes it Python.
//  3. Otherwise (every condition is both) a form that only expr gives a meaning to makes it
//     expr: attribute access such as step.type (a Python dict has no attributes; only
//     .get(...) is Python) and the names nil, true and false (unknown to Python).
//  4. Otherwise a form whose meaning differs between the two makes it Python: subscripts
//     (step['x'] on a missing key raises KeyError in Python and is nil in expr), and, or
//     and not with an operand that is not a comparison or another test (Python gives the
//     operand itself and takes the truth of any value), == and != with no string literal
//     on either side (unless both are plain numbers such as step_index and 2) and in over
//     a list with an item that is not a string (Python's 1 == True == 1.0), and the Python words None, True, False, is, lambda, if/else and
//     the helpers any_step, any_next and any_prev.
//  5. Otherwise the conditions mean the same in both, and the policy is taken as expr.

// LooksLikePython reports whether a policy's conditions are written in the Python tool's
// dialect, by the rules above.
func LooksLikePython(conds []string) bool {
	trees := make([]ast.Expr, len(conds))
	for i, c := range conds {
		t, ok := parsePython(c)
		if !ok {
			return false
		}
		trees[i] = t
	}
	for _, c := range conds {
		if !parsesAsExpr(c) {
			return true
		}
	}
	for _, t := range trees {
		if exprOnly(t) {
			return false
		}
	}
	for _, t := range trees {
		if meaningDiffers(t) {
			return true
		}
	}
	return false
}

func parsePython(src string) (e ast.Expr, ok bool) {
	defer func() {
		if recover() != nil {
			e, ok = nil, false
		}
	}()
	src = strings.TrimSpace(src)
	if src == "" || strings.Contains(src, walrusName) {
		return nil, false
	}
	hidden, _, err := hideWalrus(strings.ReplaceAll(src, "\n", " "))
	if err != nil {
		return nil, false
	}
	tree, err := parser.ParseString(hidden, py.EvalMode)
	if err != nil {
		return nil, false
	}
	x, ok := tree.(*ast.Expression)
	if !ok {
		return nil, false
	}
	return x.Body, true
}

// matchesCall finds matches(...) called as a function, which expr reads as its infix
// operator unless renamed (the evaluator does the same).
var matchesCall = regexp.MustCompile(`\bmatches(\s*\()`)

func parsesAsExpr(src string) bool {
	_, err := exprparser.Parse(matchesCall.ReplaceAllString(src, "Matches$1"))
	return err == nil
}

func exprOnly(t ast.Expr) bool {
	found := false
	ast.Walk(t, func(n ast.Ast) bool {
		switch x := n.(type) {
		case *ast.Attribute:
			if string(x.Attr) != "get" {
				found = true
			}
		case *ast.Name:
			switch string(x.Id) {
			case "nil", "true", "false":
				found = true
			}
		}
		return !found
	})
	return found
}

func meaningDiffers(t ast.Expr) bool {
	found := false
	ast.Walk(t, func(n ast.Ast) bool {
		switch x := n.(type) {
		case *ast.Subscript, *ast.NameConstant, *ast.Lambda, *ast.IfExp:
			found = true
		case *ast.Name:
			if lambdaHelpers[string(x.Id)] != "" {
				found = true
			}
		case *ast.Call:
			if a, ok := x.Func.(*ast.Attribute); ok && string(a.Attr) == "get" {
				found = true
			}
		case *ast.BoolOp:
			for _, v := range x.Values {
				found = found || !isTest(v)
			}
		case *ast.UnaryOp:
			found = found || x.Op == ast.Not && !isTest(x.Operand)
		case *ast.Compare:
			operands := append([]ast.Expr{x.Left}, x.Comparators...)
			for i, op := range x.Ops {
				switch op {
				case ast.Is, ast.IsNot:
					found = true
				case ast.Eq, ast.NotEq:
					// A string equals only a string in both; anything else may be a number
					// or a bool, where Python's 1 == True == 1.0 holds.
					l, r := operands[i], operands[i+1]
					found = found || !isStr(l) && !isStr(r) && !(plainNumber(l) && plainNumber(r))
				case ast.In, ast.NotIn:
					found = found || hasNonString(operands[i+1])
				}
			}
		}
		return !found
	})
	return found
}

// isTest reports whether n gives a bool in both dialects.
func isTest(n ast.Expr) bool {
	switch x := n.(type) {
	case *ast.Compare:
		return true
	case *ast.BoolOp:
		for _, v := range x.Values {
			if !isTest(v) {
				return false
			}
		}
		return true
	case *ast.UnaryOp:
		return x.Op == ast.Not && isTest(x.Operand)
	case *ast.Call:
		f, ok := x.Func.(*ast.Name)
		return ok && string(f.Id) == "matches"
	}
	return false
}

// plainNumber is a number that is never a bool in either dialect: a literal, step_index,
// and sums and differences of them.
func plainNumber(n ast.Expr) bool {
	switch x := n.(type) {
	case *ast.Num:
		return true
	case *ast.Name:
		return string(x.Id) == "step_index"
	case *ast.UnaryOp:
		return (x.Op == ast.USub || x.Op == ast.UAdd) && plainNumber(x.Operand)
	case *ast.BinOp:
		return (x.Op == ast.Add || x.Op == ast.Sub) && plainNumber(x.Left) && plainNumber(x.Right)
	}
	return false
}

func isStr(n ast.Expr) bool {
	_, ok := n.(*ast.Str)
	return ok
}

// hasNonString reports whether n is a list or tuple literal with an item that is not a
// string: membership then uses Python's equality of numbers and bools.
func hasNonString(n ast.Expr) bool {
	var elts []ast.Expr
	switch x := n.(type) {
	case *ast.List:
		elts = x.Elts
	case *ast.Tuple:
		elts = x.Elts
	}
	for _, e := range elts {
		if !isStr(e) {
			return true
		}
	}
	return false
}

// kind is the Python type of what n gives, when it is known without a trace: "" when it
// depends on the trace.
func (c *converter) kind(n ast.Expr) string {
	switch x := n.(type) {
	case *ast.Str:
		return "str"
	case *ast.Num:
		if _, ok := x.N.(py.Int); ok {
			return "int"
		}
		return "float"
	case *ast.NameConstant:
		switch x.Value {
		case py.True, py.False:
			return "bool"
		}
		return "NoneType"
	case *ast.List:
		return "list"
	case *ast.Tuple:
		return "tuple"
	case *ast.Dict:
		return "dict"
	case *ast.Compare:
		return "bool"
	case *ast.UnaryOp:
		if x.Op == ast.Not {
			return "bool"
		}
		if k := c.kind(x.Operand); k == "int" || k == "float" {
			return k
		}
	case *ast.Subscript:
		// A step's own fields: step['type'] and, in a quantifier's lambda, s['type'].
		v, isName := x.Value.(*ast.Name)
		ix, isIndex := x.Slice.(*ast.Index)
		if !isName || !isIndex || !c.isStep(string(v.Id)) {
			return ""
		}
		if k, ok := ix.Value.(*ast.Str); ok {
			switch string(k.S) {
			case "step_id", "type", "description":
				return "str"
			case "input", "output", "metadata":
				return "dict"
			}
		}
	case *ast.Name:
		id := string(x.Id)
		if c.shadowed(id) {
			return ""
		}
		if !globals[id] {
			return "!" // NameError: nothing after it runs
		}
		switch id {
		case "step_index":
			return "int"
		case "steps", "prev_steps", "next_steps":
			return "list"
		case "step", "trace", "agent":
			return "dict"
		}
	case *ast.Call:
		if f, ok := x.Func.(*ast.Name); ok && !c.shadowed(string(f.Id)) {
			switch string(f.Id) {
			case "str":
				return "str"
			case "matches", "any_step", "any_next", "any_prev":
				return "bool"
			case "get":
				return ""
			}
			if !globals[string(f.Id)] {
				return "!"
			}
		}
	case *ast.BinOp:
		a, b := c.kind(x.Left), c.kind(x.Right)
		if a == b && (a == "str" || a == "list" || a == "int" || a == "float") {
			return a
		}
		if numberKind(a) && numberKind(b) {
			return "float"
		}
	}
	return ""
}

// isStep reports whether a name read here holds a step: step itself, or the parameter of
// a quantifier's lambda.
func (c *converter) isStep(id string) bool {
	for s := c.cur; s != nil; s = s.parent {
		if _, ok := s.params[id]; ok {
			return true
		}
		if s.assigned[id] {
			return false
		}
	}
	return id == "step"
}

func numberKind(k string) bool { return k == "int" || k == "float" || k == "bool" }

// checkTypes warns where an arithmetic operator raises TypeError: certainly, for the
// operand types written, or for some of the values a trace may hold.
func (c *converter) checkTypes(n ast.Expr, op string, l, r ast.Expr, both string) {
	a, b := c.kind(l), c.kind(r)
	if a == "!" || b == "!" {
		return
	}
	if a != "" && b != "" {
		ok := numberKind(a) && numberKind(b)
		if op == "+" && !ok {
			ok = a == b && (a == "str" || a == "list" || a == "tuple")
		}
		if !ok {
			c.warn(n, "%s of %s and %s raises TypeError: the rule never fires where it is reached", op, article(a), article(b))
		}
		return
	}
	c.warn(n, "%s raises TypeError unless both operands are %s, and values read from the trace may be of any type: where it raises, the rule does not fire", op, both)
}

// checkCompare warns where an ordering or a membership test raises TypeError.
func (c *converter) checkCompare(n ast.Expr, op ast.CmpOp, l, r ast.Expr) {
	a, b := c.kind(l), c.kind(r)
	if a == "!" || b == "!" {
		return
	}
	switch op {
	case ast.Lt, ast.LtE, ast.Gt, ast.GtE:
		sym := map[ast.CmpOp]string{ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}[op]
		if a != "" && b != "" {
			if !(numberKind(a) && numberKind(b)) && !(a == b && (a == "str" || a == "list" || a == "tuple")) {
				c.warn(n, "%s of %s and %s raises TypeError: the rule never fires where it is reached", sym, a, b)
			}
			return
		}
		c.warn(n, "%s raises TypeError unless both operands are numbers, both strings or both lists, and values read from the trace may be of any type: where it raises, the rule does not fire", sym)
	case ast.In, ast.NotIn:
		switch b {
		case "int", "float", "bool", "NoneType":
			c.warn(n, "in of %s raises TypeError (it is not a container): the rule never fires where it is reached", b)
		case "str":
			if a != "" && a != "str" {
				c.warn(n, "in of a %s in a str raises TypeError: the rule never fires where it is reached", a)
			}
		}
	}
}

func article(k string) string {
	if k == "int" {
		return "an int"
	}
	return "a " + k
}
