package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/troy-audit/troy/localguard"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/explainer"
	"github.com/troy-audit/troy/internal/mcpproxy"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
	"github.com/troy-audit/troy/sdk/agent"
)

// maxStdioLine bounds one request line of `troyctl guard --stdio`.
const maxStdioLine = 16 << 20

// envForward names a deployment to forward a local guard's records to, when --nats is
// not given.
const envForward = "TROY_NATS_URL"

func newGuardCmd(a *app) *cobra.Command {
	var (
		stdio, flush bool
		dataDir      string
		wait         time.Duration
		nf           natsFlags
		ex           explainFlags
		lf           logFlags
	)
	cmd := &cobra.Command{
		Use:   "guard --stdio | --flush",
		Short: "Run a guard in this process for an agent in another language (JSON lines on stdin/stdout)",
		Long: `Run a guard with nothing else running, for agents written in Python or TypeScript:
their SDK starts 'troyctl guard --stdio' as a child process and speaks JSON lines, one
request per line on stdin and one response per line on stdout, in order (stderr is for
logs). The first request opens the session with its policy; then check, output, trace,
reset and end. The child exits when stdin closes or after end.

Requests (each with an integer id, echoed in its response):
  {"id":1,"op":"open","policy":"soc2","agent_name":"bot","mode":"enforce","agent_metadata":{},"session_id":"optional","fail":"closed"}
      policy: a policy file, a bundled template's name, or a policy object
      -> {"id":1,"ok":true,"session_id":"...","policy_id":"...","rules":N}
  {"id":2,"op":"check","action":"bash","input":{},"metadata":{},"step_type":"tool_call"}
      -> {"id":2,"decision":{"step_id":"step-0","allowed":false,"violations":[...],"risk_score":40,"mode":"enforce","rule_errors":[]}}
  {"id":3,"op":"output","step_id":"step-0","output":{"result":"..."}}   -> {"id":3,"ok":true}
  {"id":4,"op":"trace"}                                                   -> {"id":4,"trace":{...}}
  {"id":5,"op":"reset"}                                                   -> {"id":5,"ok":true,"session_id":"..."}
  {"id":6,"op":"end","report_dir":"optional"}   -> {"id":6,"ok":true,"report":".../report.md","audit":".../audit.json"}
Errors: {"id":N,"error":{"kind":"ValueError|KeyError|PolicyError|RuntimeError","message":"..."}};
a line that is not a request gets "id":null, and the child goes on.

Every checked step and output is appended to a record file under --data-dir/outbox
before the answer is written, and, with --nats (or the environment variable
TROY_NATS_URL), forwarded to a deployment (troyctl serve) in the background. What a
crashed process or an absent deployment left unsent is forwarded by the next guard on
the same data directory, or by 'troyctl guard --flush'.

Rules with a model judge ask the model configured as for explanations (--base-url,
--api-key, --model or OPENAI_BASE_URL, OPENAI_API_KEY, TROY_MODEL), each within its
rule's timeout; without one (or with --no-explain) their on_error decides.`,
		Example: `  printf '%s\n' '{"id":1,"op":"open","policy":"minimal"}' \
    '{"id":2,"op":"check","action":"bash","input":{"cmd":"ls"}}' \
    '{"id":3,"op":"end"}' | troyctl guard --stdio --data-dir /tmp/troy
  troyctl guard --stdio --nats nats://troy.internal:4222
  troyctl guard --flush --nats nats://troy.internal:4222 --data-dir .troy`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			logger, err := lf.logger(a.stderr, nil)
			if err != nil {
				return err
			}
			switch {
			case stdio == flush:
				return errors.New("guard: give --stdio (serve an SDK on stdin/stdout) or --flush (forward what the outbox holds)")
			case flush:
				if nf.opts.URL == "" {
					return fmt.Errorf("guard --flush: a deployment is required: --nats URL or %s", envForward)
				}
				wctx, cancel := context.WithTimeout(ctx, wait)
				defer cancel()
				sent, left, err := localguard.Flush(wctx, dataDir, nf.agentOptions(), logger)
				fmt.Fprintf(a.stdout, "%d event(s) forwarded, %d left in %s\n", sent, left, dataDir)
				return err
			}
			explain, err := ex.config()
			if err != nil {
				return err
			}
			var judge evaluator.Judge
			if explain.Model != nil {
				cfg := *explain.Model
				cfg.Logger = logger
				judge = pipeline.NewJudge(explainer.New(cfg))
			}
			s := &stdioServer{dataDir: dataDir, forward: nf.agentOptions(), log: logger, wait: wait, judge: judge}
			return s.serve(ctx, a.stdin, a.stdout)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&stdio, "stdio", false, "serve one SDK over JSON lines on stdin and stdout")
	f.BoolVar(&flush, "flush", false, "forward to --nats what the outbox holds unsent, then exit")
	f.StringVar(&dataDir, "data-dir", localguard.DefaultDataDir, "directory for the record (outbox/) and reports (reports/)")
	f.DurationVar(&wait, "forward-wait", 10*time.Second, "at exit (or with --flush), longest wait for the deployment to acknowledge the record")
	nf.register(cmd)
	ex.register(cmd, false)
	lf.register(cmd, "warn")
	f.Lookup("nats").Usage = "NATS URL(s) of a deployment (troyctl serve) to forward the record to (default: none, the record stays local)"
	return cmd
}

