// Package event is the wire protocol of the pipeline: the events a trace's life produces
// (a step, an output, an end, a violation, the verdict, the score, explanations, reports,
// dead letters), the envelope they travel in, their subjects and de-duplication ids, and
// how they are read back.
//
// Each event's kind, subject and de-duplication id follow from its payload type: New is
// the one way to make an envelope and Decode the one way to read one, and Decode refuses
// an envelope whose kind is not its payload's. The domain types the events carry (steps,
// violations, explanations) are package schemas'.
package event
