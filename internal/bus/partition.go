package bus

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/troy-audit/troy/event"
)

// Partitioned describes a consumer whose events any number of processes share while the
// events of one subject (a trace) go to one process at a time, in order.
//
// JetStream has no consumer that hands a subject's events to one of several clients: a
// durable shared by two processes interleaves a trace's events between them. So the
// stream's events are sourced into a work-queue stream of their own, with the subject
// transform partition(n) adding a partition number made from the subject's wildcard
// tokens; each partition has a durable consumer pinned to one client at a time (priority
// policy pinned_client); and the processes, which announce themselves on a subject,
// divide the partitions among them. A process that leaves (or stops answering) loses its
// pins after PinnedTTL, and its partitions go to the others; one that joins gets its
// share from the others, each releasing a partition only after the events it fetched
// from it are handled.
type Partitioned struct {
	Consumer
	// Subjects is the pattern of the stream's subjects, such as "troy.steps.*.*": its
	// wildcard tokens, together, choose the partition.
	Subjects string
	// Partitions is how many partitions there are; every process must use the same.
	Partitions int
	// Released is called with a partition's number once the process has handed it over
	// and handled every event it fetched from it: state kept for its subjects is stale
	// from then on, as another process handles their next events.
	Released func(partition int)
}

// MaxPartitions bounds the partitions of a consumer: each is a durable consumer the
// server keeps and every process watches.
const MaxPartitions = 1024

// partitionGroup is the priority group of every partition consumer.
const partitionGroup = "owner"

// Partition timing: how often a process announces itself, when the others count it gone,
// and how long a partition stays pinned to a process that stopped asking for events.
const (
	announceEvery = time.Second
	memberTimeout = 4 * time.Second
	pinnedTTL     = 5 * time.Second
)

// PartitionOf is the partition of a subject matching pattern, as the NATS server's
// partition(n, wildcards...) transform computes it: FNV-1a of the wildcard tokens, joined
// with nothing between them, modulo n.
func PartitionOf(pattern, subject string, n int) int {
	pt, st := strings.Split(pattern, "."), strings.Split(subject, ".")
	h := fnv.New32a()
	for i, t := range pt {
		if t == "*" && i < len(st) {
			h.Write([]byte(st[i]))
		}
	}
	return int(h.Sum32() % uint32(n))
}

// partitionStream is the work-queue stream a partitioned consumer reads.
func partitionStream(c Partitioned) string { return c.Stream + "_" + strings.ToUpper(c.Name) }

// partitionPrefix starts the subjects of the partition stream: the consumer's name, then
// the partition, then the original wildcard tokens.
func partitionPrefix(c Partitioned) string { return "troy.partition." + c.Name }

// transform maps the stream's subjects to the partition stream's.
func (c Partitioned) transform() jetstream.SubjectTransformConfig {
	n := strings.Count(c.Subjects, "*")
	dest := []string{partitionPrefix(c)}
	keys := make([]string, n)
	for i := range n {
		keys[i] = strconv.Itoa(i + 1)
	}
	dest = append(dest, fmt.Sprintf("{{partition(%d,%s)}}", c.Partitions, strings.Join(keys, ",")))
	for i := range n {
		dest = append(dest, fmt.Sprintf("{{wildcard(%d)}}", i+1))
	}
	return jetstream.SubjectTransformConfig{Source: c.Subjects, Destination: strings.Join(dest, ".")}
}

// ConsumePartitioned binds a handler to the partitions this process owns, until ctx ends,
// as Consume does for one durable consumer: the handler sees each event with the subject
// and stream sequence it has in c.Stream. A durable consumer named c.Name on c.Stream,
// left by processes that consumed the stream whole, is deleted once the partition stream
// starts where it had acknowledged.
func (b *Bus) ConsumePartitioned(ctx context.Context, c Partitioned, h Handler, stats *Stats) error {
	if c.Partitions <= 0 || c.Partitions > MaxPartitions {
		return fmt.Errorf("consumer %s: %d partitions, expected 1 to %d", c.Name, c.Partitions, MaxPartitions)
	}
	if stats == nil {
		stats = &Stats{}
	}
	c.Consumer = c.Consumer.withDefaults()
	stream, err := b.declarePartitions(ctx, c)
	if err != nil {
		return err
	}
	cons := make([]jetstream.Consumer, c.Partitions)
	for p := range cons {
		cons[p], err = b.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
			Durable:        partitionConsumer(c, p),
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        c.AckWait,
			MaxDeliver:     c.MaxDeliver + 1,
			MaxAckPending:  c.Workers * c.Batch * 2,
			FilterSubjects: []string{fmt.Sprintf("%s.%d.>", partitionPrefix(c), p)},
			PriorityPolicy: jetstream.PriorityPolicyPinned,
			PriorityGroups: []string{partitionGroup},
			PinnedTTL:      pinnedTTL,
		})
		if err != nil {
			return fmt.Errorf("consumer %s: %w", partitionConsumer(c, p), err)
		}
	}
	c.unwrap = sourced
	inHand := make([]sync.WaitGroup, c.Partitions) // events fetched from each partition, not yet settled
	work, stop := startWorkers(c.Consumer, func(m jetstream.Msg, slot *workerSlot) {
		b.handle(c.Consumer, h, m, slot, stats)
		inHand[partitionOfMsg(c, m)].Done()
	})
	defer stop()
	own := &owner{b: b, c: c, stats: stats, stream: stream, cons: cons, inHand: inHand, loops: map[int]context.CancelFunc{}, done: map[int]chan struct{}{}, pinned: map[int]*atomic.Bool{},
		take: func(m jetstream.Msg) {
			inHand[partitionOfMsg(c, m)].Add(1)
			work[worker(m.Subject(), c.Workers)] <- m
		}}
	return own.run(ctx)
}

