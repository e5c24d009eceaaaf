package evaluator_test

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/evaltest"
)

// Every condition shown in docs/POLICIES.md compiles and runs without failing on a trace.
func TestDocumentedConditionsCompile(t *testing.T) {
	f, err := os.Open("../docs/POLICIES.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var conds []string
	inBlock, plain := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			inBlock = !inBlock
			plain = inBlock && line == "```"
			continue
		}
		if !inBlock || !plain {
			continue
		}
		if i := strings.Index(line, "  //"); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "//") || strings.HasPrefix(line, "policy.json:") || strings.HasPrefix(line, "Trace ") {
			continue
		}
		conds = append(conds, line)
	}
	if len(conds) < 30 {
		t.Fatalf("found only %d documented conditions", len(conds))
	}
	for _, cond := range conds {
		c, err := evaluator.Compile(evaltest.PolicyOf(cond))
		if err != nil {
			t.Errorf("documented condition does not compile: %s\n%v", cond, err)
			continue
		}
		if errs := c.Evaluate(fixture()).RuleErrors; len(errs) > 0 && !strings.Contains(cond, "step.metadata.a.b") {
			t.Errorf("documented condition fails at run time: %s\n%+v", cond, errs)
		}
	}
}
