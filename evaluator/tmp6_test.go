package evaluator_test

import (
	"github.com/troy-audit/troy/ingest/tracegen"
	"os"
	"strconv"
	"testing"
)

func TestTmpIcount(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ITER"))
	c := mergedTemplates(t)
	tr := tracegen.New(tracegen.Options{Steps: 1000, Seed: 1}).Trace()
	for i := 0; i < n; i++ {
		c.Evaluate(tr)
	}
}
