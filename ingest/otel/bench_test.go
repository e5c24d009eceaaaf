package otel

import (
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// benchExport is the SDK's GenAI agent run copied into n traces of their own, in one
// export: 9 spans each, 6 of them steps.
func benchExport(b *testing.B, n int) (ptrace.Traces, int) {
	spans := singleSpans(&testing.T{}, "testdata/genai-agent.otlp.jsonl")
	td := ptrace.NewTraces()
	count := 0
	for i := range n {
		for _, one := range spans {
			rs := td.ResourceSpans().AppendEmpty()
			one.ResourceSpans().At(0).CopyTo(rs)
			sp := rs.ScopeSpans().At(0).Spans().At(0)
			id := sp.TraceID()
			id[0], id[1] = byte(i), byte(i>>8)
			sp.SetTraceID(pcommon.TraceID(id))
			count++
		}
	}
	if count == 0 {
		b.Fatal("no spans")
	}
	return td, count
}

// BenchmarkAssemble maps decoded spans into steps and assembles their traces.
func BenchmarkAssemble(b *testing.B) {
	td, spans := benchExport(b, 100)
	b.ReportAllocs()
	for b.Loop() {
		a := NewAssembler(Limits{})
		a.Add(td, time.Time{})
		if got := a.Flush(); len(got) != 100 {
			b.Fatalf("%d traces", len(got))
		}
	}
	b.ReportMetric(float64(spans)*float64(b.N)/b.Elapsed().Seconds(), "spans/s")
}

// BenchmarkDecodeAndAssemble adds pdata's decoding of OTLP JSON, as a file is read.
func BenchmarkDecodeAndAssemble(b *testing.B) {
	td, spans := benchExport(b, 100)
	m := ptrace.JSONMarshaler{}
	data, err := m.MarshalTraces(td)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		td, err := DecodeJSON(data)
		if err != nil {
			b.Fatal(err)
		}
		a := NewAssembler(Limits{})
		a.Add(td, time.Time{})
		if got := a.Flush(); len(got) != 100 {
			b.Fatalf("%d traces", len(got))
		}
	}
	b.ReportMetric(float64(spans)*float64(b.N)/b.Elapsed().Seconds(), "spans/s")
}
