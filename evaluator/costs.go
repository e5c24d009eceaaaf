package evaluator

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
)

// costs is what can be known about a condition's cost before it runs, from its syntax
// tree: a limit it certainly breaks (the rule is refused when the policy loads), and
// warnings about costs that only the run-time limits bound.
type costs struct {
	lim    Limits
	source file.Source
	// first findings of each kind; iterations are reported before depth, as they say more
	iterations, depth, memory *LimitError
	warnings                  []string
	lets                      map[string]int64 // lengths of let variables, where known
	// the deepest nesting of quantifiers over lists known only at run time, warned about
	// once per condition
	nested        int
	nestedWarning string
}

// level is one quantifier among those nesting at a place in a condition.
type level struct {
	list  string // the list it loops over, as written
	n     int64  // its length, when known
	known bool
	memo  bool // memoized: its iterations are spread over the trace
}

func checkCosts(node ast.Node, source file.Source, lim Limits) *costs {
	k := &costs{lim: lim, source: source, lets: map[string]int64{}}
	k.visit(node, nil)
	if k.nestedWarning != "" {
		k.warnings = append(k.warnings, k.nestedWarning)
	}
	return k
}

// err is the limit the condition certainly breaks, if any.
func (k *costs) err() *LimitError {
	for _, e := range []*LimitError{k.memory, k.iterations, k.depth} {
		if e != nil {
			return e
		}
	}
	return nil
}

func (k *costs) at(n ast.Node, msg string) string {
	fe := &file.Error{Location: n.Location(), Message: msg}
	return conditionError(fe.Bind(k.source)).Error()
}

func (k *costs) fail(slot **LimitError, limit string, n ast.Node, msg string) {
	if *slot == nil {
		*slot = &LimitError{Limit: limit, Msg: k.at(n, msg)}
	}
}

func (k *costs) warn(n ast.Node, msg string) {
	if w := k.at(n, msg); !slices.Contains(k.warnings, w) {
		k.warnings = append(k.warnings, w)
	}
}

func (k *costs) visit(n ast.Node, loops []level) {
	switch x := n.(type) {
	case *ast.BuiltinNode:
		if loopBuiltins[x.Name] && len(x.Arguments) > 0 {
			k.visit(x.Arguments[0], loops)
			inner := append(slices.Clip(loops), k.level(x))
			k.nesting(x, inner)
			for _, a := range x.Arguments[1:] {
				k.visit(a, inner)
			}
			return
		}
		switch x.Name {
		case "repeat":
			k.repeat(x)
		case "toJSON", "string":
			k.wholeTrace(x, x.Name)
		}
	case *ast.CallNode:
		if id, ok := x.Callee.(*ast.IdentifierNode); ok && id.Value == "py_str" {
			k.wholeTrace(x, "str")
		}
	case *ast.BinaryNode:
		if n, ok := k.length(x); ok && x.Operator == "+" && n > k.lim.Memory {
			k.fail(&k.memory, LimitMemory, x, fmt.Sprintf("concatenation of up to %d bytes exceeds the %s limit", n, size(k.lim.Memory)))
		}
	case *ast.VariableDeclaratorNode:
		k.visit(x.Value, loops)
		prev, had := k.lets[x.Name]
		if n, ok := k.length(x.Value); ok {
			k.lets[x.Name] = n
		} else {
			delete(k.lets, x.Name)
		}
		k.visit(x.Expr, loops)
		if had {
			k.lets[x.Name] = prev
		} else {
			delete(k.lets, x.Name)
		}
		return
	}
	for _, c := range children(n) {
		k.visit(c, loops)
	}
}

func (k *costs) level(bn *ast.BuiltinNode) level {
	l := level{list: bn.Arguments[0].String()}
	if len(l.list) > 40 {
		l.list = l.list[:37] + "..."
	}
	l.n, l.known = k.length(bn.Arguments[0])
	if id, ok := bn.Arguments[0].(*ast.IdentifierNode); ok && len(bn.Arguments) == 2 {
		switch bn.Name {
		case "any", "all", "none", "one", "count":
			pn, isPred := bn.Arguments[1].(*ast.PredicateNode)
			switch id.Value {
			case prevName, nextName, stepsName:
				l.memo = isPred && independent(pn.Node)
			}
		}
	}
	return l
}

