package event

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/troy-audit/troy/schemas"
)

// Subjects. Every event of one trace shares one subject in the steps stream, so the stream
// keeps them in order and the end comes after every step.
const (
	StepsPrefix   = "troy.steps"
	ResultsPrefix = "troy.results"
	DeadPrefix    = "troy.dead"
)

// StepsSubject is the subject of a trace's step, output and end events.
func StepsSubject(agent, trace string) string {
	return StepsPrefix + "." + schemas.Token(agent) + "." + schemas.Token(trace)
}

// ResultSubject is the subject of a result event of a trace.
func ResultSubject(kind Kind, agent, trace string) string {
	return ResultsPrefix + "." + string(kind) + "." + schemas.Token(agent) + "." + schemas.Token(trace)
}

// DeadSubject is where a stage's dead letters go.
func DeadSubject(stage string) string { return DeadPrefix + "." + stage }

// MsgID identifies an event for de-duplication: a publish retried with the same id is
// stored once. part names the event within its trace (a step's position, a rule at a
// step's position).
func MsgID(kind Kind, ref TraceRef, part string) string {
	return string(kind) + "|" + schemas.Token(ref.Run) + "|" + schemas.Token(ref.TraceID) + "|" + schemas.Token(part)
}

// NewRun returns a fresh run id for a sending of a trace: unique without coordination.
func NewRun() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}

// ResultFilter is the subject filter of every result event of a kind.
func ResultFilter(kind Kind) string { return ResultsPrefix + "." + string(kind) + ".>" }

// Streams: the steps stream holds every troy.steps subject, the results stream every
// troy.results subject, the dead-letter stream every troy.dead subject.
const (
	StepsStream   = "TROY_STEPS"
	ResultsStream = "TROY_RESULTS"
	DeadStream    = "TROY_DEAD"
)
