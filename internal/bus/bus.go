// Package bus owns NATS for troy: it starts an embedded nats-server or connects to a
// cluster, declares every stream, consumer and key-value bucket in one place, publishes
// events, and binds stage handlers to durable pull consumers with explicit acks, bounded
// redelivery with backoff, and a dead-letter subject.
//
// Stages never import NATS: they are functions from event.Envelope to envelopes.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/troy-audit/troy/sdk/wire"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/troy-audit/troy/event"
)

// Stream names.
const (
	StepsStream   = event.StepsStream
	ResultsStream = event.ResultsStream
	DeadStream    = event.DeadStream
	PolicyBucket  = "troy-policies"
	// CacheBucket keeps model replies by (model, prompt), so that explaining a trace again
	// costs no calls.
	CacheBucket = "troy-explanations"
)

// MaxEventSize bounds one event; bigger ones go to the dead-letter subject.
const MaxEventSize = 1 << 20

// Options say which NATS to use.
type Options struct {
	// URL lists servers to connect to, comma-separated. Empty starts an embedded server.
	URL string
	// DataDir holds the embedded server's file storage. Ignored with Memory.
	DataDir string
	// Memory keeps streams in memory and opens no port: for one-shot command runs.
	Memory bool
	// CacheDir, with Memory, keeps the explanation cache on disk there, so that it
	// outlives the run; empty keeps it in memory too.
	CacheDir string
	// Listen is the embedded server's client address for agents ("host:port"); empty
	// opens no port.
	Listen string
	// Auth is who the bus is to the NATS of URL, and its TLS; with ServerAuth, its
	// CredsFile is who the bus is to its embedded server.
	wire.Auth
	// TLSCert and TLSKey are the embedded server's certificate and key files: with them,
	// clients on Listen must speak TLS (the bus's own in-process connection need not).
	TLSCert, TLSKey string
	// ServerAuth, when set, configures the embedded server's authentication (trusted
	// operator, accounts): clients must then bring credentials.
	ServerAuth func(*server.Options) error
	// Name identifies the connection in the server's monitoring.
	Name string
	// Logger receives the bus's logs; nil discards them.
	Logger *slog.Logger
	// Client uses the streams and bucket of a running deployment without declaring them,
	// as agents and one-shot commands do.
	Client bool
	// NoPolicies, with Client, does not look up the policy bucket: for a client that
	// publishes steps and asks troy's services only, with an agent's credential, which may
	// not use the bucket. PutPolicy and GetPolicy then fail.
	NoPolicies bool
	// Replicas is how many servers of a cluster keep each stream and bucket: 3 in a
	// three-node cluster survives the loss of one. Zero leaves what existing streams
	// have (new ones get 1).
	Replicas int
	// Retain is how long the steps, results and dead-letter streams keep an event (and
	// the explanation cache a reply), and RetainBytes how large each stream may grow
	// before its oldest events go. Zero leaves the limits existing streams have (new
	// ones keep everything), so that instances started without them change nothing;
	// Unlimited lifts a limit.
	Retain      time.Duration
	RetainBytes int64
}

// Unlimited, as Options.Retain or RetainBytes, lifts a limit set before.
const Unlimited = -1

// Bus is a connection to NATS with troy's streams declared.
type Bus struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	srv      *server.Server
	storage  jetstream.StorageType
	log      *slog.Logger
	kv       jetstream.KeyValue
	mu       sync.Mutex
	streams  map[string]jetstream.Stream
	cache    jetstream.KeyValue // the explanation cache; nil when absent
	replicas int
	retain   time.Duration
	maxBytes int64
	tmpDir   string // the embedded server's directory, when it is the process's own
	// connect opens another connection to the same NATS with the same options, for a
	// service that must drain its subscriptions apart from the rest.
	connect func(extra ...nats.Option) (*nats.Conn, error)
	// lost is closed when NATS closes the connection for good while the bus is open.
	lost     chan struct{}
	lostOnce sync.Once
	// refused hears the first permission violation the server reports, so that a
	// client whose credential may not do what it asks learns so at once.
	refused chan error
	closing atomic.Bool
	ackMu   sync.Mutex
	ackers  []*acker // reply subjects free for PublishEach
}

