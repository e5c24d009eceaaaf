package policies_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

// The fresh set's figures when it was written, as floors.
const mcpFreshFloor, mcpFreshHonestFloor = 11, 4

// mcpSession is one session of the mcp corpus and the rule ids it must violate.
type mcpSession struct {
	Name   string         `json:"name"`
	Expect []string       `json:"expect"`
	Trace  *schemas.Trace `json:"trace"`
	part   string
}

// loadMCPSessions reads the corpus: the tools/list answers of real servers, ordinary
// sessions (recorded with real servers, or written by hand), the attacks the template was
// tuned on and the held-out attacks.
func loadMCPSessions(t *testing.T) []mcpSession {
	t.Helper()
	var out []mcpSession
	servers, err := filepath.Glob("testdata/mcp/servers/*.json")
	if err != nil || len(servers) == 0 {
		t.Fatalf("no captured servers: %v", err)
	}
	for _, f := range servers {
		var s struct {
			Server, Package, Version string
			Tools                    []any
		}
		readJSON(t, f, &s)
		if len(s.Tools) == 0 || s.Version == "" {
			t.Fatalf("%s: want the tools and the version of %s", f, s.Package)
		}
		tr := &schemas.Trace{TraceID: s.Server, AgentName: "mcp-client", Steps: []*schemas.Step{{
			StepID: "s1", Type: schemas.StepObservation, Description: "tools/list", Input: map[string]any{},
			Output:   map[string]any{"tools": s.Tools},
			Metadata: map[string]any{"mcp_server": s.Server, "mcp_tools_changed": []any{}},
		}}}
		out = append(out, mcpSession{Name: s.Server + "@" + s.Version, Trace: tr, part: "servers"})
	}
	for _, p := range []struct{ file, part string }{
		{"sessions.json", "ordinary"}, {"ordinary.json", "ordinary"}, {"attacks.json", "attacks"}, {"heldout.json", "held-out"},
		{"fresh.json", "fresh"},
	} {
		var ss []mcpSession
		readJSON(t, "testdata/mcp/"+p.file, &ss)
		for i := range ss {
			ss[i].part = p.part
			ss[i].Trace.Normalize()
			if p.part != "fresh" && (p.part == "ordinary") != (len(ss[i].Expect) == 0) {
				t.Fatalf("%s: %s expects %v", p.file, ss[i].Name, ss[i].Expect)
			}
		}
		out = append(out, ss...)
	}
	return out
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestMCPTemplateCorpus audits every session of the corpus with the mcp template: an
// attack violates exactly the rules it expects, an ordinary session none. The second
// held-out set (fresh) is measured, not required: its misses are listed, and its share
// decided exactly must not fall below what it was when it was written.
func TestMCPTemplateCorpus(t *testing.T) {
	tp, err := policies.LookupTemplate("mcp")
	if err != nil {
		t.Fatal(err)
	}
	c := compiledTemplates(t)[tp.Policy.Rules[0].RuleID]
	sessions := loadMCPSessions(t)
	tallies := map[string]*tally{}
	for _, s := range sessions {
		t.Run(s.part+"/"+s.Name, func(t *testing.T) {
			res := c.Evaluate(s.Trace)
			var got []string
			for _, v := range res.Violations {
				if !slices.Contains(got, v.RuleID) {
					got = append(got, v.RuleID)
				}
			}
			for _, e := range res.RuleErrors {
				t.Errorf("rule %s failed: %v", e.RuleID, e)
			}
			sort.Strings(got)
			want := slices.Sorted(slices.Values(s.Expect))
			// A guard fed the session as troyctl mcp feeds it (each step checked, its
			// output recorded after) blocks what the audit flags, except tool poisoning,
			// which reads the tools/list step's own output.
			for _, r := range tp.Policy.Rules {
				if r.RuleID == "mcp-tool-poisoning" {
					continue
				}
				if g, a := guardFiredAt(t, c, s.Trace, r.RuleID), firedAt(s.Trace, res.Violations, r.RuleID); !slices.Equal(g, a) {
					t.Errorf("%s: the guard blocks steps %v, the audit flags %v", r.RuleID, g, a)
				}
			}
			kind := s.part
			if s.part == "fresh" && len(want) == 0 {
				kind = "fresh-honest"
			}
			tl := tallies[kind]
			if tl == nil {
				tl = &tally{}
				tallies[kind] = tl
			}
			tl.n++
			switch {
			case slices.Equal(got, want):
				tl.hit++
			case s.part == "fresh":
				t.Logf("missed: rules violated %v, want %v", got, want)
			default:
				t.Errorf("rules violated %v, want %v", got, want)
			}
		})
	}
	for _, part := range []string{"servers", "ordinary", "attacks", "held-out", "fresh", "fresh-honest"} {
		t.Logf("%-12s sessions decided exactly: %s", part, tallies[part])
	}
	if tl := tallies["fresh"]; tl == nil || tl.hit < mcpFreshFloor {
		t.Errorf("fresh attacks decided exactly: %v, want at least %d", tl, mcpFreshFloor)
	}
	if tl := tallies["fresh-honest"]; tl == nil || tl.hit < mcpFreshHonestFloor {
		t.Errorf("fresh honest tools decided exactly: %v, want at least %d", tl, mcpFreshHonestFloor)
	}
}

// TestMCPMinimalOnOrdinaryUse shows why the mcp template leaves out minimal's rule on
// destructive tools without an approval token: MCP calls carry no such token, so the
// memory server's ordinary delete_* calls would all be blocked.
func TestMCPMinimalOnOrdinaryUse(t *testing.T) {
	c := compiledTemplates(t)["min-destructive-action"]
	flagged := map[string]bool{}
	for _, s := range loadMCPSessions(t) {
		if s.part != "ordinary" {
			continue
		}
		for _, v := range c.Evaluate(s.Trace).Violations {
			if v.RuleID == "min-destructive-action" {
				flagged[s.Name] = true
			}
		}
	}
	if !flagged["memory-knowledge-graph"] {
		t.Errorf("minimal's destructive rule flags %v, want the memory session among them", flagged)
	}
}
