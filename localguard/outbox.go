package localguard

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/sdk/agent"
	"github.com/troy-audit/troy/sdk/wire"
)

// The outbox is a directory of append-only record files, one per run of a session
// (<run>.jsonl), each line one event as the deployment stores it:
//
//	{"kind":"step","msg_id":"step|<run>|<session>|0","subject":"troy.steps.<agent>.<session>","data":{...}}
//
// data is the event's JSON as Trace publishes it. Beside each file, <run>.sent holds how
// many of its events a deployment has acknowledged. The process writing a file holds an
// exclusive lock on it (flock); a file nobody holds belongs to a process that ended, and
// the next forwarder sends what it left. Events are published with message ids by
// position, so an event sent again after a crash (acknowledged but not yet counted) is
// stored once: JetStream drops the repeat within its de-duplication window, and troy's
// evaluator keys steps by position beyond it. policies/<hash>.json keeps each policy the
// records name, for the deployment to evaluate them with.

// MaxRecordSize bounds one recorded event: what a NATS server with the default 1 MB
// payload limit takes, with room for headers. A bigger step is refused by Check.
const MaxRecordSize = 1<<20 - 64<<10

// RecordTooLargeError is returned for a step or output too big to record.
type RecordTooLargeError struct {
	Kind event.Kind
	Size int
}

func (e *RecordTooLargeError) Error() string {
	return fmt.Sprintf("%s event of %d bytes exceeds the %d-byte record limit", e.Kind, e.Size, MaxRecordSize)
}

func outboxDir(dataDir string) string { return filepath.Join(dataDir, "outbox") }

// outboxFile is one run's record file.
type outboxFile struct {
	path string
	f    *os.File
	size int64 // bytes of whole records
	// dirty: written since the last sync.
	dirty bool
	buf   []byte // the line being written

	mu      sync.Mutex // guards what the forwarder reads: pending, sent, done, tracked
	tracked bool       // a forwarder sends it
	pending []event.Envelope
	sent    int  // events acknowledged (and counted in the .sent file)
	done    bool // no more events will be added
	closed  bool
}

func createOutboxFile(dir, run string) (*outboxFile, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create the guard's outbox: %w", err)
	}
	// The file is locked before it takes its name, so that no forwarder ever sees it
	// unlocked (and, empty, removes it).
	path := filepath.Join(dir, run+".jsonl")
	f, err := os.OpenFile(path+".new", os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create the guard's record: %w", err)
	}
	if ok, err := tryLock(f); err != nil || !ok {
		f.Close()
		os.Remove(path + ".new")
		return nil, fmt.Errorf("lock the guard's record %s: %v", path, err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		f.Close()
		os.Remove(path + ".new")
		return nil, fmt.Errorf("create the guard's record: %w", err)
	}
	return &outboxFile{path: path, f: f}, nil
}

// appendRecord appends an event as one line. Its kind, id and subject are made of subject
// tokens (no quotes or backslashes), which is what lets decodeRecord find the data.
func appendRecord(b []byte, e event.Envelope) []byte {
	b = append(b, `{"kind":`...)
	b = strconv.AppendQuote(b, string(e.Kind))
	b = append(b, `,"msg_id":`...)
	b = strconv.AppendQuote(b, e.MsgID)
	b = append(b, `,"subject":`...)
	b = strconv.AppendQuote(b, e.Subject)
	b = append(b, dataKey...)
	b = append(b, e.Data...)
	return append(b, "}\n"...)
}

const dataKey = `,"data":`