// Open starts or connects to NATS and declares troy's streams and buckets.
func Open(ctx context.Context, opts Options) (*Bus, error) {
	b := &Bus{storage: jetstream.FileStorage, log: opts.Logger, replicas: opts.Replicas,
		retain: opts.Retain, maxBytes: opts.RetainBytes, lost: make(chan struct{}), refused: make(chan error, 1)}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if opts.URL == "" {
		if err = b.startEmbedded(ctx, opts); err != nil {
			b.Close()
			return nil, err
		}
		srv := b.srv
		base := []nats.Option{nats.InProcessServer(srv), nats.Name(opts.Name), nats.MaxReconnects(-1)}
		if opts.ServerAuth != nil && opts.CredsFile != "" {
			base = append(base, nats.UserCredentials(opts.CredsFile))
		}
		b.connect = func(extra ...nats.Option) (*nats.Conn, error) {
			return nats.Connect("", append(slices.Clip(base), extra...)...)
		}
	} else {
		var nopts []nats.Option
		if nopts, err = clientOptions(opts); err == nil {
			b.connect = func(extra ...nats.Option) (*nats.Conn, error) {
				return nats.Connect(opts.URL, append(slices.Clip(nopts), extra...)...)
			}
		}
	}
	if err == nil {
		b.nc, err = b.connect(nats.ClosedHandler(b.closed), nats.ErrorHandler(b.asyncError))
	}
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	if opts.Memory {
		b.storage = jetstream.MemoryStorage
	}
	if b.js, err = jetstream.New(b.nc); err != nil {
		b.Close()
		return nil, err
	}
	if opts.Client && opts.URL != "" && opts.NoPolicies {
		return b, nil
	}
	if opts.Client && opts.URL != "" {
		lctx, cancel := context.WithCancelCause(ctx)
		go func() {
			select {
			case err := <-b.refused:
				cancel(err)
			case <-lctx.Done():
			}
		}()
		b.kv, err = b.lookupBucket(lctx, PolicyBucket)
		refused := context.Cause(lctx)
		cancel(nil)
		if err != nil {
			b.Close()
			if errors.Is(refused, nats.ErrPermissionViolation) {
				return nil, fmt.Errorf("%s: this credential may not use troy's policy bucket (an agent's or a reader's? this needs the admin credential): %w", opts.URL, refused)
			}
			return nil, fmt.Errorf("troy's streams are not on %s (is troyctl serve running?): %w", opts.URL, err)
		}
		b.cache, _ = b.js.KeyValue(ctx, CacheBucket) // absent: explain without a cache
		return b, nil
	}
	cacheStorage := b.storage
	if opts.Memory && opts.CacheDir != "" {
		cacheStorage = jetstream.FileStorage
	}
	if err := b.declare(ctx, cacheStorage); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// startEmbedded starts the in-process server and waits until it takes connections: up to a
// minute (or ctx's deadline), since a machine under load can take seconds to start JetStream.
func (b *Bus) startEmbedded(ctx context.Context, opts Options) error {
	so := &server.Options{
		ServerName: "troy",
		JetStream:  true,
		NoSigs:     true,
		NoLog:      true,
		DontListen: opts.Listen == "",
		MaxPayload: MaxEventSize + headerRoom,
	}
	switch {
	case opts.Memory && opts.CacheDir != "":
		so.StoreDir = filepath.Join(opts.CacheDir, "jetstream") // only the cache bucket is on disk
	case opts.Memory:
		// Memory streams write nothing, but the server wants a directory; one per process,
		// so that concurrent commands never share one.
		dir, err := os.MkdirTemp("", "troy-nats-")
		if err != nil {
			return fmt.Errorf("start embedded NATS: %w", err)
		}
		b.tmpDir, so.StoreDir = dir, dir
		so.JetStreamMaxStore = 1 << 20
	default:
		dir := opts.DataDir
		if dir == "" {
			dir = ".troy"
		}
		so.StoreDir = filepath.Join(dir, "jetstream")
	}
	if opts.TLSCert != "" || opts.TLSKey != "" {
		if opts.TLSCert == "" || opts.TLSKey == "" {
			return fmt.Errorf("the embedded NATS server's TLS needs both a certificate and a key file (cert %q, key %q)", opts.TLSCert, opts.TLSKey)
		}
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: opts.TLSCert, KeyFile: opts.TLSKey})
		if err != nil {
			return fmt.Errorf("the embedded NATS server's TLS: %w", err)
		}
		so.TLSConfig, so.TLS, so.TLSTimeout = tc, true, 5
	}
	if opts.ServerAuth != nil {
		if err := opts.ServerAuth(so); err != nil {
			return fmt.Errorf("start embedded NATS: authentication: %w", err)
		}
	}
	if opts.Listen != "" {
		host, port, err := splitHostPort(opts.Listen)
		if err != nil {
			return err
		}
		so.Host, so.Port = host, port
	}
	srv, err := server.NewServer(so)
	if err != nil {
		return fmt.Errorf("start embedded NATS: %w", err)
	}
	// The server reports what stops it from starting (an address in use, a store it
	// cannot open) only to its logger, and then waits: the logger tells us at once.
	fatal := make(chan error, 1)
	srv.SetLoggerV2(&natsLogger{log: b.log, fatal: fatal}, false, false, false)
	go srv.Start()
	wait := time.Minute
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl))
	}
	deadline := time.Now().Add(wait)
	for !srv.ReadyForConnections(50 * time.Millisecond) {
		var err error
		select {
		case err = <-fatal:
		case <-ctx.Done():
			err = ctx.Err()
		default:
			if time.Now().After(deadline) {
				err = fmt.Errorf("not ready after %s", wait.Round(time.Second))
			}
		}
		if err != nil {
			srv.Shutdown()
			srv.WaitForShutdown()
			return fmt.Errorf("start embedded NATS: %w", err)
		}
	}
	b.srv = srv
	return nil
}

