// Package natsauth is who may do what on troy's NATS, enforced by the NATS server itself:
// decentralized JWT authentication (an operator, a system account, and one account, troy,
// holding the streams) and users whose JWTs carry their publish and subscribe permissions.
//
// The keys and JWTs live in one directory (DATA-DIR/auth, owner only). Issuing a
// credential needs only the account's signing key; revoking one re-signs the account JWT
// with the revocation, which a running server loads without a restart (Reload).
package natsauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/schemas"
)

// Role is what an identity may do.
type Role string

// The roles.
const (
	// RoleAgent publishes one agent's steps and asks the guard about that agent's
	// sessions; it reads only its own replies.
	RoleAgent Role = "agent"
	// RoleReader reads results and steps (analytics, replay) and publishes nothing.
	RoleReader Role = "reader"
	// RoleService is troy's own stages (evaluator, explainer, reporter, guard, sink,
	// gateway): they read steps and write results.
	RoleService Role = "service"
	// RoleAdmin changes policies and manages streams; it never writes results.
	RoleAdmin Role = "admin"
)

// ReloadSubject is where an admin asks a running serve to load the account JWT again
// (after a revocation). Only admins may publish there and only services listen.
const ReloadSubject = "troy.admin.auth.reload"

// AccountName is the name of troy's account.
const AccountName = "troy"

// File names in the auth directory.
const (
	operatorSeedFile = "operator.nk"
	operatorJWTFile  = "operator.jwt"
	systemJWTFile    = "system.jwt"
	accountSeedFile  = "account.nk"
	signingSeedFile  = "account-signing.nk"
	accountJWTFile   = "account.jwt"
	issuedFile       = "issued.json"
	// ServiceCreds and AdminCreds are the credentials serve creates for itself and for
	// the troyctl commands of whoever owns the data directory.
	ServiceCreds = "service.creds"
	AdminCreds   = "admin.creds"
)

// Dir is the auth directory of a data directory.
func Dir(dataDir string) string { return filepath.Join(dataDir, "auth") }

// Credential is one issued user.
type Credential struct {
	ID      string    `json:"id"` // the user's public nkey
	Role    Role      `json:"role"`
	Scope   string    `json:"scope,omitempty"` // the agent, for an agent
	Issued  time.Time `json:"issued"`
	Revoked time.Time `json:"revoked,omitzero"`
	File    string    `json:"file,omitempty"` // where the credential was written, if known
}

// Store is an auth directory with its keys loaded.
type Store struct {
	dir      string
	operator nkeys.KeyPair
	account  nkeys.KeyPair
	signing  nkeys.KeyPair
	opJWT    string
	sysJWT   string
	sysPub   string
	acct     *jwt.AccountClaims
}

// Open loads the auth directory dir; with create, a missing one is made (keys, JWTs, and
// the service and admin credentials), owner only.
func Open(dir string, create bool) (*Store, error) {
	if _, err := os.Stat(filepath.Join(dir, accountJWTFile)); errors.Is(err, fs.ErrNotExist) {
		if !create {
			return nil, fmt.Errorf("%s: no credentials here (troyctl serve creates them at its first start; or give --data-dir)", dir)
		}
		if err := initDir(dir); err != nil {
			return nil, fmt.Errorf("create credentials in %s: %w", dir, err)
		}
	}
	s, err := load(dir)
	if err != nil {
		return nil, fmt.Errorf("credentials in %s: %w", dir, err)
	}
	return s, nil
}

func initDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	op, err := nkeys.CreateOperator()
	if err != nil {
		return err
	}
	sys, err := nkeys.CreateAccount()
	if err != nil {
		return err
	}
	acc, err := nkeys.CreateAccount()
	if err != nil {
		return err
	}
	sig, err := nkeys.CreateAccount()
	if err != nil {
		return err
	}
	opPub, _ := op.PublicKey()
	sysPub, _ := sys.PublicKey()
	accPub, _ := acc.PublicKey()
	sigPub, _ := sig.PublicKey()

	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "troy-operator"
	oc.SystemAccount = sysPub
	opJWT, err := oc.Encode(op)
	if err != nil {
		return err
	}
	sc := jwt.NewAccountClaims(sysPub)
	sc.Name = "SYS"
	sysJWT, err := sc.Encode(op)
	if err != nil {
		return err
	}
	ac := jwt.NewAccountClaims(accPub)
	ac.Name = AccountName
	ac.SigningKeys.Add(sigPub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: jwt.NoLimit, DiskStorage: jwt.NoLimit, Streams: jwt.NoLimit, Consumer: jwt.NoLimit}
	accJWT, err := ac.Encode(op)
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		operatorSeedFile: seed(op), accountSeedFile: seed(acc), signingSeedFile: seed(sig),
		operatorJWTFile: []byte(opJWT), systemJWTFile: []byte(sysJWT), issuedFile: []byte("[]\n"),
	} {
		if err := writeFile(filepath.Join(dir, name), data); err != nil {
			return err
		}
	}
	// The account JWT last: its presence says the directory is complete.
	if err := writeFile(filepath.Join(dir, accountJWTFile), []byte(accJWT)); err != nil {
		return err
	}
	s, err := load(dir)
	if err != nil {
		return err
	}
	for _, r := range []Role{RoleService, RoleAdmin} {
		name := filepath.Join(dir, string(r)+".creds")
		if _, _, err := s.Issue(r, "", name); err != nil {
			return err
		}
	}
	return nil
}

