package main

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/troy-audit/troy/event"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/warehouse"
	"github.com/troy-audit/troy/internal/warehouse/chtest"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/wire"
)

// natsServer builds the NATS server troy embeds as a program of its own, once.
var natsServer = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "nats-server-bin")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "nats-server")
	cmd := exec.Command("go", "build", "-o", out, "github.com/nats-io/nats-server/v2")
	cmd.Dir = repoRoot
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build nats-server: %v\n%s", err, msg)
	}
	return out, nil
})

type natsNode struct {
	cmd              *exec.Cmd
	url, log, health string
}

// startCluster starts three NATS servers as separate processes with the deployment's
// cluster configuration, deploy/nats/cluster.conf, and troy's accounts as troyctl auth
// nats-config writes them beside it, and waits until JetStream is ready. It returns the
// nodes and the data directory whose auth/ holds the service's and admin's credentials.
func startCluster(t *testing.T) ([]*natsNode, string) {
	t.Helper()
	bin, err := natsServer()
	if err != nil {
		t.Fatal(err)
	}
	dir, data := t.TempDir(), t.TempDir()
	conf, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "nats", "cluster.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster.conf"), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "auth"), 0o755); err != nil {
		t.Fatal(err)
	}
	if r := troyctl(t, "auth", "nats-config", "--data-dir", data, "-o", filepath.Join(dir, "auth", "accounts.conf")); r.code != 0 {
		t.Fatalf("auth nats-config: exit %d %s", r.code, r.stderr)
	}
	ports := freePorts(t, 9) // distinct: all are held until every one is chosen
	client, httpPorts, cluster := ports[0:3], ports[3:6], ports[6:9]
	nodes := make([]*natsNode, 3)
	for i := range 3 {
		cmd := exec.Command(bin, "-c", filepath.Join(dir, "cluster.conf"))
		cmd.Env = append(os.Environ(),
			fmt.Sprintf("NATS_NAME=nats-%d", i+1), "NATS_HOST=127.0.0.1",
			fmt.Sprintf("NATS_PORT=%d", client[i]), fmt.Sprintf("NATS_HTTP_PORT=%d", httpPorts[i]), fmt.Sprintf("NATS_CLUSTER_PORT=%d", cluster[i]),
			"NATS_STORE="+t.TempDir(),
			fmt.Sprintf("NATS_ROUTE_1=nats-route://127.0.0.1:%d", cluster[0]),
			fmt.Sprintf("NATS_ROUTE_2=nats-route://127.0.0.1:%d", cluster[1]),
			fmt.Sprintf("NATS_ROUTE_3=nats-route://127.0.0.1:%d", cluster[2]))
		nodes[i] = startNode(t, cmd, client[i], httpPorts[i])
	}
	waitHealthy(t, nodes, "?js-enabled-only=true")
	return nodes, data
}

// startNATS starts one NATS server with JetStream as a process of its own.
func startNATS(t *testing.T) *natsNode {
	t.Helper()
	bin, err := natsServer()
	if err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 2)
	cmd := exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", fmt.Sprint(ports[0]), "-m", fmt.Sprint(ports[1]), "-sd", t.TempDir())
	n := startNode(t, cmd, ports[0], ports[1])
	waitHealthy(t, []*natsNode{n}, "?js-enabled-only=true")
	return n
}

// startNode starts a NATS server's command, logging to a file, until the test ends.
func startNode(t *testing.T, cmd *exec.Cmd, port, httpPort int) *natsNode {
	t.Helper()
	log, err := os.Create(filepath.Join(t.TempDir(), "nats.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		log.Close()
	})
	return &natsNode{cmd: cmd, url: fmt.Sprintf("nats://127.0.0.1:%d", port), log: log.Name(), health: fmt.Sprintf("http://127.0.0.1:%d/healthz", httpPort)}
}