// decodeRecord reads a line encodeRecord wrote. The data is kept as written: it may hold
// Python's NaN and Infinity, which encoding/json would refuse.
func decodeRecord(line []byte) (event.Envelope, error) {
	i := bytes.Index(line, []byte(dataKey))
	if i < 0 || !bytes.HasSuffix(line, []byte("}")) {
		return event.Envelope{}, errors.New(`expected {"kind":...,"msg_id":...,"subject":...,"data":{...}}`)
	}
	var h struct {
		Kind    event.Kind `json:"kind"`
		MsgID   string     `json:"msg_id"`
		Subject string     `json:"subject"`
	}
	if err := json.Unmarshal(append(line[:i:i], '}'), &h); err != nil {
		return event.Envelope{}, err
	}
	data := line[i+len(dataKey) : len(line)-1]
	if h.Kind == "" || h.Subject == "" || len(data) == 0 {
		return event.Envelope{}, errors.New("kind, subject and data are required")
	}
	return event.Envelope{Kind: h.Kind, MsgID: h.MsgID, Subject: h.Subject, Data: bytes.Clone(data)}, nil
}

// append writes one event as one write, so that a crash of the process leaves it whole or
// absent; a failed write is cut off again.
func (o *outboxFile) append(e event.Envelope, syncNow bool) error {
	if len(e.Data) > MaxRecordSize {
		return &RecordTooLargeError{Kind: e.Kind, Size: len(e.Data)}
	}
	// The line buffer is kept: a check costs no allocation for it.
	o.buf = appendRecord(o.buf[:0], e)
	line := o.buf
	if cap(o.buf) > 4<<10 {
		o.buf = nil // a big step's buffer is not kept
	}
	if _, err := o.f.Write(line); err != nil {
		_ = o.f.Truncate(o.size)
		return fmt.Errorf("record %s in %s: %w", e.Kind, o.path, err)
	}
	o.size += int64(len(line))
	o.dirty = true
	if syncNow {
		if err := o.sync(); err != nil {
			return err
		}
	}
	o.mu.Lock()
	if o.tracked {
		o.pending = append(o.pending, e)
	}
	o.mu.Unlock()
	return nil
}

func (o *outboxFile) sync() error {
	if !o.dirty || o.f == nil {
		return nil
	}
	if err := o.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", o.path, err)
	}
	o.dirty = false
	return nil
}

// finish syncs the file and says no more events come; the file is closed (and its lock
// released) now, or by the forwarder once everything is sent.
func (o *outboxFile) finish() error {
	err := o.sync()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.done = true
	if !o.tracked || len(o.pending) == 0 {
		o.closeLocked()
	}
	return err
}

func (o *outboxFile) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closeLocked()
}

func (o *outboxFile) closeLocked() {
	if !o.closed {
		o.closed = true
		if o.size == 0 && o.sent == 0 && len(o.pending) == 0 {
			_ = os.Remove(o.path) // a run without events leaves no file
		}
		_ = o.f.Close()
	}
}

// ack counts n more events as acknowledged, in memory and in the .sent file.
func (o *outboxFile) ack(n int) error {
	o.mu.Lock()
	o.pending = o.pending[n:]
	o.sent += n
	sent := o.sent
	o.mu.Unlock()
	return writeSent(o.path, sent)
}

func sentPath(path string) string { return strings.TrimSuffix(path, ".jsonl") + ".sent" }

// writeSent replaces the count of acknowledged events whole (write and rename), so that a
// crash leaves the old count or the new one.
func writeSent(path string, n int) error {
	tmp := sentPath(path) + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(n)+"\n"), 0o644); err != nil {
		return fmt.Errorf("count sent events: %w", err)
	}
	if err := os.Rename(tmp, sentPath(path)); err != nil {
		return fmt.Errorf("count sent events: %w", err)
	}
	return nil
}

func readSent(path string) (int, error) {
	raw, err := os.ReadFile(sentPath(path))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: expected a count of sent events, got %q", sentPath(path), shortText(raw))
	}
	return n, nil
}

func shortText(b []byte) string {
	if len(b) > 40 {
		b = b[:40]
	}
	return string(b)
}

// ReadRecord reads the events of a record file, in order. A last line cut short (the
// machine stopped mid-write) is not an event and is left out; so is a line that does not
// decode, with a warning.
func ReadRecord(path string, logger *slog.Logger) ([]event.Envelope, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	evs, _, err := readRecords(f, path, logger)
	return evs, err
}