func seed(kp nkeys.KeyPair) []byte {
	s, _ := kp.Seed()
	return s
}

func load(dir string) (*Store, error) {
	s := &Store{dir: dir}
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		return strings.TrimSpace(string(b)), err
	}
	var err error
	keys := []struct {
		file string
		kp   *nkeys.KeyPair
	}{{operatorSeedFile, &s.operator}, {accountSeedFile, &s.account}, {signingSeedFile, &s.signing}}
	for _, k := range keys {
		raw, err := read(k.file)
		if err != nil {
			return nil, err
		}
		if *k.kp, err = nkeys.FromSeed([]byte(raw)); err != nil {
			return nil, fmt.Errorf("%s: expected an nkey seed: %w", k.file, err)
		}
	}
	if s.opJWT, err = read(operatorJWTFile); err != nil {
		return nil, err
	}
	if s.sysJWT, err = read(systemJWTFile); err != nil {
		return nil, err
	}
	sc, err := jwt.DecodeAccountClaims(s.sysJWT)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", systemJWTFile, err)
	}
	s.sysPub = sc.Subject
	if s.acct, err = s.readAccount(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) readAccount() (*jwt.AccountClaims, error) {
	raw, err := os.ReadFile(filepath.Join(s.dir, accountJWTFile))
	if err != nil {
		return nil, err
	}
	ac, err := jwt.DecodeAccountClaims(strings.TrimSpace(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", accountJWTFile, err)
	}
	return ac, nil
}

// writeFile writes a file readable by its owner only, replacing it whole.
func writeFile(name string, data []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

// AccountID is the public key of troy's account, under which the server keeps its streams.
func (s *Store) AccountID() string { return s.acct.Subject }

// AdoptStreams moves the streams a server without authentication kept (under the global
// account, $G, in its JetStream directory jsDir) to troy's account, once, so that a data
// directory written before authentication was on keeps its traces and results. It
// reports whether it moved them.
func (s *Store) AdoptStreams(jsDir string) (bool, error) {
	global, own := filepath.Join(jsDir, "$G"), filepath.Join(jsDir, s.acct.Subject)
	if _, err := os.Stat(global); err != nil {
		return false, nil // nothing to adopt
	}
	if _, err := os.Stat(own); err == nil {
		return false, nil // the account has streams of its own already: leave both
	}
	if err := os.Rename(global, own); err != nil {
		return false, fmt.Errorf("move the streams of %s to troy's account: %w", global, err)
	}
	return true, nil
}

// MaxControlLine is the longest protocol line a server must take for every credential
// issued here to connect: 256-byte agent names escape to tokens of up to 768 bytes.
const MaxControlLine = 16 << 10

// Path is a file of the auth directory.
func (s *Store) Path(name string) string { return filepath.Join(s.dir, name) }

// Configure makes an embedded server trust the operator and know both accounts.
func (s *Store) Configure(so *server.Options) error {
	oc, err := jwt.DecodeOperatorClaims(s.opJWT)
	if err != nil {
		return fmt.Errorf("%s: %w", operatorJWTFile, err)
	}
	raw, err := os.ReadFile(s.Path(accountJWTFile))
	if err != nil {
		return err
	}
	res := &server.MemAccResolver{}
	if err := res.Store(s.sysPub, s.sysJWT); err != nil {
		return err
	}
	if err := res.Store(s.acct.Subject, strings.TrimSpace(string(raw))); err != nil {
		return err
	}
	// A user's JWT travels in its CONNECT line; an agent whose name escapes to a long
	// subject token has a JWT over NATS's default 4 KiB.
	so.MaxControlLine = max(so.MaxControlLine, MaxControlLine)
	so.TrustedOperators = []*jwt.OperatorClaims{oc}
	so.SystemAccount = s.sysPub
	so.AccountResolver = res
	return nil
}

// Reload gives a running server the account JWT as it is on disk now: revoked users
// can no longer connect, and their live connections are closed.
func (s *Store) Reload(srv *server.Server) error {
	ac, err := s.readAccount()
	if err != nil {
		return err
	}
	raw, _ := os.ReadFile(s.Path(accountJWTFile))
	if err := srv.AccountResolver().Store(ac.Subject, strings.TrimSpace(string(raw))); err != nil {
		return err
	}
	acc, err := srv.LookupAccount(ac.Subject)
	if err != nil {
		return fmt.Errorf("account %s: %w", ac.Subject, err)
	}
	srv.UpdateAccountClaims(acc, ac)
	s.acct = ac
	return nil
}

// Issue creates a credential of a role (scope: the agent, for an agent), writes it to
// file (owner only) unless file is empty, and returns it with its record.
func (s *Store) Issue(role Role, scope, file string) (Credential, []byte, error) {
	perms, err := Permissions(role, scope)
	if err != nil {
		return Credential{}, nil, err
	}
	user, err := nkeys.CreateUser()
	if err != nil {
		return Credential{}, nil, err
	}
	pub, _ := user.PublicKey()
	accPub, _ := s.account.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = string(role)
	if scope != "" {
		uc.Name += ":" + scope
	}
	uc.IssuerAccount = accPub
	if role == RoleReader {
		// A reader's replies come under an inbox of its own, so that it cannot read
		// the replies others get (guard decisions among them).
		perms.Sub.Allow = jwt.StringList{readerInbox(pub) + ".>"}
	}
	uc.Permissions = perms
	uc.Tags.Add("troy-role:" + string(role))
	ujwt, err := uc.Encode(s.signing)
	if err != nil {
		return Credential{}, nil, err
	}
	creds, err := jwt.FormatUserConfig(ujwt, seed(user))
	if err != nil {
		return Credential{}, nil, err
	}
	if file != "" {
		if err := writeFile(file, creds); err != nil {
			return Credential{}, nil, fmt.Errorf("write %s: %w", file, err)
		}
	}
	c := Credential{ID: pub, Role: role, Scope: scope, Issued: time.Unix(uc.IssuedAt, 0).UTC()}
	if file != "" {
		c.File, _ = filepath.Abs(file)
	}
	list, err := s.List()
	if err != nil {
		return Credential{}, nil, err
	}
	if err := s.saveList(append(list, c)); err != nil {
		return Credential{}, nil, err
	}
	return c, creds, nil
}

// List returns every credential issued, revoked ones marked.
func (s *Store) List() ([]Credential, error) {
	raw, err := os.ReadFile(s.Path(issuedFile))
	if err != nil {
		return nil, err
	}
	var list []Credential
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("%s: %w", s.Path(issuedFile), err)
	}
	return list, nil
}

func (s *Store) saveList(list []Credential) error {
	raw, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(s.Path(issuedFile), append(raw, '\n'))
}

// Revoke revokes the credential whose id is id (or starts with it, if only one does):
// the account JWT is re-signed with it in its revocation list. A running server learns
// of it by Reload.
func (s *Store) Revoke(id string) (Credential, error) {
	list, err := s.List()
	if err != nil {
		return Credential{}, err
	}
	var at []int
	for i, c := range list {
		if c.ID == id {
			at = []int{i}
			break
		}
		if id != "" && strings.HasPrefix(c.ID, id) {
			at = append(at, i)
		}
	}
	switch {
	case len(at) == 0:
		return Credential{}, fmt.Errorf("revoke %q: no credential has that id (troyctl auth list shows them)", id)
	case len(at) > 1:
		return Credential{}, fmt.Errorf("revoke %q: %d credentials have ids starting so; give more of the id", id, len(at))
	}
	c := &list[at[0]]
	ac, err := s.readAccount()
	if err != nil {
		return Credential{}, err
	}
	// A revocation covers JWTs issued at or before its second: one a second later, so
	// that a credential issued in this very second is covered too.
	now := time.Now().Add(time.Second)
	ac.RevokeAt(c.ID, now)
	raw, err := ac.Encode(s.operator)
	if err != nil {
		return Credential{}, err
	}
	if err := writeFile(s.Path(accountJWTFile), []byte(raw)); err != nil {
		return Credential{}, err
	}
	s.acct = ac
	if c.Revoked.IsZero() {
		c.Revoked = now.UTC().Truncate(time.Second)
	}
	return *c, s.saveList(list)
}

// NATSConfig is the part of a nats-server configuration that makes a server (or each
// server of a cluster) trust this directory's operator and know troy's account, so that
// the credentials issued here work there.
func (s *Store) NATSConfig() (string, error) {
	raw, err := os.ReadFile(s.Path(accountJWTFile))
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# troy's accounts and permissions: paste into the configuration of every NATS server\n")
	fmt.Fprintf(&b, "# of the cluster (JetStream enabled), then run troyctl serve --nats URL --creds %s.\n", s.Path(ServiceCreds))
	fmt.Fprintf(&b, "# Users' permissions are in their credentials (troyctl auth agent|reader); revocations\n")
	fmt.Fprintf(&b, "# are in the account JWT below: paste it again after troyctl auth revoke, and reload.\n")
	fmt.Fprintf(&b, "max_control_line: %d\n", MaxControlLine)
	fmt.Fprintf(&b, "operator: %q\n", s.opJWT)
	fmt.Fprintf(&b, "system_account: %s\n", s.sysPub)
	fmt.Fprintf(&b, "resolver: MEMORY\n")
	fmt.Fprintf(&b, "resolver_preload: {\n")
	fmt.Fprintf(&b, "  # SYS\n  %s: %q\n", s.sysPub, s.sysJWT)
	fmt.Fprintf(&b, "  # %s\n  %s: %q\n", AccountName, s.acct.Subject, strings.TrimSpace(string(raw)))
	fmt.Fprintf(&b, "}\n")
	return b.String(), nil
}

// Permissions are what a role may publish and subscribe to. An agent's scope is its name.
func Permissions(role Role, scope string) (jwt.Permissions, error) {
	var p jwt.Permissions
	steps, results := event.StepsStream, event.ResultsStream
	readJS := func(stream string) []string {
		return []string{
			"$JS.API.STREAM.INFO." + stream,
			"$JS.API.STREAM.MSG.GET." + stream,
			"$JS.API.DIRECT.GET." + stream,
			"$JS.API.DIRECT.GET." + stream + ".>",
			"$JS.API.CONSUMER.CREATE." + stream + ".>",
			"$JS.API.CONSUMER.INFO." + stream + ".>",
			"$JS.API.CONSUMER.DELETE." + stream + ".>",
			"$JS.API.CONSUMER.MSG.NEXT." + stream + ".>",
			"$JS.ACK." + stream + ".>",
		}
	}
	switch role {
	case RoleAgent:
		if scope == "" {
			return p, errors.New("an agent credential needs the agent's name")
		}
		if err := schemas.CheckID(scope); err != nil {
			return p, fmt.Errorf("agent %q: %w", scope, err)
		}
		tok := schemas.Token(scope)
		p.Pub.Allow.Add(
			event.StepsPrefix+"."+tok+".>",
			event.GuardCheckSubject(scope), event.GuardOutputSubject(scope), event.GuardEndSubject(scope),
			event.GuardPolicySubject(scope),
			event.ReportSubject(scope), // its own traces' reports
			"$JS.API.INFO",
			"$JS.API.STREAM.INFO."+steps,
		)
		p.Sub.Allow.Add(InboxPrefix(scope) + ".>")
	case RoleReader:
		p.Pub.Allow.Add("$JS.API.INFO", event.ReportPrefix+".*")
		p.Pub.Allow.Add(readJS(results)...)
		p.Pub.Allow.Add(readJS(steps)...)
		// Its own consumers only: the services' durables are theirs to read, ack and
		// keep (a reader taking or deleting the reporter's would stop the reports).
		// Wildcards keep the JWT, sent in the CONNECT line, well under NATS's 4 KiB limit.
		for _, d := range ServiceDurables() {
			p.Pub.Deny.Add("$JS.API.CONSUMER.*.*."+d, "$JS.API.CONSUMER.CREATE.*."+d+".>",
				"$JS.API.CONSUMER.MSG.NEXT.*."+d, "$JS.ACK.*."+d+".>")
		}
		// Issue lets it subscribe to an inbox of its own.
	case RoleService:
		p.Pub.Allow.Add("troy.>", "_INBOX.>", "$JS.>", "$KV.>", "$SRV.>")
		p.Pub.Deny.Add("troy.admin.>",
			"$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.MSG.DELETE.>")
		p.Sub.Allow.Add(">")
	case RoleAdmin:
		p.Pub.Allow.Add(">")
		p.Pub.Deny.Add(event.ResultsPrefix + ".>")
		p.Sub.Allow.Add(">")
	default:
		return p, fmt.Errorf("role %q: expected agent, reader, service or admin", role)
	}
	return p, nil
}

// readerInbox is the inbox prefix of the reader whose public key is pub.
func readerInbox(pub string) string { return "_INBOX.reader-" + strings.ToLower(pub[:16]) }

// ServiceDurables are the names of the durable consumers serve's components read the
// streams with, which no reader may touch.
func ServiceDurables() []string {
	return []string{"evaluator", "explainer", "reporter", "scorer", "sink-steps", "sink-results"}
}

// InboxPrefix is the prefix of an agent's reply subjects: the only ones it may read.
func InboxPrefix(agent string) string { return "_INBOX." + schemas.Token(agent) }

// Roles are the roles troyctl auth issues, in order.
func Roles() []Role { return []Role{RoleAgent, RoleReader, RoleService, RoleAdmin} }
