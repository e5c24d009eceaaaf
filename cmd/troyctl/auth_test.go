package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/natsauth"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/sdk/agent"
	"github.com/troy-audit/troy/sdk/servetest"
	"github.com/troy-audit/troy/sdk/wire"
)

// authServe is a troyctl serve process with NATS authentication on (the default).
type authServe struct {
	*process
	url, dataDir string
}

func startAuthServe(t *testing.T) *authServe {
	t.Helper()
	dir := t.TempDir()
	port := servetest.FreePort(t)
	s := &authServe{url: fmt.Sprintf("nats://127.0.0.1:%d", port), dataDir: filepath.Join(dir, "data")}
	s.process = startServeCmd(t, execTroyctl(t, "serve", "--metrics", "", "--data-dir", s.dataDir,
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--policy", example(t, "policy.json"), "--idle-timeout", "0"))
	return s
}

// issue runs troyctl auth with args against the serve's data directory and returns the
// credential file it wrote.
func (s *authServe) issue(t *testing.T, args ...string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "user.creds")
	r := troyctl(t, append(append([]string{"auth"}, args...), "--data-dir", s.dataDir, "-o", file)...)
	if r.code != 0 {
		t.Fatalf("troyctl auth %v: exit %d: %s", args, r.code, r.stderr)
	}
	return file
}

// conn is a NATS connection as one credential, with the server's asynchronous errors
// (permission violations) on a channel.
type conn struct {
	nc   *nats.Conn
	errs chan error
}

func (s *authServe) connect(t *testing.T, creds string) *conn {
	t.Helper()
	c := &conn{errs: make(chan error, 64)}
	opts, err := wire.Options("auth-test", wire.Auth{CredsFile: creds})
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case c.errs <- err:
		default:
		}
	}))
	if c.nc, err = nats.Connect(s.url, opts...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.nc.Close)
	return c
}

// denied runs op, which publishes on subject, and requires the server to refuse it as a
// permission violation.
func (c *conn) denied(t *testing.T, subject string, op func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for len(c.errs) > 0 {
		<-c.errs
	}
	opErr := op(ctx)
	if opErr == nil {
		t.Fatalf("%s: allowed, want a permission violation", subject)
	}
	_ = c.nc.FlushTimeout(5 * time.Second)
	select {
	case err := <-c.errs:
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), subject) {
			t.Fatalf("%s: the server said %v, want a permission violation on it", subject, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no permission violation from the server (the operation failed with %v)", subject, opErr)
	}
}

// publish publishes a message and waits for the server to have it (or refuse it).
func (c *conn) publish(subject string, data []byte) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		if err := c.nc.Publish(subject, data); err != nil {
			return err
		}
		if err := c.nc.FlushWithContext(ctx); err != nil {
			return err
		}
		select {
		case err := <-c.errs:
			c.errs <- err // for denied to read
			return err
		case <-time.After(500 * time.Millisecond):
			return nil
		}
	}
}

