// Package pyconv converts policy conditions written for the Python tool (Python
// expressions) into troy's condition language (expr), with Python's semantics kept: the
// output calls the evaluator's py_* functions wherever expr would differ (truthiness,
// equality, membership, str(), missing keys).
//
// It parses with gpython's parser and translates a documented subset; anything else is an
// error naming the construct and where it is, never a guess.
package pyconv

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/go-python/gpython/ast"
	"github.com/go-python/gpython/parser"
	"github.com/go-python/gpython/py"
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

// lambdaHelpers map the Python tool's step quantifiers to the list they range over.
var lambdaHelpers = map[string]string{"any_step": "steps", "any_next": "next_steps", "any_prev": "prev_steps"}

// Convert rewrites one Python condition as an expr condition.
func Convert(src string) (out string, err error) {
	defer func() {
		if r := recover(); r != nil { // the parser panics on some inputs; never let it out
			out, err = "", &Error{Msg: fmt.Sprintf("not a Python expression (%v)", r)}
		}
	}()
	trimmed := strings.TrimSpace(src)
	if trimmed == "" {
		return "", &Error{Msg: "empty condition"}
	}
	if strings.Contains(trimmed, ":=") {
		return "", &Error{Msg: "unsupported: assignment expressions (:=)"}
	}
	tree, err := parser.ParseString(strings.ReplaceAll(trimmed, "\n", " "), py.EvalMode)
	if err != nil {
		msg := strings.TrimSpace(strings.SplitN(err.Error(), "\n", 2)[0])
		if looksLikeFString(trimmed) {
			msg = "unsupported: f-strings"
		}
		return "", &Error{Msg: "not a Python expression: " + msg}
	}
	e, ok := tree.(*ast.Expression)
	if !ok {
		return "", &Error{Msg: "not a single Python expression"}
	}
	c := &converter{scope: map[string]string{}}
	return c.cond(e.Body)
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
	scope map[string]string // Python local names (lambda and loop variables) → expr names
	n     int
}

func (c *converter) fresh() string {
	c.n++
	return fmt.Sprintf("_py%d", c.n)
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
				return "(-" + v + ")", nil
			}
			return v, nil
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
			return "py_add(" + a + ", " + b + ")", nil
		case ast.Sub:
			return "(" + a + " - " + b + ")", nil
		}
		return "", fail(n, "unsupported: arithmetic other than + and -")
	case *ast.Num:
		switch v := x.N.(type) {
		case py.Int:
			return strconv.FormatInt(int64(v), 10), nil
		case py.Float:
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
		id := string(x.Id)
		if local, ok := c.scope[id]; ok {
			return local, nil
		}
		if globals[id] {
			return id, nil
		}
		return "", fail(n, "unknown name %q: conditions read step, steps, step_index, prev_steps, next_steps, trace and agent", id)
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
		return "", fail(n, "unsupported: comprehensions other than a generator inside all() or any()")
	case *ast.Set:
		return "", fail(n, "unsupported: set literals")
	case *ast.Starred:
		return "", fail(n, "unsupported: * unpacking")
	}
	return "", fail(n, "unsupported: %s", strings.TrimPrefix(fmt.Sprintf("%T", n), "*ast."))
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

