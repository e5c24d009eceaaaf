package otel

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"
)

// assembleLines adds each line of an OTLP JSON file and flushes.
func assembleLines(t *testing.T, data []byte) ([]Trace, *Assembler) {
	t.Helper()
	a := NewAssembler(Limits{})
	for i, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		td, err := DecodeJSON(line)
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if res := a.Add(td, time.Time{}); res.Err != nil {
			t.Fatalf("line %d: %v", i+1, res.Err)
		}
	}
	return a.Flush(), a
}

// shapes describes the steps of the traces in a file without their ids and times: agent,
// type, description, the parent's description, input and output keys.
func shapes(t *testing.T, data []byte) []string {
	t.Helper()
	traces, _ := assembleLines(t, data)
	var out []string
	for _, tr := range traces {
		if tr.Err != nil {
			t.Fatalf("trace %s: %v", tr.TraceID, tr.Err)
		}
		desc := map[string]string{}
		for _, s := range tr.Trace.Steps {
			desc[s.StepID] = s.Description
		}
		for _, s := range tr.Trace.Steps {
			parent := "-"
			if s.ParentStepID != nil {
				parent = desc[*s.ParentStepID]
			}
			out = append(out, fmt.Sprintf("%s %s %s <%s> in%v out%v", tr.Trace.AgentName, s.Type, s.Description, parent, keys(s.Input), keys(s.Output)))
		}
	}
	return out
}

func keys(m map[string]any) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	sort.Strings(k)
	return k
}

func equalShapes(a, b []string) bool { return slices.Equal(a, b) }

func splitLines(data []byte) [][]byte {
	var out [][]byte
	for _, l := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			out = append(out, l)
		}
	}
	return out
}