// adminBus is the serve's streams seen as admin, to check that an attack changed nothing.
func (s *authServe) adminBus(t *testing.T) *bus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{URL: s.url, Client: true, Auth: wire.Auth{CredsFile: filepath.Join(natsauth.Dir(s.dataDir), natsauth.AdminCreds)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func streamState(t *testing.T, b *bus.Bus, name string) jetstream.StreamState {
	t.Helper()
	js, _ := jetstream.New(b.Conn())
	st, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State
}

// guardSession checks a risky action for agent and ends the session, and waits for its
// report.
func (s *authServe) guardSession(t *testing.T, creds, agentName, session string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := agent.Connect(ctx, agent.Options{URL: s.url, Auth: wire.Auth{CredsFile: creds}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g := c.Guard(agent.GuardOptions{Session: session, Agent: agentName, Timeout: 10 * time.Second})
	d, err := g.Check(ctx, "bash", map[string]any{"cmd": "ls"}, map[string]any{"permission_level": "admin"}, "")
	var blocked *agent.BlockedError
	if !errors.As(err, &blocked) || d.Allowed || len(d.Violations) == 0 {
		t.Fatalf("check as %s: %+v, %v; want blocked with violations", agentName, d, err)
	}
	if err := g.End(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		matches, _ := filepath.Glob(filepath.Join(s.dataDir, "reports", "*", "*"+session+"*", "audit.json"))
		if len(matches) == 1 {
			return matches[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no report of %s:\n%s", session, s.log())
		}
		time.Sleep(50 * time.Millisecond) // polling for the reporter's file, bounded by the deadline
	}
}

func TestServeRequiresCredentials(t *testing.T) {
	s := startAuthServe(t)
	for _, f := range []string{natsauth.AdminCreds, natsauth.ServiceCreds, "operator.nk", "account-signing.nk"} {
		st, err := os.Stat(filepath.Join(natsauth.Dir(s.dataDir), f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want 0600", f, err, st.Mode().Perm())
		}
	}
	if st, err := os.Stat(natsauth.Dir(s.dataDir)); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("auth dir: %v; want 0700", err)
	}
	nc, err := nats.Connect(s.url, nats.MaxReconnects(0))
	if err == nil {
		nc.Close()
		t.Fatal("an anonymous connection was accepted")
	}
	if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("anonymous connection: %v, want an authorization error", err)
	}
}

func TestAgentCredential(t *testing.T) {
	s := startAuthServe(t)
	creds := s.issue(t, "agent", "a")
	c := s.connect(t, creds)
	js, _ := jetstream.New(c.nc)

	// What it may do: its own steps, and the guard's decisions for its own sessions.
	report := s.guardSession(t, creds, "a", "own-session")
	if !strings.Contains(report, filepath.Join("a", "")) {
		t.Fatalf("report at %s, want it under agent a", report)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ac, err := agent.Connect(ctx, agent.Options{URL: s.url, Auth: wire.Auth{CredsFile: creds}})
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	tr := ac.StartTrace("t-own", "a", nil, "")
	if err := tr.End(ctx); err != nil {
		t.Fatalf("agent a publishing its own trace: %v", err)
	}

	steps := event.StepsSubject("b", "t1")
	c.denied(t, steps, c.publish(steps, []byte(`{}`)))
	c.denied(t, "$KV.troy-policies.default", func(ctx context.Context) error {
		_, err := js.Publish(ctx, "$KV.troy-policies.default", []byte("x"))
		return err
	})
	res := "troy.results.violation.a.t1"
	c.denied(t, res, c.publish(res, []byte(`{}`)))
	for _, stream := range []string{bus.StepsStream, bus.ResultsStream} {
		c.denied(t, "$JS.API.STREAM.DELETE."+stream, func(ctx context.Context) error { return js.DeleteStream(ctx, stream) })
		c.denied(t, "$JS.API.STREAM.PURGE."+stream, func(ctx context.Context) error {
			_, err := c.nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE."+stream, nil)
			return err
		})
	}
	other := event.GuardCheckSubject("b")
	c.denied(t, other, func(ctx context.Context) error {
		_, err := c.nc.RequestWithContext(ctx, other, []byte(`{"session": "x", "agent": "b", "step": {"action": "bash"}}`))
		return err
	})
	// Replies to others: another agent's inbox is not its to read.
	if sub, err := c.nc.SubscribeSync("_INBOX.b.>"); err == nil {
		_ = c.nc.Flush()
		select {
		case err := <-c.errs:
			if !errors.Is(err, nats.ErrPermissionViolation) {
				t.Fatalf("subscribe to b's inbox: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("agent a may subscribe to agent b's inbox")
		}
		_ = sub.Unsubscribe()
	}
}

func TestReaderCredential(t *testing.T) {
	s := startAuthServe(t)
	s.guardSession(t, s.issue(t, "agent", "a"), "a", "for-reader")
	reader := s.issue(t, "reader")
	c := s.connect(t, reader)
	js, _ := jetstream.New(c.nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, bus.ResultsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{event.ResultFilter(event.KindReported)}})
	if err != nil {
		t.Fatalf("reader: consumer on results: %v", err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatalf("reader: read a result: %v", err)
	}
	if !strings.HasPrefix(msg.Subject(), "troy.results.reported.a.") {
		t.Fatalf("reader read %s", msg.Subject())
	}
	for _, subject := range []string{event.StepsSubject("a", "t2"), "troy.results.explained.a.t2", event.GuardCheckSubject("a"), "$KV.troy-policies.default"} {
		c.denied(t, subject, c.publish(subject, []byte(`{}`)))
	}
	// Nor touch the services' consumers.
	c.denied(t, "$JS.API.CONSUMER.DELETE.TROY_RESULTS.reporter", func(ctx context.Context) error {
		return js.DeleteConsumer(ctx, bus.ResultsStream, pipeline.Reporter)
	})
	c.denied(t, "$JS.API.CONSUMER.MSG.NEXT.TROY_STEPS.evaluator", func(ctx context.Context) error {
		_, err := c.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.TROY_STEPS.evaluator", []byte(`{"batch":1}`))
		return err
	})
	c.denied(t, "$JS.API.CONSUMER.CREATE.TROY_RESULTS.explainer", func(ctx context.Context) error {
		_, err := js.CreateOrUpdateConsumer(ctx, bus.ResultsStream, jetstream.ConsumerConfig{Durable: pipeline.Explainer, FilterSubject: "troy.results.>"})
		return err
	})
	// Nor read the replies agents get.
	c.denied(t, "_INBOX.a.>", func(context.Context) error {
		if _, err := c.nc.SubscribeSync("_INBOX.a.>"); err != nil {
			return err
		}
		if err := c.nc.Flush(); err != nil {
			return err
		}
		select {
		case err := <-c.errs:
			c.errs <- err // for denied to read
			return err
		case <-time.After(2 * time.Second):
			return nil
		}
	})
}

// The attacks an intruder with an agent's (or a reader's) credential would try: each is
// refused by the server, and nothing changes.
func TestAttacksFail(t *testing.T) {
	s := startAuthServe(t)
	agentCreds := s.issue(t, "agent", "a")
	report := s.guardSession(t, agentCreds, "a", "attacked")
	before, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	admin := s.adminBus(t)
	attackers := map[string]*conn{"agent": s.connect(t, agentCreds), "reader": s.connect(t, s.issue(t, "reader"))}

	t.Run("replace the default policy", func(t *testing.T) {
		ctx := context.Background()
		kv, err := jetstream.New(admin.Conn())
		if err != nil {
			t.Fatal(err)
		}
		bucket, err := kv.KeyValue(ctx, bus.PolicyBucket)
		if err != nil {
			t.Fatal(err)
		}
		was, err := bucket.Get(ctx, "default")
		if err != nil {
			t.Fatal(err)
		}
		for who, c := range attackers {
			js, _ := jetstream.New(c.nc)
			c.denied(t, "$KV.troy-policies.default", func(ctx context.Context) error {
				_, err := js.Publish(ctx, "$KV.troy-policies.default", []byte("0000000000000000000000000000000000000000000000000000000000000000"))
				return err
			})
			now, err := bucket.Get(ctx, "default")
			if err != nil || now.Revision() != was.Revision() || string(now.Value()) != string(was.Value()) {
				t.Fatalf("as %s: the default policy changed: %v", who, err)
			}
		}
	})

	t.Run("republish explained with risk 0", func(t *testing.T) {
		state := streamState(t, admin, bus.ResultsStream)
		rel, _ := filepath.Rel(filepath.Join(s.dataDir, "reports"), filepath.Dir(report))
		trace := filepath.Base(rel)
		forged, _ := json.Marshal(map[string]any{"trace_id": trace, "agent_name": "a", "risk_score": 0, "violations": []any{}})
		subject := "troy.results.explained.a." + trace
		for _, c := range attackers {
			c.denied(t, subject, c.publish(subject, forged))
		}
		if after := streamState(t, admin, bus.ResultsStream); after.LastSeq != state.LastSeq {
			t.Fatalf("results stream went from %d to %d events", state.LastSeq, after.LastSeq)
		}
		after, err := os.ReadFile(report)
		if err != nil || string(after) != string(before) {
			t.Fatalf("the report changed (%v)", err)
		}
	})

	t.Run("delete the streams", func(t *testing.T) {
		for _, c := range attackers {
			js, _ := jetstream.New(c.nc)
			for _, stream := range []string{bus.StepsStream, bus.ResultsStream} {
				c.denied(t, "$JS.API.STREAM.DELETE."+stream, func(ctx context.Context) error { return js.DeleteStream(ctx, stream) })
			}
		}
		for _, stream := range []string{bus.StepsStream, bus.ResultsStream} {
			if st := streamState(t, admin, stream); st.Msgs == 0 {
				t.Fatalf("%s is empty", stream)
			}
		}
	})
}

func TestRevokeCredential(t *testing.T) {
	s := startAuthServe(t)
	creds := s.issue(t, "agent", "gone")
	closed := make(chan struct{})
	opts, err := wire.Options("revoked", wire.Auth{CredsFile: creds})
	if err != nil {
		t.Fatal(err)
	}
	live, err := nats.Connect(s.url, append(opts, nats.MaxReconnects(0), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))...)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()

	r := troyctl(t, "auth", "list", "--json", "--data-dir", s.dataDir)
	var list []natsauth.Credential
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || r.code != 0 {
		t.Fatalf("auth list: %v: %s %s", err, r.stdout, r.stderr)
	}
	var id string
	for _, c := range list {
		if c.Role == natsauth.RoleAgent && c.Scope == "gone" {
			id = c.ID
		}
	}
	if id == "" {
		t.Fatalf("the agent's credential is not listed: %s", r.stdout)
	}
	r = troyctl(t, "auth", "revoke", id[:12], "--json", "--data-dir", s.dataDir)
	if r.code != 0 || !strings.Contains(r.stdout, `"serve_reloaded": true`) {
		t.Fatalf("auth revoke: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked credential's live connection is still open")
	}
	if nc, err := nats.Connect(s.url, append(opts, nats.MaxReconnects(0))...); err == nil {
		nc.Close()
		t.Fatal("the revoked credential connected again")
	}
	r = troyctl(t, "auth", "list", "--data-dir", s.dataDir)
	if !strings.Contains(r.stdout, id) || strings.Contains(strings.SplitAfter(r.stdout, id)[1], "  -\n") {
		t.Fatalf("auth list does not show the revocation:\n%s", r.stdout)
	}
	// Other credentials still work.
	s.connect(t, s.issue(t, "agent", "kept"))
}

func TestServeInsecureNoAuth(t *testing.T) {
	port := servetest.FreePort(t)
	p := startServe(t, "--data-dir", t.TempDir(), "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	if !strings.Contains(p.log(), "level=WARN") || !strings.Contains(p.log(), "NATS AUTHENTICATION IS OFF (--insecure-no-auth)") {
		t.Fatalf("no warning in the log:\n%s", p.log())
	}
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port), nats.MaxReconnects(0))
	if err != nil {
		t.Fatalf("anonymous connection with --insecure-no-auth: %v", err)
	}
	nc.Close()
}

// The durables no reader may touch are the ones serve's components use.
func TestServiceDurables(t *testing.T) {
	want := []string{pipeline.Evaluator, pipeline.Explainer, pipeline.Reporter, "scorer", pipeline.SinkSteps, pipeline.SinkResults}
	if got := natsauth.ServiceDurables(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("natsauth.ServiceDurables() = %v, want %v", got, want)
	}
}

func TestAuthCommandErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"auth", "agent", "x", "--data-dir", dir}, "no credentials here (troyctl serve creates them at its first start; or give --data-dir)"},
		{[]string{"auth", "list", "--data-dir", dir}, "no credentials here"},
		{[]string{"auth"}, "auth: expected a subcommand: agent, reader, admin, list, revoke, nats-config or public-key"},
		{[]string{"auth", "reader", "--json", "--data-dir", dir}, "--json: expected -o FILE too"},
		{[]string{"auth", "agent"}, "auth agent: expected one argument, the agent's name; got 0"},
		{[]string{"auth", "revoke", "a", "b"}, "auth revoke: expected one argument, the credential's id (troyctl auth list shows them); got 2"},
	} {
		r := troyctl(t, tc.args...)
		if r.code != exitError || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want one line with %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	r := troyctl(t, "auth", "nats-config", "--data-dir", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "operator: ") || !strings.Contains(r.stdout, "resolver: MEMORY") {
		t.Fatalf("nats-config: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = troyctl(t, "auth", "revoke", "UNOSUCH", "--data-dir", dir)
	if r.code != exitError || !strings.Contains(r.stderr, `revoke "UNOSUCH": no credential has that id`) {
		t.Fatalf("revoke unknown: exit %d %s", r.code, r.stderr)
	}
}

func execTroyctl(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	return exec.Command(troyctlBinary(t), args...)
}

// A data directory written by a serve without authentication keeps its streams when serve
// starts with it.
func TestServeKeepsStreamsWhenAuthTurnsOn(t *testing.T) {
	dataDir := t.TempDir()
	port := servetest.FreePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	p := startServe(t, "--data-dir", dataDir, "--listen", listen)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ac, err := agent.Connect(ctx, agent.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	if err := ac.StartTrace("kept", "old", nil, "").End(ctx); err != nil {
		t.Fatal(err)
	}
	ac.Close()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()

	s := &authServe{url: url, dataDir: dataDir}
	s.process = startServeCmd(t, execTroyctl(t, "serve", "--metrics", "", "--data-dir", dataDir, "--listen", listen))
	if !strings.Contains(s.log(), "streams kept without authentication moved to troy's account") {
		t.Fatalf("no move logged:\n%s", s.log())
	}
	if st := streamState(t, s.adminBus(t), bus.StepsStream); st.Msgs == 0 {
		t.Fatal("the steps published before authentication are gone")
	}
}

// troyctl commands beside a serve find its admin credential in the data directory; --creds
// and TROY_CREDS name another; without any, the server refuses them.
func TestCommandsFindCredentials(t *testing.T) {
	dir := t.TempDir()
	port := servetest.FreePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	dataDir := filepath.Join(dir, ".troy")
	startServeCmd(t, execTroyctl(t, "serve", "--metrics", "", "--data-dir", dataDir, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--policy", example(t, "policy.json")))
	admin := filepath.Join(natsauth.Dir(dataDir), natsauth.AdminCreds)
	check := []string{"check", example(t, "policy.json"), "-a", "bash", "--metadata", `{"permission_level": "admin"}`, "--nats", url}

	t.Chdir(t.TempDir())
	if r := troyctl(t, check...); r.code != exitError || !strings.Contains(strings.ToLower(r.stderr), "authorization") {
		t.Fatalf("without credentials: exit %d, %s", r.code, r.stderr)
	}
	if r := troyctl(t, append(check, "--creds", admin)...); r.code != exitBlocked {
		t.Fatalf("--creds: exit %d, %s", r.code, r.stderr)
	}
	start := time.Now()
	reader := (&authServe{url: url, dataDir: dataDir}).issue(t, "reader")
	if r := troyctl(t, append(check, "--creds", reader)...); r.code != exitError ||
		!strings.Contains(r.stderr, url+": this credential may not use troy's policy bucket (an agent's or a reader's? this needs the admin credential)") ||
		time.Since(start) > 10*time.Second {
		t.Fatalf("a reader's credential: exit %d after %s, %s", r.code, time.Since(start), r.stderr)
	}
	t.Setenv("TROY_CREDS", admin)
	if r := troyctl(t, check...); r.code != exitBlocked {
		t.Fatalf("TROY_CREDS: exit %d, %s", r.code, r.stderr)
	}
	t.Setenv("TROY_CREDS", "")
	t.Chdir(dir)
	if r := troyctl(t, check...); r.code != exitBlocked {
		t.Fatalf("beside the data directory: exit %d, %s", r.code, r.stderr)
	}

	// The Go SDK takes an agent's credential from TROY_CREDS.
	s := &authServe{url: url, dataDir: dataDir}
	t.Setenv("TROY_CREDS", s.issue(t, "agent", "env-agent"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ac, err := agent.Connect(ctx, agent.Options{URL: url})
	if err != nil {
		t.Fatalf("agent.Connect with TROY_CREDS: %v", err)
	}
	defer ac.Close()
	g := ac.Guard(agent.GuardOptions{Session: "env", Agent: "env-agent", Timeout: 10 * time.Second})
	if d, err := g.Check(ctx, "search", map[string]any{"q": "x"}, nil, ""); err != nil || !d.Allowed {
		t.Fatalf("check with TROY_CREDS: %+v, %v", d, err)
	}
}