// natsLogger receives the embedded server's logs: a fatal error goes to the channel,
// for startEmbedded to report, and the rest to the debug log.
type natsLogger struct {
	log   *slog.Logger
	fatal chan<- error
}

func (l *natsLogger) Noticef(format string, v ...any) {}
func (l *natsLogger) Tracef(format string, v ...any)  {}
func (l *natsLogger) Debugf(format string, v ...any)  {}
func (l *natsLogger) Warnf(format string, v ...any) {
	l.log.Debug("nats: " + fmt.Sprintf(format, v...))
}
func (l *natsLogger) Errorf(format string, v ...any) {
	l.log.Debug("nats: " + fmt.Sprintf(format, v...))
}

// Fatalf keeps the error the server gives, such as the listener's, so that callers can
// tell an address in use (errors.Is(err, syscall.EADDRINUSE)).
func (l *natsLogger) Fatalf(format string, v ...any) {
	err := fmt.Errorf(format, v...)
	for _, a := range v {
		if e, ok := a.(error); ok {
			err = e
			break
		}
	}
	select {
	case l.fatal <- err:
	default:
	}
}

func splitHostPort(addr string) (string, int, error) {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return "", 0, fmt.Errorf("listen address %q: expected host:port", addr)
	}
	var port int
	if _, err := fmt.Sscanf(addr[i+1:], "%d", &port); err != nil {
		return "", 0, fmt.Errorf("listen address %q: bad port", addr)
	}
	host := addr[:i]
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

func clientOptions(o Options) ([]nats.Option, error) {
	return wire.Options(o.Name, o.Auth)
}