// stdioRequest is one request line; which fields count depends on op.
type stdioRequest struct {
	ID            any            `json:"id"`
	Op            string         `json:"op"`
	Policy        any            `json:"policy"`
	AgentName     string         `json:"agent_name"`
	Mode          string         `json:"mode"`
	AgentMetadata map[string]any `json:"agent_metadata"`
	SessionID     string         `json:"session_id"`
	Fail          string         `json:"fail"`
	Action        string         `json:"action"`
	Input         map[string]any `json:"input"`
	Metadata      map[string]any `json:"metadata"`
	StepType      string         `json:"step_type"`
	StepID        string         `json:"step_id"`
	Output        map[string]any `json:"output"`
	ReportDir     string         `json:"report_dir"`
}

// stdioResponse is one response line; id comes first, and only the fields of its op are
// written.
type stdioResponse struct {
	ID        any               `json:"id"`
	OK        bool              `json:"ok,omitempty"`
	SessionID string            `json:"session_id,omitempty"`
	PolicyID  string            `json:"policy_id,omitempty"`
	Rules     *int              `json:"rules,omitempty"`
	Decision  *schemas.Decision `json:"decision,omitempty"`
	Trace     *schemas.Trace    `json:"trace,omitempty"`
	Report    string            `json:"report,omitempty"`
	Audit     string            `json:"audit,omitempty"`
	Error     *stdioError       `json:"error,omitempty"`
}

type stdioError struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// Error kinds, named as the Python exceptions an SDK raises for them.
const (
	kindValue   = "ValueError"
	kindKey     = "KeyError"
	kindPolicy  = "PolicyError"
	kindRuntime = "RuntimeError"
)

type stdioServer struct {
	dataDir string
	forward agent.Options
	log     *slog.Logger
	wait    time.Duration
	judge   evaluator.Judge // nil: no model
	g       *localguard.Guard
}

// serve answers requests until stdin closes, an end is answered or ctx ends (SIGTERM,
// SIGINT), then closes the guard (its record synced, and forwarded as far as the
// deployment takes it within wait).
func (s *stdioServer) serve(ctx context.Context, in io.Reader, out io.Writer) error {
	w := bufio.NewWriter(out)
	defer func() {
		if s.g != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.wait)
			defer cancel()
			if err := s.g.Close(cctx); err != nil {
				s.log.Warn("guard: closing", "err", err)
			}
		}
	}()
	// Lines are read on their own goroutine, so that a signal ends the child while it
	// waits for a request. One line is read ahead at most.
	lines := make(chan mcpproxy.Line)
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	go mcpproxy.ReadLines(readCtx, in, maxStdioLine, lines)
	for {
		var l mcpproxy.Line
		select {
		case <-ctx.Done():
			return nil
		case l = <-lines:
		}
		if l.Err == io.EOF {
			return nil
		}
		if l.Err != nil {
			return fmt.Errorf("guard: read stdin: %w", l.Err)
		}
		var resp stdioResponse
		end := false
		switch {
		case l.TooLong:
			resp = errResponse(nil, kindValue, fmt.Sprintf("request line longer than %d bytes; ignored", maxStdioLine))
		case len(bytes.TrimSpace(l.Data)) == 0:
			continue
		default:
			resp, end = s.handle(ctx, l.Data)
		}
		data, err := pyjson.Marshal(resp)
		if err != nil {
			data, _ = pyjson.Marshal(errResponse(resp.ID, kindRuntime, "encode response: "+err.Error()))
		}
		w.Write(data)
		w.WriteByte('\n')
		if err := w.Flush(); err != nil {
			return fmt.Errorf("guard: write stdout: %w", err)
		}
		if end {
			return nil
		}
	}
}

func errResponse(id any, kind, msg string) stdioResponse {
	msg = strings.Join(strings.Fields(msg), " ") // one line
	return stdioResponse{ID: id, Error: &stdioError{Kind: kind, Message: msg}}
}

