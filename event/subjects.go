package event

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
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
	return StepsPrefix + "." + SubjectToken(agent) + "." + SubjectToken(trace)
}

// ResultSubject is the subject of a result event of a trace.
func ResultSubject(kind Kind, agent, trace string) string {
	return ResultsPrefix + "." + string(kind) + "." + SubjectToken(agent) + "." + SubjectToken(trace)
}

// DeadSubject is where a stage's dead letters go.
func DeadSubject(stage string) string { return DeadPrefix + "." + stage }

// MsgID identifies an event for de-duplication: a publish retried with the same id is
// stored once. part names the event within its trace (a step's position, a rule at a
// step's position).
func MsgID(kind Kind, ref TraceRef, part string) string {
	return string(kind) + "|" + SubjectToken(ref.Run) + "|" + SubjectToken(ref.TraceID) + "|" + SubjectToken(part)
}

// NewRun returns a fresh run id for a sending of a trace: unique without coordination.
func NewRun() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}

// SubjectToken encodes an id as one subject token, reversibly: letters, digits, '-' and
// '_' stay, every other byte becomes ~ and two hex digits, and the empty id is "~".
func SubjectToken(id string) string {
	if id == "" {
		return "~"
	}
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
			continue
		}
		const hex = "0123456789abcdef"
		b.WriteByte('~')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// ParseSubjectToken reverses SubjectToken.
func ParseSubjectToken(tok string) (string, error) {
	if tok == "~" {
		return "", nil
	}
	var b strings.Builder
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != '~' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(tok) {
			return "", fmt.Errorf("subject token %q: truncated escape at byte %d", tok, i)
		}
		v, err := strconv.ParseUint(tok[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("subject token %q: bad escape at byte %d", tok, i)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
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
