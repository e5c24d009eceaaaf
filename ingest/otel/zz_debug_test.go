package otel

import (
	"os"
	"testing"

	"github.com/troy-audit/troy/schemas/pyjson"
)

func TestZZDebug(t *testing.T) {
	for _, f := range []string{"genai-agent", "openinference", "vercel-ai"} {
		data, _ := os.ReadFile("testdata/" + f + ".otlp.jsonl")
		trs, a := assembleLines(t, data)
		for _, tr := range trs {
			b, _ := pyjson.Marshal(tr.Trace)
			t.Logf("%s %v\n%s", f, tr.Err, b)
		}
		t.Logf("%+v", a.Stats())
	}
}