// declare creates or updates every stream and bucket; running it again with the same
// options changes nothing.
func (b *Bus) declare(ctx context.Context, cacheStorage jetstream.StorageType) error {
	streams := []jetstream.StreamConfig{
		{Name: StepsStream, Subjects: []string{event.StepsPrefix + ".>"}, Duplicates: 2 * time.Minute},
		{Name: ResultsStream, Subjects: []string{event.ResultsPrefix + ".>"}, Duplicates: 2 * time.Minute},
		{Name: DeadStream, Subjects: []string{event.DeadPrefix + ".>"}},
	}
	for _, cfg := range streams {
		cfg.Storage = b.storage
		cfg.MaxMsgSize = MaxEventSize + headerRoom
		cfg.AllowDirect = true // reads of one trace go straight to the stored events
		if err := b.untilAnswered(ctx, "stream "+cfg.Name, func(ctx context.Context) (err error) {
			cfg := cfg
			if cfg.Replicas, cfg.MaxAge, cfg.MaxBytes, err = b.settings(ctx, cfg.Name); err != nil {
				return err
			}
			if cfg.MaxAge > 0 && cfg.Duplicates > cfg.MaxAge {
				cfg.Duplicates = cfg.MaxAge // the server refuses a window longer than the age
			}
			_, err = b.js.CreateOrUpdateStream(ctx, cfg)
			return err
		}); err != nil {
			return fmt.Errorf("declare stream %s: %w", cfg.Name, err)
		}
	}
	buckets := []struct {
		cfg jetstream.KeyValueConfig
		kv  *jetstream.KeyValue
	}{
		{jetstream.KeyValueConfig{Bucket: PolicyBucket, Storage: b.storage, History: 5}, &b.kv},
		{jetstream.KeyValueConfig{Bucket: CacheBucket, Storage: cacheStorage, History: 1, Description: "model replies by (model, prompt)"}, &b.cache},
	}
	for _, bk := range buckets {
		if err := b.untilAnswered(ctx, "bucket "+bk.cfg.Bucket, func(ctx context.Context) (err error) {
			cfg := bk.cfg
			var ttl time.Duration
			if cfg.Replicas, ttl, _, err = b.settings(ctx, "KV_"+cfg.Bucket); err != nil {
				return err
			}
			if cfg.Bucket == CacheBucket {
				cfg.TTL = ttl // replies are kept as long as events are
			}
			*bk.kv, err = b.js.CreateOrUpdateKeyValue(ctx, cfg)
			return err
		}); err != nil {
			return fmt.Errorf("declare bucket %s: %w", bk.cfg.Bucket, err)
		}
	}
	return nil
}

// settings gives the replicas, age and size to declare a stream with: the options', or
// where they leave one (zero) what the stream has, so that an instance started without
// them changes nothing; a new stream gets one replica and no limits.
func (b *Bus) settings(ctx context.Context, stream string) (replicas int, age time.Duration, size int64, err error) {
	replicas, age, size = b.replicas, max(b.retain, 0), b.maxBytes
	if b.replicas == 0 || b.retain == 0 || b.maxBytes == 0 {
		s, err := b.js.Stream(ctx, stream)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
		case err != nil:
			return 0, 0, 0, err
		default:
			old := s.CachedInfo().Config
			if b.replicas == 0 {
				replicas = old.Replicas
			}
			if b.retain == 0 {
				age = old.MaxAge
			}
			if b.maxBytes == 0 {
				size = old.MaxBytes
			}
		}
	}
	return max(replicas, 1), age, size, nil
}

// lookupBucket finds a bucket of a running deployment.
func (b *Bus) lookupBucket(ctx context.Context, name string) (kv jetstream.KeyValue, err error) {
	err = b.untilAnswered(ctx, "bucket "+name, func(ctx context.Context) error {
		kv, err = b.js.KeyValue(ctx, name)
		return err
	})
	return kv, err
}

// untilAnswered calls f until it gets an answer. A cluster that is starting, or electing
// a new leader after losing a server, answers nothing for a few seconds, so calls that
// time out or find no responder are made again, for up to half a minute; any other error
// is final.
func (b *Bus) untilAnswered(ctx context.Context, what string, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	wait := 100 * time.Millisecond
	for {
		// A request sent while no leader was there is never answered: each attempt gets
		// its own short deadline.
		attempt, cancelAttempt := context.WithTimeout(ctx, 5*time.Second)
		err := f(attempt)
		cancelAttempt()
		if err == nil || ctx.Err() != nil || !unanswered(err) {
			return err
		}
		b.log.Info("no answer from NATS; retrying", "what", what, "err", err)
		sleep(ctx, wait)
		wait = min(2*wait, 2*time.Second)
	}
}

