// Command publish sends a trace file to troy step by step, as an agent would while it runs.
// Start a deployment first:
//
//	go run ./cmd/troyctl serve --policy examples/policy.json
//	go run ./examples/go/publish examples/traces/pii-exfiltration.json
package main

import (
	"context"
	"flag"
	"fmt"
	"log"

	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/sdk/agent"
)

func main() {
	url := flag.String("nats", "nats://127.0.0.1:4222", "NATS URL of troyctl serve")
	flag.Parse()
	if flag.NArg() != 1 {
		log.Fatal("usage: publish [--nats URL] TRACE.json")
	}
	ctx := context.Background()
	t, err := ingest.LoadTrace(ctx, flag.Arg(0), ingest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	conn, err := agent.Connect(ctx, agent.Options{URL: *url})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	tr := conn.StartTrace(t.TraceID, t.AgentName, t.Metadata, "") // the server's default policy
	for _, s := range t.Steps {
		if err := tr.Step(ctx, s); err != nil {
			log.Fatal(err)
		}
	}
	if err := tr.End(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("sent %d steps of trace %s; violations appear on troy.results.violation.>\n", len(t.Steps), t.TraceID)
}