// freePorts returns n distinct free ports on loopback.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// waitHealthy polls the nodes' health endpoints until each says ok, for at most a minute.
func waitHealthy(t *testing.T, nodes []*natsNode, query string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for _, n := range nodes {
		for {
			resp, err := http.Get(n.health + query)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				err = fmt.Errorf("status %s", resp.Status)
			}
			if time.Now().After(deadline) {
				raw, _ := os.ReadFile(n.log)
				t.Fatalf("%s is not healthy: %v\n%s", n.url, err, raw)
			}
			time.Sleep(50 * time.Millisecond) // polling a health endpoint, bounded by the deadline
		}
	}
}

// The deployment's topology with real processes: a three-node NATS JetStream cluster,
// ClickHouse, and troyctl serve with three replicas. Traces sent with troyctl batch reach
// ClickHouse; with one NATS node killed, the next batch still does.
func TestClusterTopologyToClickHouse(t *testing.T) {
	nodes, data := startCluster(t)
	service, admin := filepath.Join(data, "auth", "service.creds"), filepath.Join(data, "auth", "admin.creds")
	if nc, err := nats.Connect(nodes[0].url, nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("the cluster accepted a connection without credentials")
	}
	ch := chtest.Start(t)
	dsn := ch.DSN("troy")
	urls := nodes[0].url + "," + nodes[1].url + "," + nodes[2].url
	serve := startServe(t, "--nats", urls, "--creds", service, "--replicas", "3", "--clickhouse", dsn, "--policy", example(t, "policy.json"),
		"--data-dir", t.TempDir(), "--sink-wait", "100ms")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	store, err := warehouse.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	traces := func() uint64 {
		var n uint64
		if err := store.Conn().QueryRow(ctx, "SELECT count() FROM traces FINAL").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	batch := func(urls string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, troyctlBinary(t), "batch", example(t, "traces"), example(t, "policy.json"), "--nats", urls, "--creds", admin, "-o", t.TempDir(), "-q")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("batch: %v\n%s\nserve:\n%s", err, out, serve.log())
		}
	}
	waitFor := func(want uint64) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for n := traces(); n != want; n = traces() {
			if time.Now().After(deadline) {
				t.Fatalf("%d traces in ClickHouse, want %d", n, want)
			}
			time.Sleep(50 * time.Millisecond) // polling the database, bounded by the deadline
		}
	}
	batch(urls)
	waitFor(6)

	// Another instance started without --replicas leaves the streams and buckets on three.
	startServe(t, "--nats", urls, "--creds", service, "--only", "guard")
	for name, c := range streamConfigs(t, urls, nats.UserCredentials(admin)) {
		if c.Replicas != 3 {
			t.Errorf("%s: %d replicas after a second instance, want 3", name, c.Replicas)
		}
	}

	_ = nodes[2].cmd.Process.Signal(syscall.SIGKILL)
	_ = nodes[2].cmd.Wait()
	// No wait for the cluster to elect new leaders: the clients must ride through it.
	batch(nodes[0].url + "," + nodes[1].url)
	waitFor(12)

	r := troyctl(t, "trends", "--clickhouse", dsn, "--since", "2026-01-01", "--until", "2027-01-01", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"rule_id": "pii-exfiltration-protection"`) {
		t.Fatalf("trends: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// A trace read back in a three-node cluster has every step stored, even when the replica
// that answers lags behind: a follower's process is paused (SIGSTOP) while steps are
// stored through the others, then resumed, and the steps are read at once through a
// connection to that follower, whose local replica answers direct gets.
func TestReadBackSeesEveryStepWithALaggingReplica(t *testing.T) {
	nodes, data := startCluster(t)
	creds := wire.Auth{CredsFile: filepath.Join(data, "auth", "admin.creds")}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	all := nodes[0].url + "," + nodes[1].url + "," + nodes[2].url
	setup, err := bus.Open(ctx, bus.Options{URL: all, Replicas: 3, Auth: creds})
	if err != nil {
		t.Fatal(err)
	}
	defer setup.Close()
	js, err := jetstream.New(setup.Conn())
	if err != nil {
		t.Fatal(err)
	}
	var leader string
	for deadline := time.Now().Add(time.Minute); leader == ""; {
		if s, err := js.Stream(ctx, bus.StepsStream); err == nil && s.CachedInfo().Cluster != nil {
			leader = s.CachedInfo().Cluster.Leader
		}
		if leader == "" && time.Now().After(deadline) {
			t.Fatal("the steps stream has no leader")
		}
		if leader == "" {
			time.Sleep(50 * time.Millisecond) // polling the stream's info, bounded by the deadline
		}
	}
	var slow *natsNode
	var others []string
	for i, n := range nodes {
		if name := fmt.Sprintf("nats-%d", i+1); name != leader && slow == nil {
			slow = n
		} else {
			others = append(others, n.url)
		}
	}
	writer, err := bus.Open(ctx, bus.Options{URL: strings.Join(others, ","), Client: true, Auth: creds})
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	reader, err := bus.Open(ctx, bus.Options{URL: slow.url, Client: true, Auth: creds})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()

	const steps = 400
	input := map[string]any{"blob": strings.Repeat("x", 2000)} // more for the follower to catch up on
	for round := range 3 {
		ref := event.TraceRef{TraceID: fmt.Sprint("lagging-", round), AgentName: "bot", Run: "r"}
		subject := event.StepsSubject(ref.AgentName, ref.TraceID)
		var events []event.Envelope
		for i := range steps {
			s := &schemas.Step{StepID: fmt.Sprint("s", i), Type: schemas.StepToolCall, Description: "search", Input: input}
			e, err := event.New(event.Step{TraceRef: ref, Seq: i, Step: s})
			if err != nil {
				t.Fatal(err)
			}
			events = append(events, e)
		}
		if err := slow.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		if err := writer.PublishAll(ctx, events); err != nil {
			_ = slow.cmd.Process.Signal(syscall.SIGCONT)
			t.Fatal(err)
		}
		// Reads are sent while the follower is still paused, so that they wait in its
		// socket with the replication it missed. Each goes to one of the three replicas
		// at random; those the follower takes are answered as soon as it resumes.
		const reads = 24
		type result struct {
			events []event.Envelope
			err    error
		}
		early := make(chan result, reads)
		sent := reader.Conn().Stats().OutMsgs
		for range reads {
			go func() {
				got, err := reader.ReadSteps(ctx, subject, math.MaxUint64)
				early <- result{got, err}
			}()
		}
		written := func() bool {
			n, err := reader.Conn().Buffered()
			return reader.Conn().Stats().OutMsgs >= sent+reads && err == nil && n == 0
		}
		for deadline := time.Now().Add(10 * time.Second); !written(); {
			if time.Now().After(deadline) {
				t.Fatal("the reads were not sent to the paused follower")
			}
			time.Sleep(time.Millisecond) // polling the connection's counters, bounded by the deadline
		}
		if err := slow.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		for range reads {
			// A read that failed (the cluster electing a leader after the pause) is
			// like one not made; one that succeeded must hold every step.
			if r := <-early; r.err == nil && len(r.events) != steps {
				t.Fatalf("round %d: read %d of the %d steps stored", round, len(r.events), steps)
			}
		}
		// Read at once; a read that fails (the cluster electing a leader after the pause)
		// is tried again, as stages do, but one that succeeds must hold every step.
		for deadline := time.Now().Add(time.Minute); ; {
			got, err := reader.ReadSteps(ctx, subject, math.MaxUint64)
			if err == nil {
				if len(got) != steps {
					t.Fatalf("round %d: read %d of the %d steps stored", round, len(got), steps)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %v", round, err)
			}
			t.Logf("round %d: %v; reading again", round, err)
		}
	}
}
