// Package pipelinetest runs the pipeline's stages for tests: on a bus a test opened, or as a
// deployment that listens for clients on loopback, stopped when the test ends.
package pipelinetest

import (
	"context"
	"net"
	"testing"

	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/pipeline"
)

// Run runs the stages cfg names on b until the test ends; a failure of the run fails the
// test then. It returns the pipeline and a channel that delivers the run's end.
func Run(t testing.TB, b *bus.Bus, pol *pipeline.Policies, cfg pipeline.Config) (*pipeline.Pipeline, chan error) {
	t.Helper()
	p, err := pipeline.New(b, pol, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return p, done
}

// Deployment runs a NATS server with file storage that listens on loopback, and the stages
// cfg names, until the test ends. It returns the server's URL.
func Deployment(t testing.TB, cfg pipeline.Config) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	b, err := bus.Open(context.Background(), bus.Options{DataDir: t.TempDir(), Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close) // after the stages stop: cleanups run last first
	Run(t, b, pipeline.NewPolicies(b), cfg)
	return "nats://" + addr
}