// quantifier translates any_step/any_next/any_prev(lambda s: ...) and all()/any() over a
// generator; ok is false for other calls.
func (c *converter) quantifier(x *ast.Call) (string, bool, error) {
	name, ok := x.Func.(*ast.Name)
	if !ok {
		return "", false, nil
	}
	fn := string(name.Id)
	if list, ok := lambdaHelpers[fn]; ok {
		if len(x.Args) != 1 || len(x.Keywords) > 0 {
			return "", true, fail(x, "%s takes one lambda", fn)
		}
		l, ok := x.Args[0].(*ast.Lambda)
		if !ok || len(l.Args.Args) != 1 || l.Args.Vararg != nil || l.Args.Kwarg != nil || len(l.Args.Kwonlyargs) > 0 {
			return "", true, fail(x, "%s takes a lambda of one argument", fn)
		}
		body, err := c.withLocal(string(l.Args.Args[0].Arg), func(local string) (string, error) {
			b, err := c.cond(l.Body)
			return fmt.Sprintf("{let %s = #; %s}", local, b), err
		})
		return "any(" + list + ", " + body + ")", true, err
	}
	if fn != "any" && fn != "all" {
		return "", false, nil
	}
	if len(x.Args) != 1 || len(x.Keywords) > 0 {
		return "", true, fail(x, "%s() takes one argument", fn)
	}
	g, ok := x.Args[0].(*ast.GeneratorExp)
	if !ok {
		list, err := c.value(x.Args[0])
		if err != nil {
			return "", true, err
		}
		return fn + "(" + list + ", {py_truth(#)})", true, nil
	}
	if len(g.Generators) != 1 {
		return "", true, fail(g, "unsupported: generators with more than one for")
	}
	gen := g.Generators[0]
	target, ok := gen.Target.(*ast.Name)
	if !ok {
		return "", true, fail(g, "unsupported: unpacking in a for")
	}
	iter, err := c.value(gen.Iter)
	if err != nil {
		return "", true, err
	}
	body, err := c.withLocal(string(target.Id), func(local string) (string, error) {
		elt, err := c.cond(g.Elt)
		if err != nil {
			return "", err
		}
		var ifs []string
		for _, f := range gen.Ifs {
			s, err := c.cond(f)
			if err != nil {
				return "", err
			}
			ifs = append(ifs, s)
		}
		pred := elt
		if len(ifs) > 0 {
			filter := strings.Join(ifs, " && ")
			if fn == "all" {
				pred = "!(" + filter + ") || " + elt
			} else {
				pred = filter + " && " + elt
			}
		}
		return fmt.Sprintf("{let %s = #; %s}", local, pred), nil
	})
	return fn + "(" + iter + ", " + body + ")", true, err
}

func (c *converter) withLocal(name string, f func(local string) (string, error)) (string, error) {
	local := c.fresh()
	prev, had := c.scope[name]
	c.scope[name] = local
	defer func() {
		if had {
			c.scope[name] = prev
		} else {
			delete(c.scope, name)
		}
	}()
	return f(local)
}

func (c *converter) call(x *ast.Call) (string, error) {
	if s, ok, err := c.quantifier(x); ok || err != nil {
		if err != nil {
			return "", err
		}
		return s, nil
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
		want := map[string][2]int{"str": {1, 1}, "len": {1, 1}, "int": {1, 1}, "get": {2, 3}, "matches": {2, 2}}
		fn := string(f.Id)
		n, ok := want[fn]
		if !ok {
			return "", fail(x, "unsupported: call of %s() (only the helpers get and matches, str, len, int, any and all)", fn)
		}
		if len(args) < n[0] || len(args) > n[1] {
			return "", fail(x, "%s() takes %d to %d arguments, not %d", fn, n[0], n[1], len(args))
		}
		switch fn {
		case "str", "len", "int":
			return "py_" + fn + "(" + args[0] + ")", nil
		case "matches":
			return "matches(" + args[0] + ", " + args[1] + ")", nil
		}
		return "get(" + strings.Join(args, ", ") + ")", nil
	}
	return "", fail(x, "unsupported: calling this expression")
}

// pythonMarkers are words and forms that are Python and cannot be expr: None, True and
// False (expr writes nil, true, false), lambda, is, generator and conditional syntax, the
// Python tool's step quantifiers, and .get(...) on a dict.
var pythonMarkers = regexp.MustCompile(`\b(None|True|False|lambda|is|for|if|any_next|any_prev|any_step)\b|\.get\s*\(`)

// LooksLikePython reports whether a policy's conditions are written in the Python tool's
// dialect: every one parses as a Python expression, and at least one uses something only
// Python has. Conditions valid in both dialects say nothing, so a policy of only those is
// left as it is.
func LooksLikePython(conds []string) bool {
	marker := false
	for _, c := range conds {
		if !parses(c) {
			return false
		}
		marker = marker || pythonMarkers.MatchString(withoutStrings(c))
	}
	return marker
}

func parses(src string) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	if strings.TrimSpace(src) == "" {
		return false
	}
	_, err := parser.ParseString(strings.ReplaceAll(strings.TrimSpace(src), "\n", " "), py.EvalMode)
	return err == nil
}

// withoutStrings blanks out string literals, so that words inside them are not markers.
func withoutStrings(src string) string {
	var b strings.Builder
	var quote byte
	for i := 0; i < len(src); i++ {
		ch := src[i]
		switch {
		case quote != 0 && ch == '\\':
			i++
		case quote != 0 && ch == quote:
			quote = 0
			b.WriteByte(' ')
		case quote != 0:
		case ch == '\'' || ch == '"':
			quote = ch
		default:
			b.WriteByte(ch)
		}
	}
	return b.String()
}
