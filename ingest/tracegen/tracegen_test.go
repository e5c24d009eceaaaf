package tracegen_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/ingest/tracegen"
)

func TestGeneratedTracesAreValidAndRepeatable(t *testing.T) {
	a := tracegen.New(tracegen.Options{Steps: 50, Seed: 9}).Trace()
	b := tracegen.New(tracegen.Options{Steps: 50, Seed: 9}).Trace()
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed must give the same trace")
	}
	raw, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ingest.DecodeTrace(raw)
	if err != nil {
		t.Fatalf("a generated trace must pass validation: %v", err)
	}
	if len(back.Steps) != 50 || back.TraceID != a.TraceID {
		t.Fatalf("round trip: %d steps", len(back.Steps))
	}
	kinds := map[string]bool{}
	for _, s := range a.Steps {
		kinds[s.Type] = true
	}
	if len(kinds) != 4 {
		t.Errorf("every step type should appear in 50 steps: %v", kinds)
	}
}
