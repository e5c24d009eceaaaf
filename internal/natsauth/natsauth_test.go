package natsauth_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/troy-audit/troy/event"

	"github.com/troy-audit/troy/internal/natsauth"
	"github.com/troy-audit/troy/sdk/wire"
)

func TestPermissions(t *testing.T) {
	for _, tc := range []struct {
		role    natsauth.Role
		scope   string
		pub     []string // allowed to publish
		noPub   []string // not allowed
		wantErr string
	}{
		{role: natsauth.RoleAgent, scope: "a", pub: []string{"troy.steps.a.>", "troy.guard.check.a", "troy.guard.end.a"}, noPub: []string{"troy.results.>", "$KV.troy-policies.>", ">"}},
		{role: natsauth.RoleAgent, scope: "a.b", pub: []string{"troy.steps.a~2eb.>", "troy.guard.check.a~2eb"}},
		{role: natsauth.RoleAgent, wantErr: "an agent credential needs the agent's name"},
		{role: natsauth.RoleAgent, scope: "bad\nname", wantErr: `agent "bad\nname"`},
		{role: natsauth.RoleReader, pub: []string{"$JS.API.CONSUMER.CREATE.TROY_RESULTS.>"}, noPub: []string{"troy.>", "$KV.troy-policies.>", "$JS.API.STREAM.DELETE.TROY_RESULTS"}},
		{role: natsauth.RoleService, pub: []string{"troy.>", "$KV.>"}},
		{role: natsauth.RoleAdmin, pub: []string{">"}},
		{role: "root", wantErr: `role "root": expected agent, reader, service or admin`},
	} {
		p, err := natsauth.Permissions(tc.role, tc.scope)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s %q: %v, want %q", tc.role, tc.scope, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.role, err)
		}
		for _, s := range tc.pub {
			if !p.Pub.Allow.Contains(s) {
				t.Errorf("%s %q: may not publish %s: %v", tc.role, tc.scope, s, p.Pub.Allow)
			}
		}
		for _, s := range tc.noPub {
			if p.Pub.Allow.Contains(s) {
				t.Errorf("%s %q: may publish %s", tc.role, tc.scope, s)
			}
		}
	}
	if p, _ := natsauth.Permissions(natsauth.RoleAdmin, ""); !p.Pub.Deny.Contains("troy.results.>") {
		t.Error("an admin may write results")
	}
	if p, _ := natsauth.Permissions(natsauth.RoleService, ""); !p.Pub.Deny.Contains("$JS.API.STREAM.DELETE.>") {
		t.Error("a service may delete streams")
	}
}

func TestIssueListRevoke(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "auth")
	if _, err := natsauth.Open(dir, false); err == nil || !strings.Contains(err.Error(), "no credentials here") {
		t.Fatalf("open missing: %v", err)
	}
	s, err := natsauth.Open(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "a.creds")
	c, creds, err := s.Issue(natsauth.RoleAgent, "a", file)
	if err != nil {
		t.Fatal(err)
	}
	onDisk, _ := os.ReadFile(file)
	if string(onDisk) != string(creds) {
		t.Fatal("the file is not the credential returned")
	}
	_, readerCreds, err := s.Issue(natsauth.RoleReader, "", filepath.Join(t.TempDir(), "r.creds"))
	if err != nil {
		t.Fatal(err)
	}
	rfile := filepath.Join(t.TempDir(), "reader.creds")
	if err := os.WriteFile(rfile, readerCreds, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := wire.InboxPrefix(rfile); err != nil || !strings.HasPrefix(got, "_INBOX.reader-") {
		t.Errorf("reader's inbox prefix: %q, %v", got, err)
	}
	for creds, want := range map[string]string{file: "_INBOX.a", s.Path(natsauth.AdminCreds): "", s.Path(natsauth.ServiceCreds): ""} {
		if got, err := wire.InboxPrefix(creds); err != nil || got != want {
			t.Errorf("inbox prefix of %s: %q, %v; want %q", filepath.Base(creds), got, err, want)
		}
	}
	uj, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		t.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(uj)
	if err != nil || uc.Subject != c.ID || uc.IssuerAccount == "" {
		t.Fatalf("user JWT: %+v, %v", uc, err)
	}
	list, err := s.List()
	if err != nil || len(list) != 4 || list[0].Role != natsauth.RoleService || list[1].Role != natsauth.RoleAdmin || list[2].ID != c.ID || list[3].Role != natsauth.RoleReader {
		t.Fatalf("list: %+v, %v", list, err)
	}
	if _, err := s.Revoke("U"); err == nil || !strings.Contains(err.Error(), "credentials have ids starting so") {
		t.Fatalf("revoke an ambiguous prefix: %v", err)
	}
	r, err := s.Revoke(c.ID[:10])
	if err != nil || r.ID != c.ID || r.Revoked.IsZero() {
		t.Fatalf("revoke: %+v, %v", r, err)
	}
	again, err := natsauth.Open(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	list, _ = again.List()
	if list[2].Revoked.IsZero() || !list[1].Revoked.IsZero() {
		t.Fatalf("after revoke: %+v", list)
	}
	raw, _ := os.ReadFile(again.Path("account.jwt"))
	ac, err := jwt.DecodeAccountClaims(string(raw))
	if err != nil || !ac.IsClaimRevoked(uc) {
		t.Fatalf("the account JWT does not revoke the user: %v", err)
	}
}

func TestCorruptDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "auth")
	if _, err := natsauth.Open(dir, true); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "operator.nk"), []byte("not a seed"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := natsauth.Open(dir, false)
	if err == nil || !strings.Contains(err.Error(), "operator.nk: expected an nkey seed") {
		t.Fatalf("corrupt seed: %v", err)
	}
}

// Every credential connects to a server configured by Configure, however long its
// agent's name, and the server enforces its permissions.
func TestCredentialsConnect(t *testing.T) {
	st, err := natsauth.Open(filepath.Join(t.TempDir(), "auth"), true)
	if err != nil {
		t.Fatal(err)
	}
	so := &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, JetStream: true, StoreDir: t.TempDir()}
	if err := st.Configure(so); err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(so)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	for _, tc := range []struct {
		role  natsauth.Role
		scope string
	}{
		{natsauth.RoleAgent, "a"},
		{natsauth.RoleAgent, strings.Repeat("é", 128)}, // 256 bytes, every one escaped
		{natsauth.RoleReader, ""},
		{natsauth.RoleService, ""},
		{natsauth.RoleAdmin, ""},
	} {
		file := filepath.Join(t.TempDir(), "u.creds")
		if _, _, err := st.Issue(tc.role, tc.scope, file); err != nil {
			t.Fatal(err)
		}
		opts, _ := wire.Options("test", wire.Auth{CredsFile: file})
		nc, err := nats.Connect(srv.ClientURL(), append(opts, nats.MaxReconnects(0))...)
		if err != nil {
			t.Fatalf("%s %.10q: connect: %v", tc.role, tc.scope, err)
		}
		if tc.role == natsauth.RoleAgent {
			// Its own guard subject: the request reaches the server (no one answers).
			_, err := nc.Request(event.GuardCheckSubject(tc.scope), []byte("{}"), time.Second)
			if !errors.Is(err, nats.ErrNoResponders) {
				t.Errorf("%s %.10q: request on its own guard subject: %v, want no responders", tc.role, tc.scope, err)
			}
		}
		nc.Close()
	}
	if nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected")
	}
}