// nesting checks the quantifiers nesting at bn: their number, and the iterations of
// those whose lists have known lengths.
func (k *costs) nesting(bn *ast.BuiltinNode, loops []level) {
	if len(loops) > maxQuantifierDepth {
		k.fail(&k.depth, LimitDepth, bn, fmt.Sprintf("quantifiers nested %d deep; at most %d may nest", len(loops), maxQuantifierDepth))
	}
	var sizes []string
	total := int64(1)
	for _, l := range loops {
		if l.known {
			total = mul(total, l.n)
			sizes = append(sizes, fmt.Sprint(l.n))
		}
	}
	// One loop over a long known list is left to the run time: expr's optimizer turns
	// some into arithmetic (sum(1..n), x in 1..n), and a list that long is over the
	// memory limit when built.
	if total > maxKnownIterations && len(sizes) > 1 {
		k.fail(&k.iterations, LimitIterations, bn, fmt.Sprintf("nested quantifiers run up to %s = %s iterations, over the limit of %d", strings.Join(sizes, "x"), count(total), maxKnownIterations))
	}
	var unknown []string
	for _, l := range loops {
		if !l.known && !l.memo {
			unknown = append(unknown, l.list)
		}
	}
	if len(unknown) > k.nested && len(unknown) > 1 && !loops[len(loops)-1].known && !loops[len(loops)-1].memo {
		k.nested = len(unknown)
		k.nestedWarning = k.at(bn, fmt.Sprintf("quantifiers nested %d deep over lists known only at run time (%s): the work at each step is the product of their lengths", len(unknown), strings.Join(unknown, ", ")))
	}
}

func count(n int64) string {
	if n == math.MaxInt64 {
		return "more than 9223372036854775806"
	}
	return fmt.Sprint(n)
}

// repeat checks repeat(text, n): refused when both are known and the text is over the
// memory limit; a warning when the size is known only at run time.
func (k *costs) repeat(bn *ast.BuiltinNode) {
	if len(bn.Arguments) != 2 {
		return
	}
	ls, textKnown := k.length(bn.Arguments[0])
	n, nKnown := knownInt(bn.Arguments[1])
	switch {
	case textKnown && nKnown:
		if mul(ls, n) > k.lim.Memory {
			k.fail(&k.memory, LimitMemory, bn, fmt.Sprintf("repeat of up to %dx%d bytes exceeds the %s limit", ls, n, size(k.lim.Memory)))
		}
	case !nKnown:
		k.warn(bn, "repeat with a count known only at run time: the text it makes is bounded only by the "+size(k.lim.Memory)+" limit")
	case n > 16:
		k.warn(bn, fmt.Sprintf("repeat of a text known only at run time, %d times: the text it makes is bounded only by the %s limit", n, size(k.lim.Memory)))
	}
}

// wholeTrace warns about writing out a list of steps, which costs the whole trace at
// each step.
func (k *costs) wholeTrace(n ast.Node, fn string) {
	var args []ast.Node
	switch x := n.(type) {
	case *ast.BuiltinNode:
		args = x.Arguments
	case *ast.CallNode:
		args = x.Arguments
	}
	if len(args) == 0 {
		return
	}
	if id, ok := args[0].(*ast.IdentifierNode); ok {
		switch id.Value {
		case stepsName, prevName, nextName:
			k.warn(n, fmt.Sprintf("%s(%s) writes out the trace at every step: the cost grows with the square of its length", fn, id.Value))
		}
	}
}