// partitionConsumer names partition p's durable consumer.
func partitionConsumer(c Partitioned, p int) string { return c.Name + "-" + strconv.Itoa(p) }

// partitionOfMsg reads the partition from a partition stream's subject.
func partitionOfMsg(c Partitioned, m jetstream.Msg) int {
	rest := strings.TrimPrefix(m.Subject(), partitionPrefix(c)+".")
	p, _ := strconv.Atoi(rest[:max(strings.IndexByte(rest, '.'), 0)])
	return p
}

// sourced is the event as the source stream holds it: its subject and sequence there, from
// the header the server adds to what it sources ("STREAM SEQ FILTER TRANSFORM SUBJECT").
func sourced(m jetstream.Msg, e event.Envelope) event.Envelope {
	f := strings.Fields(m.Headers().Get("Nats-Stream-Source"))
	if len(f) >= 5 {
		if seq, err := strconv.ParseUint(f[1], 10, 64); err == nil {
			e.Subject, e.Seq = f[4], seq
		}
	}
	return e
}

// declarePartitions creates the partition stream, sourcing from where a durable consumer
// of the whole stream had acknowledged (and deleting it), or checks that it partitions as
// c says.
func (b *Bus) declarePartitions(ctx context.Context, c Partitioned) (string, error) {
	name := partitionStream(c)
	tr := c.transform()
	check := func(s jetstream.Stream) error {
		for _, src := range s.CachedInfo().Config.Sources {
			for _, t := range src.SubjectTransforms {
				if t != tr {
					return fmt.Errorf("stream %s maps %s to %s, not %s: every %s must run with the same number of partitions", name, t.Source, t.Destination, tr.Destination, c.Name)
				}
			}
		}
		return nil
	}
	if s, err := b.js.Stream(ctx, name); err == nil {
		return name, check(s)
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return "", fmt.Errorf("stream %s: %w", name, err)
	}
	var start uint64
	old, err := b.js.Consumer(ctx, c.Stream, c.Name)
	switch {
	case err == nil:
		info, err := old.Info(ctx)
		if err != nil {
			return "", fmt.Errorf("consumer %s: %w", c.Name, err)
		}
		start = info.AckFloor.Stream + 1
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return "", fmt.Errorf("consumer %s: %w", c.Name, err)
	}
	replicas, _, _, err := b.settings(ctx, c.Stream)
	if err != nil {
		return "", err
	}
	_, err = b.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: fmt.Sprintf("%s's events for consumer %s, in %d partitions", c.Stream, c.Name, c.Partitions),
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     b.storage,
		Replicas:    replicas,
		MaxMsgSize:  MaxEventSize + headerRoom,
		Sources:     []*jetstream.StreamSource{{Name: c.Stream, OptStartSeq: start, SubjectTransforms: []jetstream.SubjectTransformConfig{tr}}},
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		// Another process created it first.
		s, err := b.js.Stream(ctx, name)
		if err == nil {
			return name, check(s)
		}
		return "", fmt.Errorf("stream %s: %w", name, err)
	}
	if err != nil {
		return "", fmt.Errorf("stream %s: %w", name, err)
	}
	if start > 0 {
		if _, err := b.DeleteConsumer(ctx, c.Stream, c.Name); err != nil {
			return "", err
		}
		b.log.Info("partitioned consumer took over", "consumer", c.Name, "from_seq", start)
	}
	return name, nil
}

// owner keeps the partitions this process owns fetched, and follows the processes present.
type owner struct {
	b      *Bus
	c      Partitioned
	stats  *Stats
	stream string
	cons   []jetstream.Consumer
	inHand []sync.WaitGroup
	take   func(jetstream.Msg)
	id     string
	loops  map[int]context.CancelFunc // partitions being fetched
	done   map[int]chan struct{}
	pinned map[int]*atomic.Bool // partitions that gave this process events since it fetched them
}

