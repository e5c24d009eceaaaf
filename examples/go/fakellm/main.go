// Command fakellm is a scripted OpenAI-compatible model API for trying troy's explanations
// without an API key: every step gets a plain explanation and every trace a summary.
//
//	go run ./examples/go/fakellm --listen 127.0.0.1:8080
//	go run ./cmd/troyctl audit examples/traces/pii-exfiltration.json examples/policy.json \
//	    --base-url http://127.0.0.1:8080/v1 --api-key test
//
// --delay makes each answer take that long, as a real model does.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/troy-audit/troy/sdk/llmtest"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	delay := flag.Duration("delay", 0, "time each answer takes")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	s, h := llmtest.Handle(func(n int, body string, w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(*delay):
		case <-r.Context().Done():
			return
		}
		llmtest.Explains(n, body, w, r)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	fmt.Printf("scripted model API on http://%s/v1 (use --base-url http://%s/v1 --api-key test)\n", ln.Addr(), ln.Addr())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	fmt.Printf("answered %d requests\n", len(s.Requests()))
}