// length is the length of a text (in bytes) or a list, when it is known before the
// condition runs.
func (k *costs) length(n ast.Node) (int64, bool) {
	switch x := n.(type) {
	case *ast.StringNode:
		return int64(len(x.Value)), true
	case *ast.ArrayNode:
		return int64(len(x.Nodes)), true
	case *ast.IdentifierNode:
		v, ok := k.lets[x.Value]
		return v, ok
	case *ast.BinaryNode:
		switch x.Operator {
		case "..":
			from, ok1 := knownInt(x.Left)
			to, ok2 := knownInt(x.Right)
			if !ok1 || !ok2 {
				return 0, false
			}
			if to < from {
				return 0, true
			}
			if from < 0 && to > math.MaxInt64+from-1 {
				return math.MaxInt64, true
			}
			return to - from + 1, true
		case "+":
			a, ok1 := k.length(x.Left)
			b, ok2 := k.length(x.Right)
			if !ok1 || !ok2 || !isText(x.Left) {
				return 0, false
			}
			if a > math.MaxInt64-b {
				return math.MaxInt64, true
			}
			return a + b, true
		}
	case *ast.BuiltinNode:
		switch x.Name {
		case "repeat":
			if len(x.Arguments) == 2 {
				s, ok1 := k.length(x.Arguments[0])
				n, ok2 := knownInt(x.Arguments[1])
				if ok1 && ok2 {
					return mul(s, n), true
				}
			}
		case "upper", "lower", "trim", "trimPrefix", "trimSuffix":
			if len(x.Arguments) > 0 {
				return k.length(x.Arguments[0])
			}
		}
	case *ast.ConditionalNode:
		a, ok1 := k.length(x.Exp1)
		b, ok2 := k.length(x.Exp2)
		if ok1 && ok2 {
			return max(a, b), true
		}
	}
	return 0, false
}

// isText reports whether a node is known to be a text: a literal, or built from one.
func isText(n ast.Node) bool {
	switch x := n.(type) {
	case *ast.StringNode:
		return true
	case *ast.BinaryNode:
		return x.Operator == "+" && isText(x.Left)
	case *ast.BuiltinNode:
		return x.Name == "repeat" || x.Name == "upper" || x.Name == "lower" || strings.HasPrefix(x.Name, "trim")
	}
	return false
}

// knownInt is the value of an integer expression of constants.
func knownInt(n ast.Node) (int64, bool) {
	switch x := n.(type) {
	case *ast.IntegerNode:
		return int64(x.Value), true
	case *ast.UnaryNode:
		v, ok := knownInt(x.Node)
		switch {
		case !ok:
		case x.Operator == "-" && v != math.MinInt64:
			return -v, true
		case x.Operator == "+":
			return v, true
		}
	case *ast.BinaryNode:
		a, ok1 := knownInt(x.Left)
		b, ok2 := knownInt(x.Right)
		if !ok1 || !ok2 || a < 0 || b < 0 {
			return 0, false
		}
		switch x.Operator {
		case "*":
			return mul(a, b), true
		case "+":
			if a > math.MaxInt64-b {
				return math.MaxInt64, true
			}
			return a + b, true
		case "-":
			return a - b, true
		}
	}
	return 0, false
}

// children lists a node's operands, in the order ast.Walk visits them.
func children(n ast.Node) []ast.Node {
	switch x := n.(type) {
	case *ast.UnaryNode:
		return []ast.Node{x.Node}
	case *ast.BinaryNode:
		return []ast.Node{x.Left, x.Right}
	case *ast.ChainNode:
		return []ast.Node{x.Node}
	case *ast.MemberNode:
		return []ast.Node{x.Node, x.Property}
	case *ast.SliceNode:
		out := []ast.Node{x.Node}
		if x.From != nil {
			out = append(out, x.From)
		}
		if x.To != nil {
			out = append(out, x.To)
		}
		return out
	case *ast.CallNode:
		return append([]ast.Node{x.Callee}, x.Arguments...)
	case *ast.BuiltinNode:
		return x.Arguments
	case *ast.PredicateNode:
		return []ast.Node{x.Node}
	case *ast.VariableDeclaratorNode:
		return []ast.Node{x.Value, x.Expr}
	case *ast.SequenceNode:
		return x.Nodes
	case *ast.ConditionalNode:
		return []ast.Node{x.Cond, x.Exp1, x.Exp2}
	case *ast.ArrayNode:
		return x.Nodes
	case *ast.MapNode:
		return x.Pairs
	case *ast.PairNode:
		return []ast.Node{x.Key, x.Value}
	}
	return nil
}
