package main

import (
	"context"
	"fmt"
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

	"github.com/troy-audit/troy/warehouse"
	"github.com/troy-audit/troy/warehouse/chtest"
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
// cluster configuration, deploy/nats/cluster.conf, and waits until JetStream is ready.
func startCluster(t *testing.T) []*natsNode {
	t.Helper()
	bin, err := natsServer()
	if err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 9) // distinct: all are held until every one is chosen
	client, httpPorts, cluster := ports[0:3], ports[3:6], ports[6:9]
	nodes := make([]*natsNode, 3)
	for i := range 3 {
		cmd := exec.Command(bin, "-c", filepath.Join(repoRoot, "deploy", "nats", "cluster.conf"))
		cmd.Env = append(os.Environ(),
			fmt.Sprintf("NATS_NAME=nats-%d", i+1), "NATS_HOST=127.0.0.1",
			fmt.Sprintf("NATS_PORT=%d", client[i]), fmt.Sprintf("NATS_HTTP_PORT=%d", httpPorts[i]), fmt.Sprintf("NATS_CLUSTER_PORT=%d", cluster[i]),
			"NATS_STORE="+t.TempDir(),
			fmt.Sprintf("NATS_ROUTE_1=nats-route://127.0.0.1:%d", cluster[0]),
			fmt.Sprintf("NATS_ROUTE_2=nats-route://127.0.0.1:%d", cluster[1]),
			fmt.Sprintf("NATS_ROUTE_3=nats-route://127.0.0.1:%d", cluster[2]))
		log, err := os.Create(filepath.Join(t.TempDir(), "nats.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		nodes[i] = &natsNode{cmd: cmd, url: fmt.Sprintf("nats://127.0.0.1:%d", client[i]), log: log.Name(), health: fmt.Sprintf("http://127.0.0.1:%d/healthz", httpPorts[i])}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			log.Close()
		})
	}
	waitHealthy(t, nodes, "?js-enabled-only=true")
	return nodes
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
	n := &natsNode{cmd: cmd, url: fmt.Sprintf("nats://127.0.0.1:%d", ports[0]), log: log.Name(), health: fmt.Sprintf("http://127.0.0.1:%d/healthz", ports[1])}
	waitHealthy(t, []*natsNode{n}, "?js-enabled-only=true")
	return n
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
	nodes := startCluster(t)
	ch := chtest.Start(t)
	dsn := ch.DSN("troy")
	urls := nodes[0].url + "," + nodes[1].url + "," + nodes[2].url
	serve := startServe(t, "--nats", urls, "--replicas", "3", "--clickhouse", dsn, "--policy", example(t, "policy.json"),
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
		cmd := exec.CommandContext(ctx, troyctlBinary(t), "batch", example(t, "traces"), example(t, "policy.json"), "--nats", urls, "-o", t.TempDir(), "-q")
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
	startServe(t, "--nats", urls, "--only", "guard")
	for name, c := range streamConfigs(t, urls) {
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
