package warehouse

import (
	"context"

	"github.com/troy-audit/troy/event"
)

// BuildRows makes the columns of every table from a batch, as Write does, without
// inserting them; it returns how many columns it made.
func BuildRows(ctx context.Context, k *Sink, batch []event.Envelope) (int, error) {
	t, err := k.rows(ctx, batch)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, in := range t.inserts() {
		n += len(in.columns().names)
	}
	return n, nil
}
