package pipeline

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Rule ids past MaxRuleLabels are counted as "other", and so are severities no policy
// may give, so that the series stay bounded whatever policies clients store.
func TestViolationLabelsAreBounded(t *testing.T) {
	m := NewMetrics()
	for i := range MaxRuleLabels + 50 {
		m.violation(fmt.Sprintf("rule-%d", i), "high")
	}
	m.violation("rule-0", "high")         // seen already: kept
	m.violation("rule-0", "catastrophic") // not a severity
	tests := []struct {
		rule, severity string
		want           float64
	}{
		{"rule-0", "high", 2},
		{fmt.Sprintf("rule-%d", MaxRuleLabels-1), "high", 1},
		{OtherRule, "high", 50},
		{"rule-0", OtherRule, 1},
	}
	for _, tt := range tests {
		var c dto.Metric
		if err := m.violations.WithLabelValues(tt.rule, tt.severity).Write(&c); err != nil {
			t.Fatal(err)
		}
		if got := c.GetCounter().GetValue(); got != tt.want {
			t.Errorf("%s/%s: %v, want %v", tt.rule, tt.severity, got, tt.want)
		}
	}
	ch := make(chan prometheus.Metric, 2*MaxRuleLabels)
	m.violations.Collect(ch)
	close(ch)
	if n := len(ch); n != MaxRuleLabels+2 {
		t.Errorf("%d series, want %d", n, MaxRuleLabels+2)
	}
}
