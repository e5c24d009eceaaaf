package evaluator

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dustin/go-humanize"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

// Resource limits. A condition is evaluated once per rule and step; each evaluation gets a
// fresh budget of time and memory. What a condition allocates is counted before it is
// allocated where the size can be known (repeat, join, concatenation, lists built by
// map and filter, the state of nested loops), so a condition that would need gigabytes
// fails at its first step instead of taking the process down.
const (
	// DefaultTimeLimit is how long one evaluation of a condition may run.
	DefaultTimeLimit = time.Second
	// DefaultMemoryLimit is how many bytes one evaluation of a condition may allocate.
	DefaultMemoryLimit = 16 << 20

	// maxQuantifierDepth bounds how deeply quantifiers (any, all, map, filter, …) nest.
	maxQuantifierDepth = 4
	// maxKnownIterations bounds the iterations of nested quantifiers over lists whose
	// lengths are known when the policy loads.
	maxKnownIterations = 1_000_000
	// maxDynamicPattern bounds a regular expression computed at run time, which is
	// compiled when it runs.
	maxDynamicPattern = 64 << 10
	// clockEvery is how many units of work pass between two readings of the clock.
	clockEvery = 64
)

// Names of the limits, in errors, quarantines and metrics.
const (
	LimitTime       = "time"
	LimitMemory     = "memory"
	LimitIterations = "iterations"
	LimitDepth      = "depth"
)

// Limits bound one evaluation of one condition at one step.
type Limits struct {
	// Time is how long an evaluation may run; zero means DefaultTimeLimit.
	Time time.Duration
	// Memory is how many bytes an evaluation may allocate, as troy counts them: texts,
	// lists and maps the condition builds, and the state of its loops. Zero means
	// DefaultMemoryLimit.
	Memory int64
}

func (l Limits) orDefault() Limits {
	if l.Time <= 0 {
		l.Time = DefaultTimeLimit
	}
	if l.Memory <= 0 {
		l.Memory = DefaultMemoryLimit
	}
	return l
}

// LimitError is a condition breaking a limit.
type LimitError struct {
	Limit string // LimitTime, LimitMemory, LimitIterations or LimitDepth
	Msg   string
}

func (e *LimitError) Error() string { return e.Msg }

// limitOf returns the limit an evaluation error broke, or "" when it broke none. expr's
// own memory budget, checked after it allocates, counts as the memory limit.
func limitOf(err error) string {
	var le *LimitError
	if errors.As(err, &le) {
		return le.Limit
	}
	var fe *file.Error
	if errors.As(err, &fe) && fe.Message == "memory budget exceeded" {
		return LimitMemory
	}
	return ""
}

// asLimit returns the limit error err carries, or nil; expr's own memory budget counts.
func asLimit(err error) *LimitError {
	var le *LimitError
	if errors.As(err, &le) {
		return le
	}
	if limitOf(err) == LimitMemory {
		return &LimitError{Limit: LimitMemory, Msg: "memory budget exceeded"}
	}
	return nil
}

// size formats a number of bytes for messages: 16 MiB, 1.5 KiB.
func size(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d bytes", n)
	}
	return humanize.IBytes(uint64(n))
}

// budget is what the evaluation of a condition at a step has used. One lives in each
// session; it is reset before each rule runs. Work is counted in units (a loop
// iteration, or 1 KiB allocated), and the clock is read every clockEvery units: the first
// reading starts the evaluation's clock, so an evaluation that does little never reads
// it.
type budget struct {
	maxBytes int64
	maxTime  time.Duration
	used     int64
	work     int64
	start    time.Time
	// active is set while a rule's or predicate's program runs, so that matching outside
	// programs (conditions compiled to Go, which cannot fail) is not charged.
	active bool
}

func newBudget(l Limits) budget { return budget{maxBytes: l.Memory, maxTime: l.Time} }

func (b *budget) reset() {
	b.used, b.work, b.start = 0, 0, time.Time{}
}

// tick counts a loop iteration that allocates cost bytes.
func (b *budget) tick(cost int64) error {
	if cost > 0 {
		if b.used += cost; b.used > b.maxBytes {
			return b.memoryError("what the condition's loops build")
		}
	}
	if b.work++; b.work >= clockEvery {
		return b.clock()
	}
	return nil
}

