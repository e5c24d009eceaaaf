package bus

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// PartitionOf computes what the server's partition() transform does: a stream with the
// transform the partitioned consumer declares stores each subject under the partition
// PartitionOf gives it, for ids of every shape a trace may have.
func TestPartitionOfAgreesWithTheServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := openMemory(t)
	c := Partitioned{Consumer: Consumer{Stream: "PT", Name: "evaluator"}, Subjects: "pt.steps.*.*", Partitions: 7}
	if _, err := b.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "PT", Subjects: []string{c.Subjects}, Storage: jetstream.MemoryStorage, SubjectTransform: ptr(c.transform()),
	}); err != nil {
		t.Fatal(err)
	}
	ids := []string{"a", "b", "support-bot", "Agent_42", "ünïcode-agent", "x-" + strings.Repeat("9", 200)}
	for i := range 60 {
		ids = append(ids, "trace-"+strconv.Itoa(i))
	}
	var sent []string
	for i, agent := range ids {
		subject := fmt.Sprintf("pt.steps.%s.%s", agent, ids[(i*7)%len(ids)])
		if _, err := b.js.Publish(ctx, subject, []byte("{}")); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, subject)
	}
	seen := map[int]bool{}
	for i, subject := range sent {
		msg, err := b.js.Stream(ctx, "PT")
		if err != nil {
			t.Fatal(err)
		}
		raw, err := msg.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		// troy.partition.evaluator.<partition>.<agent>.<trace>
		parts := strings.SplitN(strings.TrimPrefix(raw.Subject, partitionPrefix(c)+"."), ".", 2)
		got, err := strconv.Atoi(parts[0])
		if err != nil || parts[1] != strings.TrimPrefix(subject, "pt.steps.") {
			t.Fatalf("%s stored as %s", subject, raw.Subject)
		}
		if want := PartitionOf(c.Subjects, subject, c.Partitions); got != want {
			t.Fatalf("%s: the server's partition %d, PartitionOf %d", subject, got, want)
		}
		seen[got] = true
	}
	if len(seen) < 5 {
		t.Errorf("66 subjects fell in %d of 7 partitions", len(seen))
	}
}

func ptr[T any](v T) *T { return &v }
