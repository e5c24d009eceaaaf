package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/policies"
)

// ServeConfig configures a long-running deployment.
type ServeConfig struct {
	Config
	// Policy is the default policy for traces that name none: a file, which is watched
	// and reloaded when it changes, or a bundled template name. Empty keeps the stored
	// default.
	Policy string
	// MetricsAddr serves /healthz and /metrics; empty serves nothing.
	MetricsAddr string
	// Reload is how often the policy file is checked for changes; zero means 2s.
	Reload time.Duration
	// OnReady is called once the components answer requests.
	OnReady func()
	// Build names the running build in troy_build_info.
	Build BuildInfo
}

// BuildInfo names a build: its version and VCS commit ("unknown" when not known).
type BuildInfo struct{ Version, Commit string }

// Server runs the pipeline of a deployment.
type Server struct {
	b      *bus.Bus
	pol    *Policies
	cfg    ServeConfig
	p      *Pipeline
	log    *slog.Logger
	policy atomic.Value // hash of the default policy, once loaded
	reg    *prometheus.Registry
	ln     net.Listener
	// Changes of the policy file loaded, and refused.
	reloads, reloadErrors atomic.Int64
}

// NewServer prepares a server; Run starts it.
func NewServer(b *bus.Bus, cfg ServeConfig) (*Server, error) {
	pol := NewPolicies(b)
	p, err := New(b, pol, cfg.Config)
	if err != nil {
		return nil, err
	}
	s := &Server{b: b, pol: pol, cfg: cfg, p: p, log: cfg.Logger, reg: prometheus.NewRegistry()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	pol.log = s.log
	if s.cfg.Reload <= 0 {
		s.cfg.Reload = 2 * time.Second
	}
	s.metrics()
	if cfg.MetricsAddr != "" {
		if s.ln, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return nil, fmt.Errorf("metrics address: %w", err)
		}
	}
	return s, nil
}

// Policies is the server's policy store.
func (s *Server) Policies() *Policies { return s.pol }

// DefaultPolicy is the content hash of the running default policy; empty before one is loaded.
func (s *Server) DefaultPolicy() string {
	hash, _ := s.policy.Load().(string)
	return hash
}

// Register adds collectors to /metrics, for parts of serve that run beside the pipeline
// (the OTLP receiver).
func (s *Server) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := s.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// MetricsURL is the base URL of /healthz and /metrics, when served.
func (s *Server) MetricsURL() string {
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// Run loads the default policy and runs until ctx ends, then drains.
func (s *Server) Run(ctx context.Context) error {
	if s.cfg.Policy != "" {
		if err := s.loadPolicy(ctx); err != nil {
			return err
		}
	} else if hash, err := s.pol.Default(ctx); err == nil {
		s.policy.Store(hash)
	}
	var wg sync.WaitGroup
	if s.ln != nil {
		// No write deadline: /debug/pprof/profile writes after the seconds it is asked for.
		srv := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			IdleTimeout: time.Minute, MaxHeaderBytes: 64 << 10}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("metrics server", "err", err)
			}
		}()
		defer func() {
			shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutCtx)
			wg.Wait()
		}()
	}
	if _, err := os.Stat(s.cfg.Policy); err == nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.watchPolicy(ctx)
		}()
	}
	if s.cfg.OnReady != nil {
		go func() {
			select {
			case <-s.p.Ready():
				s.cfg.OnReady()
			case <-ctx.Done():
			}
		}()
	}
	// A connection NATS closed for good stops the components and the process, with the
	// reason: nothing would be handled any more, and a supervisor restarts the process.
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-s.b.Lost():
			cancel(s.b.LostError())
		case <-runCtx.Done():
		}
	}()
	err := s.p.Run(runCtx)
	if cause := context.Cause(runCtx); errors.Is(cause, bus.ErrLost) {
		return cause
	}
	return err
}

func (s *Server) loadPolicy(ctx context.Context) error {
	p, err := policies.Resolve(s.cfg.Policy)
	if err != nil {
		return err
	}
	c, err := evaluator.Compile(p)
	if err != nil {
		return err
	}
	hash, err := s.pol.SetDefault(ctx, c)
	if err != nil {
		return err
	}
	if old, _ := s.policy.Load().(string); old != hash {
		s.log.Info("default policy", "policy_id", p.PolicyID, "hash", hash, "rules", len(p.Rules), "converted_from_python", p.Converted)
		for _, w := range p.ConversionWarnings {
			s.log.Warn("policy converted from Python fails at run time as the Python tool's does", "warning", w.String())
		}
	}
	s.policy.Store(hash)
	return nil
}

