package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/troy-audit/troy/sdk/agent"
)

// BenchmarkGuardCheck compares one guard check through the HTTP gateway with one over NATS,
// on the same in-process deployment, one caller at a time.
func BenchmarkGuardCheck(b *testing.B) {
	srv, bs := deploymentWithBus(b)
	b.Run("http", func(b *testing.B) {
		client := &http.Client{}
		for i := range b.N {
			req, _ := http.NewRequest("POST", srv.URL+"/v1/guard/check",
				strings.NewReader(fmt.Sprintf(`{"session": "bench-http", "agent": "bot", "mode": "monitor", "step": {"action": "search-%d"}}`, i)))
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := client.Do(req)
			if err != nil || resp.StatusCode != 200 {
				b.Fatal(err, resp)
			}
			resp.Body.Close()
		}
	})
	b.Run("nats", func(b *testing.B) {
		g := agent.New(bs.Conn()).Guard(agent.GuardOptions{Session: "bench-nats", Agent: "bot", Mode: "monitor"})
		for i := range b.N {
			if _, err := g.Check(context.Background(), fmt.Sprint("search-", i), nil, nil, ""); err != nil {
				b.Fatal(err)
			}
		}
	})
}
