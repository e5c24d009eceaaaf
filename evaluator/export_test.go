package evaluator

import "github.com/troy-audit/troy/policies"

// CompileReference compiles without optimizations, as the reference the optimized
// evaluator must agree with.
func CompileReference(p *policies.Policy) (*Compiled, error) { return compile(p, true, Options{}) }

// CompileReferenceWith compiles without optimizations, with options.
func CompileReferenceWith(p *policies.Policy, o Options) (*Compiled, error) {
	return compile(p, true, o)
}

// CompileUnlimited compiles as Compile does, but without the limits' rewriting: the
// builtins are expr's own.
func CompileUnlimited(p *policies.Policy) (*Compiled, error) {
	return compile(p, false, Options{unlimited: true})
}

// Around exposes the text context_score reads around a value.
var Around = around
