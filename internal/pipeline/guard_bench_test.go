package pipeline_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/agent"
)

// BenchmarkGuardService times guard checks through the guard service in process: an
// embedded server with file storage, agent_safety, steps of generated agents in monitor
// mode, 20 checks a session. callers=32 runs 32 callers at once and reports, besides
// ns/op (the inverse of the throughput), the median and 99th percentile of a check, and
// the process's CPU time per check (callers, server and guard together), which other
// processes on the machine do not inflate as they do the latency.
func BenchmarkGuardService(b *testing.B) {
	ctx := context.Background()
	bs, stop := guardDeployment(ctx, b, bus.Options{DataDir: b.TempDir()}, "agent_safety")
	defer stop()
	conn := agent.New(bs.Conn())
	var sessions atomic.Int64
	// caller checks n steps of generated agents, a session every 20, and returns each
	// check's time.
	caller := func(b *testing.B, seed uint64, n int) []time.Duration {
		gen := tracegen.New(tracegen.Options{Steps: 20, Seed: seed})
		times := make([]time.Duration, 0, n)
		for len(times) < n {
			g := conn.Guard(agent.GuardOptions{Session: fmt.Sprint("bench-", sessions.Add(1)), Agent: "bench", Mode: schemas.ModeMonitor})
			for _, s := range gen.Trace().Steps {
				if len(times) == n {
					break
				}
				t0 := time.Now()
				if _, err := g.Check(ctx, s.Description, s.Input, s.Metadata, s.Type); err != nil {
					b.Error(err)
					return times
				}
				times = append(times, time.Since(t0))
			}
		}
		return times
	}
	for _, callers := range []int{1, 32} {
		b.Run(fmt.Sprint("callers=", callers), func(b *testing.B) {
			var (
				mu  sync.Mutex
				all []time.Duration
				wg  sync.WaitGroup
			)
			cpu0 := cpuTime(b)
			b.ResetTimer()
			for w := range callers {
				n := b.N / callers
				if w < b.N%callers {
					n++
				}
				wg.Go(func() {
					times := caller(b, uint64(w)+1, n)
					mu.Lock()
					all = append(all, times...)
					mu.Unlock()
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			slices.Sort(all)
			if len(all) > 0 {
				b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}

// cpuTime is the CPU time the process has used, in user and system mode.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