// unanswered reports whether err says a request got no answer in time.
func unanswered(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoHeartbeat)
}

// Cache is the explanation cache: model replies by key, in the cache bucket.
type Cache struct{ kv jetstream.KeyValue }

// ExplanationCache returns the deployment's explanation cache; nil when it has none.
func (b *Bus) ExplanationCache() *Cache {
	if b.cache == nil {
		return nil
	}
	return &Cache{b.cache}
}

// Get returns the value stored under key, or nil.
func (c *Cache) Get(ctx context.Context, key string) ([]byte, error) {
	e, err := c.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return e.Value(), nil
}

// Put stores value under key.
func (c *Cache) Put(ctx context.Context, key string, value []byte) error {
	_, err := c.kv.Put(ctx, key, value)
	return err
}

// Close closes the connection and stops the embedded server, if any.
func (b *Bus) Close() {
	b.closing.Store(true)
	if b.nc != nil {
		_ = b.nc.Drain()
		b.nc.Close()
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
	if b.tmpDir != "" {
		_ = os.RemoveAll(b.tmpDir)
	}
}

// asyncError hears the errors NATS reports apart from any call: a permission violation
// goes to refused too.
func (b *Bus) asyncError(_ *nats.Conn, _ *nats.Subscription, err error) {
	b.log.Warn("NATS", "err", err)
	if errors.Is(err, nats.ErrPermissionViolation) {
		select {
		case b.refused <- err:
		default:
		}
	}
}

// closed hears that the connection is closed: by Close, or by NATS for good. nats.go
// reconnects after a connection breaks, but not after the server refuses it with certain
// errors (a protocol line too long, credentials revoked), which closes it.
func (b *Bus) closed(nc *nats.Conn) {
	if b.closing.Load() {
		return
	}
	b.lostOnce.Do(func() {
		b.log.Error("NATS closed the connection for good", "err", nc.LastError())
		close(b.lost)
	})
}

// Lost is closed when NATS has closed the connection for good, other than by Close: a
// process that runs on should stop, so that whatever supervises it starts it again.
func (b *Bus) Lost() <-chan struct{} { return b.lost }

// ErrLost says NATS closed the connection for good.
var ErrLost = errors.New("NATS closed the connection for good")

// LostError describes why the connection was lost.
func (b *Bus) LostError() error {
	if err := b.nc.LastError(); err != nil {
		return fmt.Errorf("%w: %w", ErrLost, err)
	}
	return ErrLost
}

// ClientURL is the address agents connect to, when the embedded server listens.
func (b *Bus) ClientURL() string {
	if b.srv == nil {
		return b.nc.ConnectedUrl()
	}
	return b.srv.ClientURL()
}

// Conn is the NATS connection, for services such as the guard.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// Server is the embedded server, or nil when the bus connects to another.
func (b *Bus) Server() *server.Server { return b.srv }

// Publish stores an event and waits for the stream to acknowledge it. An event with an id
// that was stored in the last two minutes is stored once.
func (b *Bus) Publish(ctx context.Context, e event.Envelope) error {
	_, err := b.PublishSeq(ctx, e)
	return err
}

// PublishSeq is Publish, returning the event's stream sequence.
func (b *Bus) PublishSeq(ctx context.Context, e event.Envelope) (uint64, error) {
	m, err := wire.Message(e)
	if err != nil {
		return 0, err
	}
	ack, err := b.js.PublishMsg(ctx, m, wire.PublishOpts(e)...)
	if err != nil {
		return 0, fmt.Errorf("publish %s to %s: %w", e.Kind, e.Subject, err)
	}
	return ack.Sequence, nil
}

// LastSeq is the stream sequence of the last event on a subject of the steps stream, or 0,
// as the stream's leader knows it.
func (b *Bus) LastSeq(ctx context.Context, subject string) (uint64, error) {
	return b.leaderLastSeq(ctx, StepsStream, subject)
}

// PublishAsync stores an event without waiting; Flush waits for every pending publish.
func (b *Bus) PublishAsync(e event.Envelope) error {
	m, err := wire.Message(e)
	if err != nil {
		return err
	}
	if _, err := b.js.PublishMsgAsync(m, wire.PublishOpts(e)...); err != nil {
		return fmt.Errorf("publish %s to %s: %w", e.Kind, e.Subject, err)
	}
	return nil
}

// Flush waits until every asynchronous publish is acknowledged.
func (b *Bus) Flush(ctx context.Context) error {
	select {
	case <-b.js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ErrSubjectTooLong says an event's subject is too long to send.
var ErrSubjectTooLong = wire.ErrSubjectTooLong

func envelope(m jetstream.Msg) event.Envelope {
	e, _ := envelopeMeta(m)
	return e
}

// envelopeMeta is envelope, with the message's metadata (nil when it has none): read from
// its reply subject each time it is asked for, so read once.
func envelopeMeta(m jetstream.Msg) (event.Envelope, *jetstream.MsgMetadata) {
	e := event.Envelope{Subject: m.Subject(), Kind: event.Kind(m.Headers().Get(event.KindHeader)), Data: m.Data()}
	md, err := m.Metadata()
	if err != nil {
		return e, nil
	}
	e.Seq, e.Time = md.Sequence.Stream, md.Timestamp
	return e, md
}

// Read returns the events of one subject of a stream, in order, up to and including stream
// sequence upTo.
func (b *Bus) Read(ctx context.Context, stream, subject string, upTo uint64) ([]event.Envelope, error) {
	return b.ReadRange(ctx, stream, subject, 0, upTo)
}

// readBatch is how many events one direct-get request asks for.
const readBatch = 256

// directTimeout bounds one batched direct get: a replica that does not answer in time
// (its server paused) leaves the read to the leader.
const directTimeout = 2 * time.Second

// ReadRange returns the events of one subject of a stream with stream sequences after from
// and up to and including upTo, in order (see Scan).
func (b *Bus) ReadRange(ctx context.Context, stream, subject string, from, upTo uint64) ([]event.Envelope, error) {
	var out []event.Envelope
	err := b.Scan(ctx, stream, subject, from, upTo, func(e event.Envelope) error {
		out = append(out, e)
		return nil
	})
	return out, err
}

// Scan hands the events of one subject of a stream with stream sequences after from and
// up to and including upTo to fn, in order, a batch at a time: a long trace is read
// without holding all its raw events. It asks the stream's leader for the subject's last
// sequence, then uses batched direct gets by subject, so a trace comes back in few round
// trips and reading leaves nothing behind on the server; the events a lagging replica
// could not give are read from the leader (see read.go). An error from fn ends the scan
// with that error.
func (b *Bus) Scan(ctx context.Context, stream, subject string, from, upTo uint64, fn func(event.Envelope) error) error {
	last, err := b.leaderLastSeq(ctx, stream, subject)
	if err != nil {
		return fmt.Errorf("read %s: %w", subject, err)
	}
	upTo = min(upTo, last)
	next, err := b.scanDirect(ctx, stream, subject, from+1, upTo, fn)
	if err != nil {
		return err
	}
	for next <= upTo {
		e, err := b.leaderGet(ctx, stream, msgGetRequest{Seq: next, NextFor: subject})
		if errors.Is(err, errNoMessage) || err == nil && e.Seq > upTo {
			break // removed since (a purge, the retention limits)
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", subject, err)
		}
		if err := fn(e); err != nil {
			return err
		}
		next = e.Seq + 1
	}
	return nil
}

// scanDirect hands a subject's events from seq up to upTo to fn, read with batched direct
// gets, and returns the sequence to read from next: past upTo, unless the replica that
// answered had no more or did not answer in time.
func (b *Bus) scanDirect(ctx context.Context, stream, subject string, seq, upTo uint64, fn func(event.Envelope) error) (uint64, error) {
	for seq <= upTo {
		attempt, cancel := context.WithTimeout(ctx, directTimeout)
		got, more, err := b.directBatch(attempt, stream, subject, &seq, upTo, fn)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
			return seq, nil // no answer in time: the leader gives the rest
		case err != nil:
			return 0, err
		case got == 0 || !more:
			return seq, nil
		}
	}
	return seq, nil
}

// directBatch asks for one batch from *seq, hands the events up to upTo to fn, advancing
// *seq past each, and says how many it handed and whether the replica has more.
func (b *Bus) directBatch(ctx context.Context, stream, subject string, seq *uint64, upTo uint64, fn func(event.Envelope) error) (got int, more bool, err error) {
	msgs, err := jetstreamext.GetBatch(ctx, b.js, stream, readBatch, jetstreamext.GetBatchSeq(*seq), jetstreamext.GetBatchSubject(subject))
	if err != nil {
		return 0, false, fmt.Errorf("read %s: %w", subject, err)
	}
	for m, err := range msgs {
		if errors.Is(err, jetstreamext.ErrNoMessages) {
			return got, false, nil
		}
		if err != nil {
			return got, false, fmt.Errorf("read %s: %w", subject, err)
		}
		if m.Sequence > upTo {
			return got, false, nil
		}
		got++
		if err := fn(rawEnvelope(m)); err != nil {
			return got, false, err
		}
		*seq = m.Sequence + 1
		more = m.Header.Get("Nats-Num-Pending") != "0"
	}
	if got == 0 && ctx.Err() != nil {
		// The iterator ends quietly when no answer comes in time.
		return 0, false, fmt.Errorf("read %s: no answer from stream %s: %w", subject, stream, context.DeadlineExceeded)
	}
	return got, more, nil
}

// stream returns a stream's handle, looked up once.
func (b *Bus) stream(ctx context.Context, name string) (jetstream.Stream, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if st, ok := b.streams[name]; ok {
		return st, nil
	}
	st, err := b.js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	if b.streams == nil {
		b.streams = map[string]jetstream.Stream{}
	}
	b.streams[name] = st
	return st, nil
}

// ReadSteps reads a trace's events from the steps stream.
func (b *Bus) ReadSteps(ctx context.Context, subject string, upTo uint64) ([]event.Envelope, error) {
	return b.Read(ctx, StepsStream, subject, upTo)
}

// FirstStep returns the stream sequence of the first event stored on a subject of the
// steps stream, 0 when there is none: one request, which tells whether a trace has events
// stored before a given one without reading them. It goes to the stream's leader, or, on
// the bus's own embedded server, which is the stream's only replica, to the stream
// directly (see read.go).
func (b *Bus) FirstStep(ctx context.Context, subject string) (uint64, error) {
	get := b.leaderGet
	if b.srv != nil {
		get = b.directGet
	}
	e, err := get(ctx, StepsStream, msgGetRequest{Seq: 1, NextFor: subject})
	if errors.Is(err, errNoMessage) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", subject, err)
	}
	return e.Seq, nil
}

// ReadResults reads a trace's result events of one kind from the results stream.
func (b *Bus) ReadResults(ctx context.Context, subject string, upTo uint64) ([]event.Envelope, error) {
	return b.Read(ctx, ResultsStream, subject, upTo)
}

// errNoPolicies says a bus was opened without the policy bucket (Options.NoPolicies).
var errNoPolicies = errors.New("this connection was opened without troy's policy bucket")

// PutPolicy stores a policy document under a key (its content hash, or "default").
func (b *Bus) PutPolicy(ctx context.Context, key string, doc []byte) error {
	if b.kv == nil {
		return errNoPolicies
	}
	if _, err := b.kv.Put(ctx, key, doc); err != nil {
		return fmt.Errorf("store policy %s: %w", key, err)
	}
	return nil
}

// GetPolicy returns a stored policy document.
func (b *Bus) GetPolicy(ctx context.Context, key string) ([]byte, error) {
	if b.kv == nil {
		return nil, errNoPolicies
	}
	e, err := b.kv.Get(ctx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, fmt.Errorf("policy %s: not stored", key)
		}
		return nil, fmt.Errorf("policy %s: %w", key, err)
	}
	return e.Value(), nil
}