// readRecords reads events and returns the length of the whole lines read.
func readRecords(r io.Reader, path string, logger *slog.Logger) ([]event.Envelope, int64, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		out  []event.Envelope
		size int64
		line int
	)
	for {
		raw, err := br.ReadSlice('\n')
		for errors.Is(err, bufio.ErrBufferFull) {
			// A record is bounded; a longer line is read whole and then refused.
			var more []byte
			more, err = br.ReadSlice('\n')
			raw = append(bytes.Clone(raw), more...)
			if len(raw) > 2*MaxRecordSize {
				return out, size, fmt.Errorf("%s:%d: a line longer than %d bytes is not a record", path, line+1, 2*MaxRecordSize)
			}
		}
		if err == io.EOF {
			if len(raw) > 0 {
				logger.Warn("guard record ends in a cut-off line; ignored", "path", path, "line", line+1)
			}
			return out, size, nil
		}
		if err != nil {
			return out, size, fmt.Errorf("read %s: %w", path, err)
		}
		line++
		size += int64(len(raw))
		e, derr := decodeRecord(bytes.TrimSuffix(raw, []byte("\n")))
		if derr != nil {
			logger.Warn("guard record line skipped", "path", path, "line", line, "err", derr)
			continue
		}
		out = append(out, e)
	}
}

// forwarder sends the outbox's events to a deployment in the background.
type forwarder struct {
	dir  string
	opts agent.Options
	log  *slog.Logger

	mu       sync.Mutex
	files    []*outboxFile
	closing  bool
	closingC chan struct{} // closed when closing begins
	sentAll  int

	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

// startForwarder keeps c's policy in the outbox (when given), takes over the record files
// no process holds that have unsent events, and starts sending.
func startForwarder(ctx context.Context, dir string, opts agent.Options, c *evaluator.Compiled, log *slog.Logger) (*forwarder, error) {
	if err := os.MkdirAll(filepath.Join(dir, "policies"), 0o755); err != nil {
		return nil, fmt.Errorf("create the guard's outbox: %w", err)
	}
	if c != nil {
		raw, err := c.Policy().MarshalJSON()
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "policies", c.Hash()+".json"), raw, 0o644); err != nil {
			return nil, fmt.Errorf("keep the policy in the outbox: %w", err)
		}
	}
	if opts.Name == "" {
		opts.Name = "troy-local-guard"
	}
	fw := &forwarder{dir: dir, opts: opts, log: log, wake: make(chan struct{}, 1), done: make(chan struct{}), closingC: make(chan struct{})}
	if err := fw.adoptOrphans(); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	fw.cancel = cancel
	go fw.run(runCtx)
	return fw, nil
}

// adoptOrphans takes the record files of ended processes that have events to send.
func (fw *forwarder) adoptOrphans() error {
	paths, err := filepath.Glob(filepath.Join(fw.dir, "*.jsonl"))
	if err != nil {
		return err
	}
	for _, path := range paths {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			fw.log.Warn("guard outbox: cannot open a record", "path", path, "err", err)
			continue
		}
		if ok, _ := tryLock(f); !ok {
			f.Close() // a live process writes or forwards it
			continue
		}
		sent, err := readSent(path)
		if err != nil {
			fw.log.Warn("guard outbox: record skipped", "path", path, "err", err)
			f.Close()
			continue
		}
		evs, size, err := readRecords(f, path, fw.log)
		if err != nil {
			fw.log.Warn("guard outbox: record skipped", "path", path, "err", err)
			f.Close()
			continue
		}
		if sent >= len(evs) {
			if size == 0 && sent == 0 {
				_ = os.Remove(path) // a run that recorded nothing before its process ended
			}
			f.Close()
			continue
		}
		// A line cut short by a stopped machine is dropped, so the file holds whole lines.
		_ = f.Truncate(size)
		o := &outboxFile{path: path, f: f, size: size, tracked: true, pending: evs[sent:], sent: sent, done: true}
		fw.files = append(fw.files, o)
		fw.log.Info("guard outbox: forwarding what an earlier process left", "path", path, "events", len(evs)-sent)
	}
	return nil
}

