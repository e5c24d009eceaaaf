// Package chtest starts a real ClickHouse server for a test: its own process, data
// directory and port on loopback, stopped when the test ends.
package chtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// EnvRequire, set to 1, turns a missing server binary into a failure instead of a skip;
// the test script sets it after installing the server.
const EnvRequire = "TROY_REQUIRE_CLICKHOUSE"

// Server is a running ClickHouse server.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	Port int
	cmd  *exec.Cmd
	done chan struct{}
}

// Binary finds the server program: clickhouse-server, or the clickhouse multi-tool.
func Binary() (bin string, args []string, ok bool) {
	for _, name := range []string{"clickhouse-server", "/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil, true
		}
	}
	if p, err := exec.LookPath("clickhouse"); err == nil {
		return p, []string{"server"}, true
	}
	return "", nil, false
}

// Start starts a server for the test, or skips the test when no server is installed (fails
// instead when EnvRequire is set).
func Start(t testing.TB) *Server {
	t.Helper()
	bin, _, ok := Binary()
	if !ok {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatal("clickhouse-server is not installed")
		}
		t.Skip("clickhouse-server is not installed; ./scripts/test installs it (apt-get install clickhouse-server)")
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), Port: freePort(t)}
	if err := os.WriteFile(filepath.Join(s.dir, "config.xml"), []byte(s.config()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "users.xml"), []byte(users), 0o644); err != nil {
		t.Fatal(err)
	}
	s.start()
	t.Cleanup(s.Kill)
	return s
}

// DSN is the address of a database on the server.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("clickhouse://127.0.0.1:%d/%s", s.Port, db)
}

func (s *Server) start() {
	s.t.Helper()
	_, args, _ := Binary()
	args = append(args, "--config-file="+filepath.Join(s.dir, "config.xml"))
	s.cmd = exec.Command(s.bin, args...)
	s.cmd.Dir = s.dir
	out, err := os.Create(filepath.Join(s.dir, "stdout.log"))
	if err != nil {
		s.t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = out, out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start clickhouse-server: %v", err)
	}
	s.done = make(chan struct{})
	go func() {
		_ = s.cmd.Wait()
		out.Close()
		close(s.done)
	}()
	s.waitReady()
}

// waitReady polls the server until it answers, for at most a minute.
func (s *Server) waitReady() {
	s.t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{fmt.Sprintf("127.0.0.1:%d", s.Port)}, DialTimeout: time.Second})
	if err != nil {
		s.t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if err = conn.Ping(ctx); err == nil {
			return
		}
		select {
		case <-s.done:
			s.t.Fatalf("clickhouse-server exited: %s", s.Log())
		case <-ctx.Done():
			s.t.Fatalf("clickhouse-server did not answer within a minute: %v\n%s", err, s.Log())
		case <-tick.C:
		}
	}
}

// Kill stops the server at once, as a crash would.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

// Restart starts the server again on the same port and data after Kill.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.start()
}

// Log is the end of the server's error log, for failure messages.
func (s *Server) Log() string {
	var b strings.Builder
	for _, name := range []string{"stdout.log", "err.log"} {
		raw, _ := os.ReadFile(filepath.Join(s.dir, name))
		if len(raw) > 4000 {
			raw = raw[len(raw)-4000:]
		}
		b.Write(raw)
	}
	return b.String()
}

// freePort is a TCP port on loopback that nothing listens on now. (sdk/servetest has the
// same; this package keeps its own so that it needs nothing of NATS.)
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *Server) config() string {
	return fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>%[1]s/server.log</log><errorlog>%[1]s/err.log</errorlog></logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>%[2]d</tcp_port>
    <path>%[1]s/data/</path>
    <tmp_path>%[1]s/tmp/</tmp_path>
    <user_files_path>%[1]s/user_files/</user_files_path>
    <format_schema_path>%[1]s/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>268435456</mark_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
    <timezone>UTC</timezone>
</yandex>
`, s.dir, s.Port)
}

const users = `<?xml version="1.0"?>
<yandex>
    <profiles><default/><readonly><readonly>1</readonly></readonly></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
    <quotas><default/></quotas>
</yandex>
`
