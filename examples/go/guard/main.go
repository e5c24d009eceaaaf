// Command guard is an agent guarded by troy: it asks before each tool call and records each
// result. Start a deployment first:
//
//	go run ./cmd/troyctl serve --policy minimal
//	go run ./examples/go/guard
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/troy-audit/troy/sdk/agent"
)

func main() {
	url := flag.String("nats", "nats://127.0.0.1:4222", "NATS URL of troyctl serve")
	flag.Parse()
	ctx := context.Background()
	conn, err := agent.Connect(ctx, agent.Options{URL: *url})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	g := conn.Guard(agent.GuardOptions{
		Session: fmt.Sprintf("example-%d", time.Now().Unix()),
		Agent:   "example-agent",
		// Fail closed: when troy cannot answer, the call does not run.
	})
	calls := []struct {
		tool string
		meta map[string]any
	}{
		{"get_customer_profile", map[string]any{"data_classification": "pii"}},
		{"search_docs", nil},
		{"http_post", map[string]any{"network_zone": "external"}},
	}
	for _, c := range calls {
		out, err := agent.Guarded(ctx, g, c.tool, map[string]any{"example": true}, c.meta, func(context.Context) (string, error) {
			return "ran " + c.tool, nil
		})
		var blocked *agent.BlockedError
		switch {
		case errors.As(err, &blocked):
			fmt.Printf("%-22s blocked: %v\n", c.tool, err)
		case err != nil:
			log.Fatal(err)
		default:
			fmt.Printf("%-22s %s\n", c.tool, out)
		}
	}
	if err := g.End(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("session ended; its report appears under the server's reports directory")
}