// add has the forwarder send a record file's events from now on.
func (fw *forwarder) add(o *outboxFile) {
	o.mu.Lock()
	o.tracked = true
	o.mu.Unlock()
	fw.mu.Lock()
	fw.files = append(fw.files, o)
	fw.mu.Unlock()
	fw.kick()
}

func (fw *forwarder) kick() {
	select {
	case fw.wake <- struct{}{}:
	default:
	}
}

// next picks the events to send: a batch from the first file with any. Finished files
// with nothing left are closed and dropped.
func (fw *forwarder) next() (*outboxFile, []event.Envelope) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	keep := fw.files[:0]
	var pick *outboxFile
	var batch []event.Envelope
	for _, o := range fw.files {
		o.mu.Lock()
		if len(o.pending) == 0 && o.done {
			o.closeLocked()
			o.mu.Unlock()
			continue
		}
		if pick == nil && len(o.pending) > 0 {
			pick, batch = o, o.pending[:min(len(o.pending), 256):min(len(o.pending), 256)]
		}
		o.mu.Unlock()
		keep = append(keep, o)
	}
	clear(fw.files[len(keep):])
	fw.files = keep
	return pick, batch
}

func (fw *forwarder) run(ctx context.Context) {
	defer close(fw.done)
	var b *bus.Bus
	defer func() {
		if b != nil {
			b.Close()
		}
	}()
	wait := 100 * time.Millisecond
	backoff := func() bool {
		t := time.NewTimer(wait)
		defer t.Stop()
		wait = min(2*wait, 5*time.Second)
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		case <-fw.closingC: // one more try at once, before the process goes
		}
		return true
	}
	isClosing := func() bool {
		select {
		case <-fw.closingC:
			return true
		default:
			return false
		}
	}
	for {
		o, batch := fw.next()
		if o == nil {
			fw.mu.Lock()
			closing := fw.closing
			fw.mu.Unlock()
			if closing {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-fw.wake:
			}
			continue
		}
		if b == nil {
			closing := isClosing()
			var err error
			if b, err = fw.connect(ctx); err != nil {
				if closing {
					// Closing, and the deployment is not there: what is left waits for
					// the next start rather than keeping the process.
					fw.log.Debug("guard outbox: deployment not reachable at close", "err", err)
					return
				}
				fw.log.Debug("guard outbox: deployment not reachable; will retry", "err", err)
				if !backoff() {
					return
				}
				continue
			}
		}
		if err := fw.send(ctx, b, batch); err != nil {
			fw.log.Warn("guard outbox: forwarding failed; will retry", "err", err)
			b.Close()
			b = nil
			if !backoff() {
				return
			}
			continue
		}
		wait = 100 * time.Millisecond
		if err := o.ack(len(batch)); err != nil {
			fw.log.Warn("guard outbox: cannot count sent events (they may be sent again, and are stored once)", "err", err)
		}
		fw.mu.Lock()
		fw.sentAll += len(batch)
		fw.mu.Unlock()
	}
}

// connect opens the deployment and gives it the policies the records name.
func (fw *forwarder) connect(ctx context.Context) (*bus.Bus, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	auth := agent.FromEnv(fw.opts.Auth)
	// An agent's credential may not use the policy bucket: the policies go through the
	// guard service, which stores a revision under its content hash only.
	scope := agentScope(auth)
	b, err := bus.Open(cctx, bus.Options{URL: fw.opts.URL, Name: fw.opts.Name, Auth: auth, Client: true, NoPolicies: scope != ""})
	if err != nil {
		return nil, err
	}
	pols, _ := filepath.Glob(filepath.Join(fw.dir, "policies", "*.json"))
	for _, p := range pols {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		hash := strings.TrimSuffix(filepath.Base(p), ".json")
		if err := putPolicy(cctx, b, scope, hash, raw); err != nil {
			b.Close()
			return nil, fmt.Errorf("store policy %s: %w", filepath.Base(p), err)
		}
	}
	return b, nil
}

