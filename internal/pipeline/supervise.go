package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Restart is the supervision policy of the components, after Erlang/OTP supervisors'
// restart intensity: a component that fails (returns an error, or returns at all before
// the pipeline stops) is started again after a pause that doubles from Backoff up to
// MaxBackoff; when it has failed more than MaxRestarts times within Window, the pipeline
// stops every component and Run returns the error, so that the process exits non-zero and
// whatever runs it (systemd, Kubernetes) restarts it and shows the failure. While a
// component is failing, Health says so.
type Restart struct {
	MaxRestarts int           // restarts within Window before giving up; 0 gives up at the first failure
	Window      time.Duration // zero means 5 minutes
	Backoff     time.Duration // the first pause; zero means 1s
	MaxBackoff  time.Duration // zero means 30s
}

// DefaultRestart is the policy of `troyctl serve`: five restarts (pauses of 1, 2, 4, 8 and
// 16 seconds) ride through a NATS leader election or a brief outage; a component still
// failing after half a minute stops the process.
var DefaultRestart = Restart{MaxRestarts: 5}

func (r Restart) withDefaults() Restart {
	if r.Window <= 0 {
		r.Window = 5 * time.Minute
	}
	if r.Backoff <= 0 {
		r.Backoff = time.Second
	}
	if r.MaxBackoff <= 0 {
		r.MaxBackoff = 30 * time.Second
	}
	r.MaxRestarts = max(r.MaxRestarts, 0)
	return r
}

// Component states, as Health reports them.
const (
	StateRunning    = "running"
	StateRestarting = "restarting" // failed, and waiting to be started again
	StateFailed     = "failed"     // failed too often: the pipeline stops
	StateStopped    = "stopped"
)

// ComponentHealth is the state of one component.
type ComponentHealth struct {
	State string `json:"state"`
	// Error is the last failure's, while the component is restarting or failed.
	Error string `json:"error,omitempty"`
	// Restarts counts the restarts since the process started.
	Restarts int       `json:"restarts"`
	Since    time.Time `json:"since"` // when the state began
}

// OK reports whether the component is doing its work.
func (h ComponentHealth) OK() bool { return h.State == StateRunning }

// supervisor runs components under a restart policy and keeps their health.
type supervisor struct {
	policy Restart
	log    *slog.Logger
	mu     sync.Mutex
	health map[string]ComponentHealth
}

func newSupervisor(policy Restart, log *slog.Logger) *supervisor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &supervisor{policy: policy.withDefaults(), log: log, health: map[string]ComponentHealth{}}
}

func (s *supervisor) set(name string, h ComponentHealth) {
	h.Since = time.Now()
	s.mu.Lock()
	s.health[name] = h
	s.mu.Unlock()
}

// Health returns each component's state.
func (s *supervisor) Health() map[string]ComponentHealth {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]ComponentHealth, len(s.health))
	for k, v := range s.health {
		out[k] = v
	}
	return out
}

// run runs the components until ctx ends or one fails for good; then it stops the others
// and returns that failure. A component failing when ctx ends is an error too.
func (s *supervisor) run(ctx context.Context, components map[string]func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(components))
	for name, f := range components {
		s.set(name, ComponentHealth{State: StateRunning})
		go func() {
			err := s.supervise(ctx, name, f)
			if err != nil {
				cancel() // one component gave up: the process stops
			}
			errs <- err
		}()
	}
	var err error
	for range components {
		err = errors.Join(err, <-errs)
	}
	return err
}

// supervise runs one component, restarting it as the policy says.
func (s *supervisor) supervise(ctx context.Context, name string, f func(context.Context) error) error {
	var failures []time.Time // within the window
	restarts := 0
	for {
		err := f(ctx)
		if ctx.Err() != nil {
			s.set(name, ComponentHealth{State: StateStopped, Restarts: restarts})
			return nil
		}
		if err == nil {
			err = errors.New("stopped on its own")
		}
		now := time.Now()
		failures = append(failures, now)
		for len(failures) > 0 && now.Sub(failures[0]) > s.policy.Window {
			failures = failures[1:]
		}
		if len(failures) > s.policy.MaxRestarts {
			s.set(name, ComponentHealth{State: StateFailed, Error: err.Error(), Restarts: restarts})
			s.log.Error("component failed; stopping", "component", name, "failures", len(failures), "window", s.policy.Window, "err", err)
			return fmt.Errorf("component %s stopped the pipeline: %d failures within %s, %d restarts allowed; the last: %w", name, len(failures), s.policy.Window, s.policy.MaxRestarts, err)
		}
		pause := min(s.policy.Backoff<<min(len(failures)-1, 20), s.policy.MaxBackoff)
		s.set(name, ComponentHealth{State: StateRestarting, Error: err.Error(), Restarts: restarts})
		s.log.Error("component failed; restarting", "component", name, "in", pause, "err", err)
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			s.set(name, ComponentHealth{State: StateStopped, Error: err.Error(), Restarts: restarts})
			return fmt.Errorf("component %s was failing when the pipeline stopped: %w", name, err)
		}
		restarts++
		s.set(name, ComponentHealth{State: StateRunning, Restarts: restarts})
	}
}