// Subscribe hands every new event on a stream's subjects matching filter to fn, in order,
// until ctx ends. Nothing is acked: the events stay in the stream for other readers.
func (b *Bus) Subscribe(ctx context.Context, stream, filter string, fn func(event.Envelope)) (ready <-chan struct{}, done <-chan error) {
	readyc, donec := make(chan struct{}), make(chan error, 1)
	go func() {
		var cons jetstream.Consumer
		err := b.untilAnswered(ctx, "subscribe "+filter, func(ctx context.Context) (err error) {
			cons, err = b.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
				FilterSubjects: []string{filter},
				DeliverPolicy:  jetstream.DeliverNewPolicy,
			})
			return err
		})
		close(readyc)
		if err != nil {
			donec <- fmt.Errorf("subscribe %s: %w", filter, err)
			return
		}
		// Consume, not repeated fetches: an ordered consumer is recreated at every fetch,
		// while Consume recreates it only when it is lost, as when a cluster loses the
		// server that held it, and carries on from the last event delivered.
		cc, err := cons.Consume(func(m jetstream.Msg) { fn(envelope(m)) },
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				if ctx.Err() == nil {
					b.log.Debug("subscription interrupted; resuming", "filter", filter, "err", err)
				}
			}))
		if err != nil {
			donec <- fmt.Errorf("subscribe %s: %w", filter, err)
			return
		}
		<-ctx.Done()
		cc.Stop()
		<-cc.Closed()
		donec <- nil
	}()
	return readyc, donec
}