// agentScope is the subject token of the agent an agent's credential is scoped to, or ""
// for any other credential (admin, none).
func agentScope(auth wire.Auth) string {
	if auth.CredsFile == "" {
		return ""
	}
	prefix, err := wire.InboxPrefix(auth.CredsFile)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(prefix, "_INBOX.")
}

// putPolicy stores a policy revision in the deployment: through the guard service with an
// agent's credential (scope names its agent), in the policy bucket otherwise.
func putPolicy(ctx context.Context, b *bus.Bus, scope, hash string, raw []byte) error {
	if scope != "" {
		return storeThroughGuard(ctx, b, scope, hash, raw)
	}
	return b.PutPolicy(ctx, hash, raw)
}

// StorePolicy stores a compiled policy in a deployment, so that guard sessions there can
// name it by its hash, which it returns. An agent's credential may not write the policy
// bucket: the policy goes through the guard service then, which stores it under its
// content hash only.
func StorePolicy(ctx context.Context, deployment agent.Options, c *evaluator.Compiled) (string, error) {
	raw, err := c.Policy().MarshalJSON()
	if err != nil {
		return "", err
	}
	auth := agent.FromEnv(deployment.Auth)
	scope := agentScope(auth)
	b, err := bus.Open(ctx, bus.Options{URL: deployment.URL, Name: deployment.Name, Auth: auth, Client: true, NoPolicies: scope != ""})
	if err != nil {
		return "", err
	}
	defer b.Close()
	if err := putPolicy(ctx, b, scope, c.Hash(), raw); err != nil {
		return "", fmt.Errorf("store policy %s: %w", c.Policy().PolicyID, err)
	}
	return c.Hash(), nil
}

// storeThroughGuard hands a policy revision to the guard service, on the subject of the
// agent scope names.
func storeThroughGuard(ctx context.Context, b *bus.Bus, scope, hash string, raw []byte) error {
	req, err := json.Marshal(event.GuardPolicy{Policy: hash, Document: raw})
	if err != nil {
		return err
	}
	if _, err := b.Request(ctx, event.GuardPolicyPrefix+"."+scope, req); err != nil {
		return fmt.Errorf("through the guard service (an agent's credential may not write the policy bucket): %w", err)
	}
	return nil
}

// send publishes a batch until acknowledged. An event no retry can store (refused by the
// server as too big for its payload limit) is logged and passed over, so that it does
// not hold back the rest.
func (fw *forwarder) send(ctx context.Context, b *bus.Bus, batch []event.Envelope) error {
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := b.PublishAll(pctx, batch)
	var perm *event.Permanent
	if err == nil || !errors.As(err, &perm) || !b.Connected() {
		return err
	}
	for _, e := range batch {
		if err := b.PublishAll(pctx, []event.Envelope{e}); err != nil {
			if !errors.As(err, &perm) || !b.Connected() {
				return err
			}
			fw.log.Error("guard outbox: the deployment refuses an event; passed over", "subject", e.Subject, "msg_id", e.MsgID, "err", err)
		}
	}
	return nil
}

// close waits until everything is sent or ctx ends, then stops the forwarder. When the
// deployment cannot be reached at close (one more try is made at once), it stops without
// waiting.
func (fw *forwarder) close(ctx context.Context) error {
	fw.mu.Lock()
	if !fw.closing {
		fw.closing = true
		close(fw.closingC)
	}
	fw.mu.Unlock()
	fw.kick()
	select {
	case <-fw.done:
	case <-ctx.Done():
		fw.cancel()
		<-fw.done
	}
	fw.cancel()
	_, left := fw.counts()
	fw.mu.Lock()
	for _, o := range fw.files {
		o.close()
	}
	fw.files = nil
	fw.mu.Unlock()
	if left > 0 {
		return fmt.Errorf("%d recorded event(s) not yet acknowledged by the deployment; kept in %s for the next start or troyctl guard --flush", left, fw.dir)
	}
	return nil
}

// counts says how many events were acknowledged and how many wait.
func (fw *forwarder) counts() (sent, left int) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	for _, o := range fw.files {
		o.mu.Lock()
		left += len(o.pending)
		o.mu.Unlock()
	}
	return fw.sentAll, left
}