// charge counts n bytes about to be allocated; what names the allocation in the error,
// and is only called then.
func (b *budget) charge(n int64, what func() string) error {
	if n < 0 || n > b.maxBytes-b.used {
		return b.memoryError(what())
	}
	b.used += n
	return b.spend(1 + n>>10)
}

// spend counts units of work.
func (b *budget) spend(units int64) error {
	if b.work += units; b.work >= clockEvery {
		return b.clock()
	}
	return nil
}

func (b *budget) memoryError(what string) error {
	return &LimitError{Limit: LimitMemory, Msg: what + " exceeds the " + size(b.maxBytes) + " limit"}
}

// remaining is how many bytes may still be charged.
func (b *budget) remaining() int64 { return b.maxBytes - b.used }

func (b *budget) clock() error {
	b.work = 0
	now := time.Now()
	if b.start.IsZero() {
		b.start = now
		return nil
	}
	if now.Sub(b.start) > b.maxTime {
		return &LimitError{Limit: LimitTime, Msg: "the condition ran longer than the " + b.maxTime.String() + " limit"}
	}
	return nil
}

// pause sets the budget aside while something with budgets of its own runs (memoized
// predicates, each charged to the step it is evaluated on); resume gives it back, with
// the time that passed meanwhile not counted.
func (b *budget) pause() (saved budget, at time.Time) {
	saved = *b
	if !b.start.IsZero() {
		at = time.Now()
	}
	return saved, at
}

func (b *budget) resume(saved budget, at time.Time) {
	*b = saved
	if !at.IsZero() {
		b.start = b.start.Add(time.Since(at))
	}
}

// mul multiplies sizes, saturating instead of overflowing.
func mul(a, b int64) int64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}

// Bytes charged for what loops and lists hold: a list element (an interface value), and
// a loop's state, which expr keeps in a pool that grows with every loop started within a
// run.
const (
	slotBytes  = int64(unsafe.Sizeof(any(nil)))
	scopeBytes = 2 * int64(unsafe.Sizeof(vm.Scope{})) // the pool grows by doubling
)

// Quarantine describes a rule that is no longer evaluated because it broke a limit: at a
// step, or when the policy loaded. It lasts as long as the compiled policy (one revision
// in one process). The rule's condition is not run again; each step where it would have
// run records a rule error that says why.
type Quarantine struct {
	PolicyHash string `json:"policy_hash"`
	RuleID     string `json:"rule_id"`
	Limit      string `json:"limit"`    // LimitTime, LimitMemory, LimitIterations or LimitDepth
	Reason     string `json:"reason"`   // the error, on one line
	TraceID    string `json:"trace_id"` // where it broke the limit; empty when found at load
	StepID     string `json:"step_id"`
}

// String says where and why, for the rule errors of later steps.
func (q Quarantine) String() string {
	if q.StepID == "" {
		return "rule quarantined when the policy loaded: " + q.Reason
	}
	return fmt.Sprintf("rule quarantined after step %s of trace %q: %s", q.StepID, q.TraceID, q.Reason)
}

// quarantine marks rule i quarantined, once; the first caller wins and is reported.
func (c *Compiled) quarantine(i int, q Quarantine) {
	q.PolicyHash, q.RuleID = c.hash, c.rules[i].RuleID
	if c.quarantined[i].CompareAndSwap(nil, &q) && c.onQuarantine != nil {
		c.onQuarantine(q)
	}
}

// Quarantined lists the rules quarantined so far, in rule order.
func (c *Compiled) Quarantined() []Quarantine {
	var out []Quarantine
	for i := range c.quarantined {
		if q := c.quarantined[i].Load(); q != nil {
			out = append(out, *q)
		}
	}
	return out
}

// quarantines is the quarantine state of a compiled policy's rules, by rule index.
type quarantines []atomic.Pointer[Quarantine]

// oneLineError is the message of a rule error: the first line of err, positions as the
// compiler gives them.
func oneLineError(err error) string { return oneLine(conditionError(err).Error()) }

// reason words a limit error for a quarantine.
func reason(err error) string { return strings.TrimSpace(oneLineError(err)) }