// Purge removes a subject's events from a stream.
func (b *Bus) Purge(ctx context.Context, stream, subject string) error {
	s, err := b.stream(ctx, stream)
	if err != nil {
		return err
	}
	return s.Purge(ctx, jetstream.WithPurgeSubject(subject))
}

// Lag is how many events a durable consumer has yet to handle: not yet delivered, plus
// delivered and not yet acked.
func (b *Bus) Lag(ctx context.Context, stream, consumer string) (uint64, error) {
	c, err := b.js.Consumer(ctx, stream, consumer)
	if err != nil {
		return 0, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

// DeleteConsumer removes a durable consumer of a stream, when it is there, and reports
// whether it was: for consumers of components a newer version no longer runs, which
// would otherwise stay on the server, their lag growing.
func (b *Bus) DeleteConsumer(ctx context.Context, stream, consumer string) (bool, error) {
	err := b.js.DeleteConsumer(ctx, stream, consumer)
	switch {
	case err == nil:
		return true, nil
	case IsNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("delete consumer %s of %s: %w", consumer, stream, err)
}

// Connected reports whether the connection to NATS is up.
func (b *Bus) Connected() bool { return b.nc.IsConnected() }

// PublishAll stores events in order and waits until every one is acknowledged. When some
// fail (the server restarting, say), it publishes again from the first that failed, until
// ctx ends: event ids make the repeats harmless.
func (b *Bus) PublishAll(ctx context.Context, envs []event.Envelope) error {
	return wire.PublishAll(ctx, b.js, envs, b.log)
}

// IsNotFound reports whether err says a stream, consumer or message is not there.
func IsNotFound(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrMsgNotFound)
}

// MaxEventSize is the largest event this connection can publish: MaxEventSize, or less
// when the server's payload limit is smaller (a NATS server's default is 1 MB), with room
// for headers.
func (b *Bus) MaxEventSize() int {
	limit := int(b.nc.MaxPayload()) - headerRoom
	return max(min(MaxEventSize, limit), 0)
}

// headerRoom is what an event's headers and subject may take beside its data.
const headerRoom = 64 << 10
