package replay_test

import (
	"encoding/json"
	"testing"

	"github.com/troy-audit/troy/audit"
	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/internal/replay"
)

// bigAudit is the audit.json of a 5,000-step trace under a policy of every template.
func bigAudit(b *testing.B) []byte {
	b.Helper()
	tr := tracegen.New(tracegen.Options{Steps: 5000, Seed: 3, BadRate: 0.05}).Trace()
	a := audit.Result(compiled(b, "agent_safety"), tr, "off")
	data, err := json.Marshal(a)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkOpen5000Steps times opening a 5,000-step audit: decoding and validating the
// file, indexing it, and drawing the first screen.
func BenchmarkOpen5000Steps(b *testing.B) {
	data := bigAudit(b)
	b.SetBytes(int64(len(data)))
	for range b.N {
		a, err := ingest.DecodeAudit(data)
		if err != nil {
			b.Fatal(err)
		}
		_ = replay.NewModel(replay.NewSession(a, "big"), 120, 40).Render()
	}
}

// BenchmarkKey5000Steps times one key press on a 5,000-step audit: the update and the
// next screen, alternating the next step and the next violation.
func BenchmarkKey5000Steps(b *testing.B) {
	a, err := ingest.DecodeAudit(bigAudit(b))
	if err != nil {
		b.Fatal(err)
	}
	m := replay.NewModel(replay.NewSession(a, "big"), 120, 40)
	keys := []string{"n", "j", "right", "k"}
	b.ResetTimer()
	for i := range b.N {
		next, _ := m.Update(key(keys[i%len(keys)]))
		m = next.(replay.Model)
		_ = m.Render()
	}
}
