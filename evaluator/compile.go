// Package evaluator compiles policy conditions (expr-lang programs) and evaluates them:
// post-hoc over a whole trace, and step by step for the guard. A Compiled policy is
// immutable and safe for concurrent use; each evaluation has its own small state.
//
// It imports schemas, policies, scorer and the expr and match packages; it knows nothing of
// files, NATS or reports.
package evaluator

import (
	"errors"
	"fmt"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/parser/lexer"
	"github.com/expr-lang/expr/vm"

	"github.com/troy-audit/troy/category"
	"github.com/troy-audit/troy/evaluator/match"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

// Sandbox limits. Conditions are small; these stop a runaway one without hurting real ones.
// The limits of time and memory of one evaluation are in limits.go.
const (
	// maxNodes bounds the size of one condition's syntax tree.
	maxNodes = 5000
	// memoryBudget is expr's own budget for one run of a program, in its units (roughly,
	// elements of the arrays and maps it builds, checked after they are built); troy's
	// budget (Limits.Memory) is checked before.
	memoryBudget = 1_000_000
)

// Options tune Compile.
type Options struct {
	// Limits bound each evaluation of a condition; zero values mean the defaults.
	Limits Limits
	// QuarantineAtLoad quarantines a rule that certainly breaks a limit instead of
	// refusing the policy: for policies stored before, whose traces must still be
	// evaluated by the other rules.
	QuarantineAtLoad bool
	// OnQuarantine, when set, is called once for each rule quarantined, when it happens.
	// It must not block.
	OnQuarantine func(Quarantine)
	// unlimited compiles without the limit patcher: tests compare guarded builtins with
	// expr's own through it.
	unlimited bool
}

// Warning is a cost of a rule that only the run-time limits bound: a loop over loops of
// the trace, a repeat with a computed count. The rule loads; it may fail when it runs.
type Warning struct {
	RuleID string
	Msg    string
}

func (w Warning) String() string { return policies.RuleLabel(w.RuleID) + ": " + w.Msg }

// Compiled is a policy ready to evaluate. It is safe for concurrent use and immutable but
// for its quarantined rules, which only ever grow.
type Compiled struct {
	policy   *policies.Policy
	rules    []*rule
	byType   [4][]*rule   // the rules that can hold at a step of each of schemas.StepTypes
	preds    []*predicate // predicates of memoized quantifiers, evaluated on one step at a time
	patterns map[string]*match.Pattern
	set      *match.Set
	reprRuns [2]*match.Run // reprPlain for set
	// quotesAlike: set's automaton reads ' and " alike (see reprWriter.quoted).
	quotesAlike bool
	weights     map[string]int
	hash        string
	// metaKeys lists, rule by rule, the keys of a step's metadata each condition reads.
	metaKeys []schemas.MissingMetadata
	// toolCategories are the policy's categories of tools, by lower-case name.
	toolCategories map[string]category.Set
	// plain turns every optimization off: no prechecks, no rewritten member access or
	// quantifiers, no prefilters. Tests compare optimized evaluation against it.
	plain        bool
	unlimited    bool // see Options.unlimited
	limits       Limits
	quarantined  quarantines // by rule index
	slots        int         // values of let names, in conditions compiled to Go
	metaRead     int         // metadata keys prechecks test (see runner.metaValue)
	onQuarantine func(Quarantine)
	warnings     []Warning
}

type rule struct {
	policies.Rule
	index    int // in Compiled.rules
	program  *vm.Program
	fallback *vm.Program // the same condition without memoized quantifiers; nil if none were
	ahead    bool        // reads steps after the current one
	pre      *precheck   // a first test of a step field, run before the program; nil if none
	fast     fastCond    // the whole condition compiled to Go; nil if it has other forms
	bails    bool        // fast may leave a step to program, by panicking with errBail
	details  string      // a violation's details but the step id
}

// Compile compiles every condition of p with the default limits. Problems are reported
// together, one line each, naming the policy's source, the rule id and the line and
// column in the condition; a condition that certainly breaks a limit is one of them.
func Compile(p *policies.Policy) (*Compiled, error) { return compile(p, false, Options{}) }

// CompileWith compiles as Compile does, with options.
func CompileWith(p *policies.Policy, o Options) (*Compiled, error) { return compile(p, false, o) }

func compile(p *policies.Policy, plain bool, o Options) (*Compiled, error) {
	c := &Compiled{
		plain:          plain,
		policy:         p,
		patterns:       map[string]*match.Pattern{},
		weights:        make(map[string]int, len(p.Rules)),
		hash:           p.Hash(),
		limits:         o.Limits.orDefault(),
		onQuarantine:   o.OnQuarantine,
		unlimited:      o.unlimited,
		toolCategories: p.ToolCategories(),
	}
	b := &builder{c: c, predIndex: map[string]int{}}
	var errs []error
	type ruleQuarantine struct {
		rule int
		Quarantine
	}
	var atLoad []ruleQuarantine
	for _, pr := range p.Rules {
		r, over, err := b.rule(pr)
		if err == nil && over != nil && !o.QuarantineAtLoad {
			err = over
		}
		if err != nil {
			// One line: expr reports a panic of its compiler with the stack.
			errs = append(errs, &policies.Error{Source: p.Source, Rule: policies.RuleLabel(pr.RuleID), Msg: "condition: " + oneLine(err.Error())})
			continue
		}
		r.index = len(c.rules)
		if over != nil {
			atLoad = append(atLoad, ruleQuarantine{r.index, Quarantine{RuleID: pr.RuleID, Limit: over.Limit, Reason: over.Msg}})
		}
		c.rules = append(c.rules, r)
		c.weights[pr.RuleID] = pr.Weight
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	c.quarantined = make(quarantines, len(c.rules))
	for _, q := range atLoad {
		c.quarantine(q.rule, q.Quarantine)
	}
	pats := make([]*match.Pattern, 0, len(c.patterns))
	for _, pat := range c.patterns {
		pats = append(pats, pat)
	}
	c.set = match.NewSet(pats)
	c.reprRuns = [2]*match.Run{c.set.Run(reprPlain[0]), c.set.Run(reprPlain[1])}
	c.quotesAlike = c.set.Alike('\'', '"')
	for i, typ := range schemas.StepTypes() {
		for _, r := range c.rules {
			if !r.pre.excludes(typ) {
				c.byType[i] = append(c.byType[i], r)
			}
		}
	}
	return c, nil
}

// rulesFor lists, in rule order, the rules that can hold at a step: a rule whose first
// tests want another step type is left out (rule indexing by type, before any test runs).
func (c *Compiled) rulesFor(v *stepView) []*rule {
	if v.typ < otherType {
		return c.byType[v.typ]
	}
	return c.rules
}

// Policy returns the policy that was compiled.
func (c *Compiled) Policy() *policies.Policy { return c.policy }

// Hash returns the policy's content hash.
func (c *Compiled) Hash() string { return c.hash }

// Weights maps rule ids to their weights, for scoring.
func (c *Compiled) Weights() map[string]int { return c.weights }

// Warnings lists the costs of rules that only the run-time limits bound, in rule order.
func (c *Compiled) Warnings() []Warning { return c.warnings }

// LooksAhead reports whether the rule's condition reads steps after the current one, so
// that its verdict for a step is only final once the trace has ended.
func (c *Compiled) LooksAhead(ruleID string) bool {
	for _, r := range c.rules {
		if r.RuleID == ruleID {
			return r.ahead
		}
	}
	return false
}

type builder struct {
	c         *Compiled
	predIndex map[string]int
	lets      map[string]int // slots of the let names in scope, while compiling to Go
	bails     bool           // what was compiled to Go may leave a step to the machine
	metaIndex map[string]int // numbers of the metadata keys prechecks test
}

func (b *builder) options(extra ...expr.Option) []expr.Option {
	opts := []expr.Option{
		expr.Env(envTypes()),
		expr.AsBool(),
		expr.Function(getName, func(args ...any) (any, error) {
			path, _ := args[1].(string) // the checker guarantees a string
			var def any
			if len(args) > 2 {
				def = args[2]
			}
			return get(args[0], path, def), nil
		}, new(func(any, string) any), new(func(any, string, any) any)),
		expr.MaxNodes(maxNodes),
		guardFunction(),
	}
	opts = append(opts, stringInOptions()...)
	opts = append(opts, pythonFunctions()...)
	return append(append(opts, extra...), numberOptions()...)
}

// rule compiles one rule. over, when not nil, is a limit the condition certainly breaks:
// the rule compiles, and the caller refuses or quarantines it.
func (b *builder) rule(pr policies.Rule) (_ *rule, over *LimitError, _ error) {
	src := rewriteMatchesCalls(pr.Condition)
	cfg := conf.CreateNew()
	for _, op := range b.options() {
		op(cfg)
	}
	tree, err := parser.ParseWithConfig(src, cfg)
	if err != nil {
		return nil, nil, conditionError(err)
	}
	if err := internalNames(tree); err != nil {
		return nil, nil, err
	}
	patchStringIn(&tree.Node, func() { _, _ = checker.Check(tree, cfg) })
	// Checked before the patches run: a comparison rewritten into a call would hide a type
	// error inside its operands (the checker does not look again at what it typed).
	if _, err := checker.Check(tree, cfg); err != nil {
		return nil, nil, conditionError(err)
	}
	r := &rule{Rule: pr, pre: b.keyed(firstCheck(tree.Node, stepRoot)), details: "Rule '" + pr.Description + "' violated at step "}
	for _, k := range stepMetadataKeys(tree.Node) {
		b.c.metaKeys = append(b.c.metaKeys, schemas.MissingMetadata{RuleID: pr.RuleID, Key: k})
	}
	if err := b.analyse(tree, r); err != nil {
		return nil, nil, err
	}
	k := checkCosts(tree.Node, tree.Source, b.c.limits)
	for _, w := range k.warnings {
		b.c.warnings = append(b.c.warnings, Warning{RuleID: pr.RuleID, Msg: w})
	}
	over = k.err()
	lp := &limitPatcher{}
	if b.c.plain {
		r.pre = nil
		r.program, err = expr.Compile(src, b.limited(lp)...)
	} else {
		b.bails = false
		r.fast, _ = b.compileFast(tree.Node, stepRoot)
		r.bails = r.fast != nil && b.bails
		qp := &quantPatcher{b: b}
		// Quantifiers are rewritten first, so that their predicates are seen as written;
		// limits last, on what the others made.
		r.program, err = expr.Compile(src, b.limited(lp, expr.Patch(qp), expr.Patch(fieldPatcher{}))...)
		if err == nil && qp.patched {
			r.fallback, err = expr.Compile(src, b.limited(&limitPatcher{}, expr.Patch(fieldPatcher{}))...)
		}
	}
	if err != nil || lp.guarded {
		// The checker takes rewritten calls as typed and looks no further into them: the
		// condition as written is checked again, so that a mistake inside one is still
		// found, and reported as the author wrote it.
		if _, cerr := checker.Check(tree, cfg); cerr != nil {
			return nil, nil, conditionError(cerr)
		}
	}
	if err != nil {
		return nil, nil, conditionError(err)
	}
	return r, over, nil
}

// limited is the options with patches, then the limit patcher.
func (b *builder) limited(lp *limitPatcher, patches ...expr.Option) []expr.Option {
	if !b.c.unlimited {
		patches = append(patches, expr.Patch(lp))
	}
	return b.options(patches...)
}

// internalNames refuses names the compiler gives to rewritten calls: a condition cannot
// reach the evaluation's budget or the memoized counts.
func internalNames(tree *parser.Tree) error {
	var bad ast.Node
	ast.Walk(&tree.Node, visitor(func(n *ast.Node) {
		var name string
		switch x := (*n).(type) {
		case *ast.IdentifierNode:
			name = x.Value
		case *ast.MemberNode: // $env.name and $env['name']
			env, isEnv := x.Node.(*ast.IdentifierNode)
			if s, ok := x.Property.(*ast.StringNode); ok && isEnv && env.Value == "$env" {
				name = s.Value
			}
		}
		if bad == nil && strings.HasPrefix(name, internalPrefix) {
			bad = *n
		}
	}))
	if bad == nil {
		return nil
	}
	fe := &file.Error{Location: bad.Location(), Message: "unknown name " + bad.String()}
	return conditionError(fe.Bind(tree.Source))
}

// analyse finds whether the condition looks ahead and compiles its constant patterns, so a
// bad regular expression is an error when the policy loads.
func (b *builder) analyse(tree *parser.Tree, r *rule) error {
	var perr error
	ast.Walk(&tree.Node, visitor(func(n *ast.Node) {
		switch x := (*n).(type) {
		case *ast.IdentifierNode:
			if x.Value == nextName || x.Value == stepsName || x.Value == "$env" {
				r.ahead = true
			}
		case *ast.CallNode:
			id, ok := x.Callee.(*ast.IdentifierNode)
			if ok && id.Value == categoryName && perr == nil {
				perr = categoryArgument(x, tree.Source)
			}
			if ok && (id.Value == untrustedName || id.Value == fromUserName || id.Value == originName || id.Value == contextName) && perr == nil {
				perr = provenanceArgument(x, id.Value, tree.Source)
			}
			if !ok || id.Value != matchesName || len(x.Arguments) != 2 {
				return
			}
			lit, ok := x.Arguments[1].(*ast.StringNode)
			if !ok || b.c.patterns[lit.Value] != nil {
				return
			}
			pat, err := match.Compile(lit.Value)
			if err != nil {
				if perr == nil {
					fe := &file.Error{Location: lit.Location(), Message: err.Error()}
					perr = conditionError(fe.Bind(tree.Source))
				}
				return
			}
			b.c.patterns[lit.Value] = pat
		}
	}))
	return perr
}

type visitor func(*ast.Node)

func (v visitor) Visit(n *ast.Node) { v(n) }

// conditionError turns an expr error into one line: where, then what.
func conditionError(err error) error {
	var fe *file.Error
	if !errors.As(err, &fe) {
		return err
	}
	msg := strings.ReplaceAll(fe.Message, matchesName+"(", "matches(")
	msg = strings.ReplaceAll(msg, matchesName, "matches")
	if fe.Line == 0 {
		return errors.New(msg)
	}
	return fmt.Errorf("line %d, column %d: %s", fe.Line, fe.Column+1, msg)
}

// rewriteMatchesCalls lets conditions call matches(text, pattern) although expr reserves
// matches as an infix operator (text matches 'pattern'): every matches token used as a
// function is renamed to an identifier of the same length, so positions in error messages
// stay true.
func rewriteMatchesCalls(src string) string {
	tokens, err := lexer.Lex(file.NewSource(src))
	if err != nil {
		return src // the parser reports the problem
	}
	var runes []rune
	for i, t := range tokens {
		if !t.Is(lexer.Operator, "matches") || i+1 >= len(tokens) || !tokens[i+1].Is(lexer.Bracket, "(") {
			continue
		}
		if i > 0 && endsOperand(tokens[i-1]) {
			continue // a matches (b)
		}
		if i > 1 && tokens[i-1].Is(lexer.Operator, "not") && endsOperand(tokens[i-2]) {
			continue // a not matches (b)
		}
		if runes == nil {
			runes = []rune(src)
		}
		copy(runes[t.From:], []rune(matchesName))
	}
	if runes == nil {
		return src
	}
	return string(runes)
}

func endsOperand(t lexer.Token) bool {
	switch t.Kind {
	case lexer.Identifier, lexer.Number, lexer.String, lexer.Bytes:
		return true
	case lexer.Bracket:
		return t.Value == ")" || t.Value == "]" || t.Value == "}"
	}
	return false
}

// Quantifier memoization. A condition such as any(next_steps, #.type == 'tool_call') would
// cost a pass over the trace at every step. When the predicate depends on nothing but the
// element (and trace-wide values), its verdict per step is computed once and kept as prefix
// counts, so any/all/none/one/count over prev_steps, next_steps or steps cost O(1).
const (
	scopePrev = iota
	scopeNext
	scopeAll
)

func quantKey(pred, scope int, negate bool) int {
	k := pred<<3 | scope<<1
	if negate {
		k |= 1
	}
	return k
}

func splitQuantKey(k int) (pred, scope int, negate bool) {
	return k >> 3, (k >> 1) & 3, k&1 == 1
}

type quantPatcher struct {
	b       *builder
	patched bool
}

func (q *quantPatcher) Visit(n *ast.Node) {
	bn, ok := (*n).(*ast.BuiltinNode)
	if !ok || len(bn.Arguments) != 2 {
		return
	}
	switch bn.Name {
	case "any", "all", "none", "one", "count":
	default:
		return
	}
	scope, ok := quantScope(bn.Arguments[0])
	if !ok {
		return
	}
	pn, ok := bn.Arguments[1].(*ast.PredicateNode)
	if !ok {
		return
	}
	if !independent(pn.Node) {
		q.guard(n, bn, pn, scope)
		return
	}
	pred, ok := q.b.predicate(pn.Node)
	if !ok {
		return
	}
	call := func(negate bool) ast.Node {
		c := &ast.CallNode{
			Callee:    &ast.IdentifierNode{Value: countName},
			Arguments: []ast.Node{&ast.IntegerNode{Value: quantKey(pred, scope, negate)}},
		}
		c.SetLocation(bn.Location())
		c.Callee.SetLocation(bn.Location())
		return c
	}
	compare := func(op string, left ast.Node, v int) ast.Node {
		return &ast.BinaryNode{Operator: op, Left: left, Right: &ast.IntegerNode{Value: v}}
	}
	var repl ast.Node
	switch bn.Name {
	case "any":
		repl = compare(">", call(false), 0)
	case "none":
		repl = compare("==", call(false), 0)
	case "one":
		repl = compare("==", call(false), 1)
	case "all":
		repl = compare("==", call(true), 0)
	case "count":
		repl = call(false)
	}
	ast.Patch(n, repl)
	q.patched = true
}

// guard patches any, none and one whose predicate reads the current step (so that it is
// not memoized) but begins with tests of the element alone, A and B: where no step of the
// scope passes A, which memoized counts tell, the quantifier is decided without running
// B on every step. any(S, A and B) becomes __troy_count(A) > 0 and any(S, A and B); none,
// __troy_count(A) == 0 or none(...). A step where A fails sends the rule to its fallback
// program, as for a memoized quantifier, so results and failures stay the machine's.
func (q *quantPatcher) guard(n *ast.Node, bn *ast.BuiltinNode, pn *ast.PredicateNode, scope int) {
	var op, join string
	switch bn.Name {
	case "any", "one":
		op, join = ">", "and"
	case "none":
		op, join = "==", "or"
	default:
		return
	}
	parts := chain(pn.Node, true, nil)
	k := 0
	for k < len(parts)-1 && independent(parts[k]) {
		k++
	}
	if k == 0 {
		return
	}
	lead := parts[0]
	for _, p := range parts[1:k] {
		lead = &ast.BinaryNode{Operator: "and", Left: lead, Right: p}
	}
	pred, ok := q.b.predicate(lead)
	if !ok {
		return
	}
	count := &ast.CallNode{
		Callee:    &ast.IdentifierNode{Value: countName},
		Arguments: []ast.Node{&ast.IntegerNode{Value: quantKey(pred, scope, false)}},
	}
	count.SetLocation(bn.Location())
	count.Callee.SetLocation(bn.Location())
	test := &ast.BinaryNode{Operator: op, Left: count, Right: &ast.IntegerNode{Value: 0}}
	ast.Patch(n, &ast.BinaryNode{Operator: join, Left: test, Right: bn})
	q.patched = true
}

// quantScope tells which steps a quantifier's list is: prev_steps, next_steps or steps.
func quantScope(n ast.Node) (int, bool) {
	id, ok := n.(*ast.IdentifierNode)
	if !ok {
		return 0, false
	}
	switch id.Value {
	case prevName:
		return scopePrev, true
	case nextName:
		return scopeNext, true
	case stepsName:
		return scopeAll, true
	}
	return 0, false
}

// independent reports whether a predicate reads only its element, constants, trace, agent
// and the helpers, so its verdict for a step is the same whichever step is current.
func independent(n ast.Node) bool {
	ok := true
	ast.Walk(&n, visitor(func(n *ast.Node) {
		switch x := (*n).(type) {
		case *ast.IdentifierNode:
			switch x.Value {
			case "trace", "agent", matchesName, getName, fieldName, inName, categoryName, scoreName, injectedName:
			default:
				ok = false
			}
		case *ast.PointerNode:
			ok = ok && x.Name == "" // #index and #acc depend on the iteration
		case *ast.VariableDeclaratorNode:
			ok = false
		}
	}))
	return ok
}

// predicate compiles a predicate to run on the single step in __troy_one, and returns its
// index; predicates with the same text share one.
func (b *builder) predicate(n ast.Node) (int, bool) {
	src := fmt.Sprintf("any(%s, %s)", oneName, n.String())
	if i, ok := b.predIndex[src]; ok {
		return i, true
	}
	prog, err := expr.Compile(src, b.limited(&limitPatcher{}, expr.Patch(fieldPatcher{}))...)
	if err != nil {
		return 0, false // keep the quantifier as written
	}
	pred := &predicate{program: prog, pre: b.keyed(firstCheck(n, elementRoot))}
	bails := b.bails
	b.bails = false
	if fast, _ := b.compileFast(n, elementRoot); !b.bails {
		pred.fast = fast // a predicate has no program of its own to fall back to
	}
	b.bails = bails
	// A predicate that is nothing but such a test is decided in Go alone.
	pred.whole = pred.pre != nil && pred.pre.whole
	b.c.preds = append(b.c.preds, pred)
	b.predIndex[src] = len(b.c.preds) - 1
	return len(b.c.preds) - 1, true
}

// predicate is a memoized quantifier's predicate, run on one step at a time.
type predicate struct {
	program *vm.Program
	pre     *precheck // a first test of the element, run before the program
	whole   bool      // the predicate is the precheck alone
	fast    fastCond  // the predicate compiled to Go; nil if it has other forms
}

// violation builds the Violation record for a rule at a step, worded as the Python tool does.
func violation(r *rule, s *schemas.Step) schemas.Violation {
	return schemas.Violation{
		RuleID:          r.RuleID,
		RuleDescription: r.Description,
		StepID:          s.StepID,
		Severity:        r.Severity,
		Details:         r.details + s.StepID,
	}
}