// watchPolicy reloads the policy file when its content changes. A revision that does not
// load is logged and counted, and the running one is kept.
func (s *Server) watchPolicy(ctx context.Context) {
	stamp := func() [32]byte {
		data, err := os.ReadFile(s.cfg.Policy)
		if err != nil {
			return [32]byte{} // gone or unreadable for now: wait for it to come back
		}
		return sha256.Sum256(data)
	}
	// A change is loaded once the content is the same on two checks in a row, so that a
	// file caught half written by an editor is not taken for a broken revision.
	loaded := stamp()
	seen := loaded
	tick := time.NewTicker(s.cfg.Reload)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			now := stamp()
			if now != seen {
				seen = now
				continue
			}
			if now == loaded || now == [32]byte{} {
				continue
			}
			loaded = now
			if err := s.loadPolicy(ctx); err != nil {
				s.reloadErrors.Add(1)
				s.log.Error("policy change not loaded; keeping the running revision", "err", err, "policy", s.DefaultPolicy())
				continue
			}
			s.reloads.Add(1)
		}
	}
}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		hash, _ := s.policy.Load().(string)
		health := s.p.Health()
		status := map[string]any{"nats": s.b.Connected(), "policy": hash, "components": health}
		// Every reason not to be ok, one line each: a probe's log says what is wrong.
		var problems []string
		if !s.b.Connected() {
			problems = append(problems, "nats: not connected")
		}
		if hash == "" {
			problems = append(problems, "policy: no default policy loaded")
		}
		for _, name := range slices.Sorted(maps.Keys(health)) {
			if h := health[name]; !h.OK() {
				problems = append(problems, fmt.Sprintf("%s: %s after %d restarts: %s", name, h.State, h.Restarts, h.Error))
			}
		}
		code := http.StatusOK
		status["status"] = "ok"
		if len(problems) > 0 {
			code = http.StatusServiceUnavailable
			status["status"], status["problems"] = "not ok", problems
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(status)
	})
	return mux
}

// metrics registers the counters of every component.
func (s *Server) metrics() {
	counter := func(name, help string, read func(*bus.Stats) int64) {
		for comp, st := range s.p.Stats {
			s.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "troy_" + name, Help: help, ConstLabels: prometheus.Labels{"component": comp},
			}, func() float64 { return float64(read(st)) }))
		}
	}
	counter("events_in_total", "Events handed to the component, redeliveries included.", func(st *bus.Stats) int64 { return st.In.Load() })
	counter("events_out_total", "Events the component produced.", func(st *bus.Stats) int64 { return st.Out.Load() })
	counter("redeliveries_total", "Events delivered again after a failure or a timeout.", func(st *bus.Stats) int64 { return st.Redelivered.Load() })
	counter("failures_total", "Events whose handling failed.", func(st *bus.Stats) int64 { return st.Failed.Load() })
	counter("dead_letters_total", "Events sent to the dead-letter subject.", func(st *bus.Stats) int64 { return st.Dead.Load() })
	type consumer struct{ component, stream, name string }
	var consumers []consumer
	for comp := range s.p.Stats {
		if comp == Sink {
			consumers = append(consumers, consumer{SinkSteps, bus.StepsStream, SinkSteps}, consumer{SinkResults, bus.ResultsStream, SinkResults})
			continue
		}
		c, _ := s.p.component(comp)
		consumers = append(consumers, consumer{comp, c.Stream, c.Name})
	}
	for _, c := range consumers {
		s.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "troy_consumer_lag", Help: "Events the component has yet to handle.", ConstLabels: prometheus.Labels{"component": c.component},
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			lag, err := s.b.Lag(ctx, c.stream, c.name)
			if c.component == Evaluator && s.p.cfg.Partitions > 0 {
				lag, err = s.b.PartitionedLag(ctx, s.p.partitioned(bus.Consumer{Name: c.name, Stream: c.stream}))
			}
			if err != nil {
				return -1
			}
			return float64(lag)
		}))
	}
	for result, n := range map[string]*atomic.Int64{"loaded": &s.reloads, "refused": &s.reloadErrors} {
		s.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "troy_policy_reloads_total", Help: "Changes of the policy file, loaded or refused (the running revision is kept).",
			ConstLabels: prometheus.Labels{"result": result},
		}, func() float64 { return float64(n.Load()) }))
	}
	for limit, n := range s.pol.quarantined {
		s.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "troy_rules_quarantined_total", Help: "Rules quarantined for their policy revision because they broke a limit (time, memory, iterations, depth); each is logged once and reports rule errors.",
			ConstLabels: prometheus.Labels{"limit": limit},
		}, func() float64 { return float64(n.Load()) }))
	}
	if st := s.p.Stats[Evaluator]; st != nil && s.p.cfg.Partitions > 0 {
		s.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "troy_partitions_owned", Help: "Partitions of the steps stream this evaluator fetches from (serve --evaluator-partitions).",
		}, func() float64 { return float64(st.Owned.Load()) }))
	}
	s.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "troy_open_traces", Help: "Traces the evaluator holds state for.",
	}, func() float64 { return float64(s.p.Eval.OpenTraces()) }))
	for _, name := range s.p.componentNames() {
		s.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "troy_component_up", Help: "1 while the component runs, 0 while it is restarting or has failed.", ConstLabels: prometheus.Labels{"component": name},
		}, func() float64 {
			if s.p.Health()[name].OK() {
				return 1
			}
			return 0
		}))
		s.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "troy_component_restarts_total", Help: "Restarts of the component after it failed.", ConstLabels: prometheus.Labels{"component": name},
		}, func() float64 { return float64(s.p.Health()[name].Restarts) }))
	}
	s.p.Metrics = NewMetrics()
	s.reg.MustRegister(s.p.Metrics.Collectors()...)
	s.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "troy_build_info", Help: "1, with the version, commit and Go version of the running build as labels.",
			ConstLabels: prometheus.Labels{"version": s.cfg.Build.Version, "commit": s.cfg.Build.Commit, "go_version": runtime.Version()},
		}, func() float64 { return 1 }),
	)
	s.reg.MustRegister(llmCollectors(s.cfg.Explain)...)
}
