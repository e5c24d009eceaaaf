// Package pipeline assembles troy's stages onto a bus: the policy store shared by the
// stages, the components (evaluator, explainer, reporter, sink, guard, idle closer) with one
// lifecycle, and the client side of audits run through the pipeline: a local one-shot
// pipeline in process (OpenLocal) or a running deployment (Dial).
package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

// DefaultKey is the policy bucket's key whose value is the hash of the server's default
// policy, used for traces that name none.
const DefaultKey = "default"

// Policies stores policies in the bus's bucket under their content hash and compiles each
// revision once. A rule that breaks a limit is quarantined for its revision (see
// evaluator.Quarantine): logged once, counted, and reported as a rule error wherever it
// would have run; the other rules go on.
type Policies struct {
	b     *bus.Bus
	mu    sync.Mutex
	cache map[string]*evaluator.Compiled
	log   *slog.Logger
	// quarantined counts the rules quarantined, by limit; the map is fixed at creation.
	quarantined map[string]*atomic.Int64
}

// NewPolicies returns a policy store on the bus.
func NewPolicies(b *bus.Bus) *Policies {
	p := &Policies{b: b, cache: map[string]*evaluator.Compiled{}, log: slog.New(slog.DiscardHandler), quarantined: map[string]*atomic.Int64{}}
	for _, l := range []string{evaluator.LimitTime, evaluator.LimitMemory, evaluator.LimitIterations, evaluator.LimitDepth} {
		p.quarantined[l] = &atomic.Int64{}
	}
	return p
}

// compile compiles a revision as the store runs it: a rule that certainly breaks a limit
// is quarantined rather than refused, since traces already name the revision.
func (p *Policies) compile(pol *policies.Policy) (*evaluator.Compiled, error) {
	return evaluator.CompileWith(pol, evaluator.Options{QuarantineAtLoad: true, OnQuarantine: p.quarantine})
}

func (p *Policies) quarantine(q evaluator.Quarantine) {
	if n := p.quarantined[q.Limit]; n != nil {
		n.Add(1)
	}
	p.log.Warn("rule quarantined: it is no longer evaluated for this policy revision, and records a rule error where it would run",
		"policy", q.PolicyHash, "rule_id", q.RuleID, "limit", q.Limit, "reason", q.Reason, "trace_id", q.TraceID, "step_id", q.StepID)
}

// Put stores a compiled policy under its hash and returns the hash. The store compiles
// its own copy, which reports its quarantines.
func (p *Policies) Put(ctx context.Context, c *evaluator.Compiled) (string, error) {
	raw, err := c.Policy().MarshalJSON()
	if err != nil {
		return "", err
	}
	if err := p.b.PutPolicy(ctx, c.Hash(), raw); err != nil {
		return "", err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cache[c.Hash()] == nil {
		own, err := p.compile(c.Policy())
		if err != nil {
			return "", err
		}
		p.cache[c.Hash()] = own
	}
	return c.Hash(), nil
}

// SetDefault stores a policy and makes it the default for traces that name none.
func (p *Policies) SetDefault(ctx context.Context, c *evaluator.Compiled) (string, error) {
	hash, err := p.Put(ctx, c)
	if err != nil {
		return "", err
	}
	return hash, p.b.PutPolicy(ctx, DefaultKey, []byte(hash))
}

// Default returns the hash of the default policy.
func (p *Policies) Default(ctx context.Context) (string, error) {
	raw, err := p.b.GetPolicy(ctx, DefaultKey)
	if err != nil {
		return "", fmt.Errorf("no default policy is set (troyctl serve --policy): %w", err)
	}
	return string(raw), nil
}

// Compiled returns the policy with the given hash, or the default for an empty hash.
func (p *Policies) Compiled(ctx context.Context, hash string) (*evaluator.Compiled, error) {
	if hash == "" {
		var err error
		if hash, err = p.Default(ctx); err != nil {
			return nil, err
		}
	}
	p.mu.Lock()
	c := p.cache[hash]
	p.mu.Unlock()
	if c != nil {
		return c, nil
	}
	if !isHash(hash) {
		if t, err := policies.LookupTemplate(hash); err == nil {
			return p.template(ctx, hash, t)
		}
	}
	raw, err := p.b.GetPolicy(ctx, hash)
	if err != nil {
		return nil, err
	}
	pol, err := policies.Parse(raw, "policy "+hash[:min(12, len(hash))], "policy")
	if err != nil {
		return nil, &event.Permanent{Err: err}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.cache[hash]; c != nil {
		return c, nil // compiled meanwhile
	}
	if c, err = p.compile(pol); err != nil {
		return nil, &event.Permanent{Err: err}
	}
	p.cache[hash] = c
	return c, nil
}

// Info describes a policy revision for reports.
func (p *Policies) Info(ctx context.Context, hash string) (schemas.AuditInfo, error) {
	c, err := p.Compiled(ctx, hash)
	if err != nil {
		return schemas.AuditInfo{}, err
	}
	return InfoOf(c), nil
}

// InfoOf is the part of a report's audit_info that describes the policy.
func InfoOf(c *evaluator.Compiled) schemas.AuditInfo {
	return schemas.AuditInfo{PolicyID: c.Policy().PolicyID, PolicyHash: c.Hash(), Rules: len(c.Policy().Rules)}
}

// RuleInfo describes a policy revision's rules for the ClickHouse sink.
func (p *Policies) RuleInfo(ctx context.Context, hash string) (schemas.PolicyRules, error) {
	c, err := p.Compiled(ctx, hash)
	if err != nil {
		return schemas.PolicyRules{}, err
	}
	w := c.Weights()
	info := schemas.PolicyRules{Hash: c.Hash(), ID: c.Policy().PolicyID}
	for _, r := range c.Policy().Rules {
		info.Rules = append(info.Rules, schemas.RuleInfo{ID: r.RuleID, Severity: r.Severity, Description: r.Description, Weight: w[r.RuleID]})
	}
	return info, nil
}

// isHash reports whether a policy reference is a revision's hash (64 hex digits) rather
// than a name.
func isHash(ref string) bool {
	if len(ref) != 64 {
		return false
	}
	for _, c := range ref {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// template returns a bundled template asked for by its name (soc2, agent-safety…), as SDKs
// and `troyctl check` name one. It is stored as any policy is, because the events of the
// sessions it guards name its hash and the other stages read it by that hash.
// The name is cached too, so that it is compiled and stored once per process.
func (p *Policies) template(ctx context.Context, name string, t policies.Template) (*evaluator.Compiled, error) {
	c, err := p.compile(t.Policy)
	if err != nil {
		return nil, &event.Permanent{Err: err}
	}
	hash, err := p.Put(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("storing template %s: %w", t.Name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cache[name] = p.cache[hash]
	return p.cache[hash], nil
}