// handle answers one request line; end says the session ended and the child exits.
func (s *stdioServer) handle(ctx context.Context, line []byte) (stdioResponse, bool) {
	var req stdioRequest
	if err := pyjson.Unmarshal(line, &req); err != nil {
		return errResponse(nil, kindValue, "request is not a JSON object with id and op: "+err.Error()), false
	}
	id := req.ID
	if !isInteger(id) {
		return errResponse(nil, kindValue, fmt.Sprintf("request id: expected an integer, got %s", shorten(fmt.Sprint(id)))), false
	}
	if req.Op != "open" && s.g == nil {
		if req.Op == "end" { // nothing was opened: nothing to report, and the child exits
			return stdioResponse{ID: id, OK: true}, true
		}
		if !slices.Contains(stdioOps, req.Op) {
			return errResponse(id, kindValue, fmt.Sprintf("op %q is not one of %s", req.Op, strings.Join(stdioOps, ", "))), false
		}
		return errResponse(id, kindValue, "no session: send an open request first"), false
	}
	switch req.Op {
	case "open":
		return s.open(ctx, id, req), false
	case "check":
		if req.Action == "" {
			return errResponse(id, kindValue, "check: action is required"), false
		}
		d, err := s.g.CheckStep(ctx, evaluator.CheckRequest{GuardStep: schemas.GuardStep{Action: req.Action, Input: req.Input, Metadata: req.Metadata, Type: req.StepType}, AgentMetadata: req.AgentMetadata})
		var blocked *agent.BlockedError
		var unavailable *agent.UnavailableError
		switch {
		case err == nil, errors.As(err, &blocked):
		case errors.As(err, &unavailable):
			s.log.Error("guard: step not recorded", "err", err, "allowed", d.Allowed)
		default:
			return errResponse(id, kindValue, "check: "+err.Error()), false
		}
		return stdioResponse{ID: id, Decision: &d}, false
	case "output":
		if req.StepID == "" {
			return errResponse(id, kindValue, "output: step_id is required"), false
		}
		if err := s.g.RecordOutput(ctx, req.StepID, req.Output); err != nil {
			var unknown *localguard.UnknownStepError
			if errors.As(err, &unknown) {
				return errResponse(id, kindKey, err.Error()), false
			}
			return errResponse(id, kindValue, "output: "+err.Error()), false
		}
		return stdioResponse{ID: id, OK: true}, false
	case "trace":
		return stdioResponse{ID: id, Trace: s.g.Trace()}, false
	case "reset":
		session, err := s.g.Reset(req.SessionID)
		if err != nil {
			return errResponse(id, kindValue, "reset: "+err.Error()), false
		}
		return stdioResponse{ID: id, OK: true, SessionID: session}, false
	case "end":
		rep, err := s.g.EndReport(ctx, req.ReportDir)
		if err != nil {
			return errResponse(id, kindRuntime, "end: "+err.Error()), true
		}
		return stdioResponse{ID: id, OK: true, Report: rep.Markdown, Audit: rep.JSON}, true
	}
	return errResponse(id, kindValue, fmt.Sprintf("op %q is not one of %s", req.Op, strings.Join(stdioOps, ", "))), false
}

var stdioOps = []string{"open", "check", "output", "trace", "reset", "end"}

func isInteger(v any) bool {
	switch x := v.(type) {
	case int:
		return true
	case float64:
		return x == float64(int64(x))
	}
	return false
}

func (s *stdioServer) open(ctx context.Context, id any, req stdioRequest) stdioResponse {
	if s.g != nil {
		return errResponse(id, kindValue, "open: a session is already open (reset starts a new one)")
	}
	if req.Mode != "" && !slices.Contains(schemas.Modes(), req.Mode) {
		return errResponse(id, kindValue, fmt.Sprintf("open: mode %q is not one of %s", req.Mode, strings.Join(schemas.Modes(), ", ")))
	}
	if req.Fail != "" && req.Fail != "closed" && req.Fail != "open" {
		return errResponse(id, kindValue, fmt.Sprintf("open: fail %q is not closed or open", req.Fail))
	}
	c, err := stdioPolicy(req.Policy)
	if err != nil {
		return errResponse(id, kindPolicy, "open: policy: "+err.Error())
	}
	g, err := localguard.New(ctx, c, localguard.Options{
		Session: req.SessionID, Agent: req.AgentName, AgentMetadata: req.AgentMetadata, Mode: req.Mode,
		FailOpen: req.Fail == "open", DataDir: s.dataDir, Forward: s.forward, Logger: s.log, Judge: s.judge,
	})
	if err != nil {
		return errResponse(id, kindValue, "open: "+err.Error())
	}
	s.g = g
	rules := len(c.Policy().Rules)
	return stdioResponse{ID: id, OK: true, SessionID: g.Session(), PolicyID: c.Policy().PolicyID, Rules: &rules}
}

// stdioPolicy loads the policy of an open request: a file or template name, or a policy
// object (Python-dialect conditions converted, as when loading a file).
func stdioPolicy(p any) (*evaluator.Compiled, error) {
	switch v := p.(type) {
	case string:
		if v == "" {
			break
		}
		return localguard.LoadPolicy(v)
	case map[string]any:
		raw, err := pyjson.Marshal(v)
		if err != nil {
			return nil, err
		}
		pol, err := policies.ParseConverted(raw, "policy object", "policy")
		if err != nil {
			return nil, err
		}
		return evaluator.Compile(pol)
	}
	return nil, fmt.Errorf("expected a policy file, a bundled template's name or a policy object, got %s", shorten(fmt.Sprint(p)))
}