func (o *owner) run(ctx context.Context) error {
	o.id = nats.NewInbox()[len(nats.InboxPrefix):]
	subject := "troy.members." + o.c.Name
	seen := map[string]time.Time{}
	var mu sync.Mutex
	sub, err := o.b.nc.Subscribe(subject, func(m *nats.Msg) {
		mu.Lock()
		seen[string(m.Data)] = time.Now()
		mu.Unlock()
	})
	if err != nil {
		return fmt.Errorf("consumer %s: members: %w", o.c.Name, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	lost := make(chan int, o.c.Partitions)
	tick := time.NewTicker(announceEvery)
	defer tick.Stop()
	defer o.releaseAll()
	// Fetching starts after one announcement has had time to come back from the others, so
	// that a process joining takes only its share.
	for first := true; ; first = false {
		if err := o.b.nc.Publish(subject, []byte(o.id)); err != nil {
			o.b.log.Warn("announce failed", "consumer", o.c.Name, "err", err)
		}
		mu.Lock()
		members := []string{o.id}
		for id, at := range seen {
			if id != o.id && time.Since(at) < memberTimeout {
				members = append(members, id)
			}
		}
		mu.Unlock()
		if !first {
			o.assign(ctx, members, lost)
		}
		select {
		case <-ctx.Done():
			return nil
		case p := <-lost:
			// The server gave the partition to another process (this one was too slow
			// to ask): what is known of its traces is stale.
			o.release(p, false)
		case <-tick.C:
		}
	}
}

// assign fetches the partitions members give this process and releases the others.
func (o *owner) assign(ctx context.Context, members []string, lost chan<- int) {
	slices.Sort(members)
	me := slices.Index(members, o.id)
	for p := range o.c.Partitions {
		_, fetching := o.loops[p]
		switch mine := p%len(members) == me; {
		case mine && !fetching:
			pctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			pinned := &atomic.Bool{}
			o.loops[p], o.done[p], o.pinned[p] = cancel, done, pinned
			o.stats.Owned.Add(1)
			go func() {
				defer close(done)
				if o.fetch(pctx, p, pinned) {
					lost <- p
				}
			}()
		case !mine && fetching:
			o.release(p, true)
		}
	}
}

// fetch pulls partition p's events and hands them out until ctx ends (false) or the
// server pins the partition to another process (true). A fetch in progress is finished
// and its events handed out, so that none waits for redelivery.
func (o *owner) fetch(ctx context.Context, p int, pinned *atomic.Bool) bool {
	for ctx.Err() == nil {
		batch, err := o.cons[p].Fetch(o.c.Batch, jetstream.FetchMaxWait(time.Second), jetstream.FetchPriorityGroup(partitionGroup))
		if err != nil {
			o.b.log.Warn("fetch failed", "consumer", partitionConsumer(o.c, p), "err", err)
			sleep(ctx, fetchPause)
			continue
		}
		for m := range batch.Messages() {
			pinned.Store(true)
			o.take(m)
		}
		switch err := batch.Error(); {
		case errors.Is(err, jetstream.ErrPinIDMismatch):
			return true
		case err != nil && !transient(err) && ctx.Err() == nil:
			o.b.log.Warn("fetch ended with an error", "consumer", partitionConsumer(o.c, p), "err", err)
			sleep(ctx, fetchPause)
		}
	}
	return false
}

// release stops fetching partition p, waits until its events in hand are settled, tells
// the consumer, and, when unpin, lets the server pin the partition to the next process
// that asks at once rather than after PinnedTTL.
func (o *owner) release(p int, unpin bool) {
	cancel, ok := o.loops[p]
	if !ok {
		return
	}
	cancel()
	<-o.done[p]
	// Only a pin of its own is this process's to remove: unpinning a partition that another
	// process holds would cost that process its state.
	unpin = unpin && o.pinned[p].Load()
	delete(o.loops, p)
	delete(o.done, p)
	delete(o.pinned, p)
	o.stats.Owned.Add(-1)
	o.inHand[p].Wait()
	if o.c.Released != nil {
		o.c.Released(p)
	}
	if !unpin {
		return
	}
	ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if s, err := o.b.stream(ctx, o.stream); err == nil {
		err = s.UnpinConsumer(ctx, partitionConsumer(o.c, p), partitionGroup)
		if err != nil {
			o.b.log.Debug("unpin failed; the pin expires", "consumer", partitionConsumer(o.c, p), "err", err)
		}
	}
}

func (o *owner) releaseAll() {
	for p := range o.loops {
		o.release(p, true)
	}
}

// PartitionedLag is how many events a partitioned consumer has yet to handle, over all
// its partitions.
func (b *Bus) PartitionedLag(ctx context.Context, c Partitioned) (uint64, error) {
	var lag uint64
	for p := range c.Partitions {
		n, err := b.Lag(ctx, partitionStream(c), partitionConsumer(c, p))
		if err != nil {
			return 0, err
		}
		lag += n
	}
	return lag, nil
}
