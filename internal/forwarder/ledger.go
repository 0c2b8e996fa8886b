package forwarder

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// entry is a job's line in the ledger (bucket reelq_hooks, key
// <provider>.<job id>). Done is the RESULTS sequence of the job's last
// result whose deliveries are all settled (delivered or dead-lettered):
// every earlier result of the job is settled too, since a job's results
// are handled in order. Seq, First, Attempts and Sent describe the result
// after it while it is being delivered: when delivery began, how many
// rounds were tried, and which receivers (by urlKey) already have it or
// were dead-lettered.
type entry struct {
	Done     uint64    `json:"done,omitempty"`
	Seq      uint64    `json:"seq,omitempty"`
	First    time.Time `json:"first,omitzero"`
	Attempts int       `json:"attempts,omitempty"`
	Sent     []string  `json:"sent,omitempty"`
}

// errConflict means another delivery of the same job wrote the ledger
// first (a redelivered message handled twice at once).
var errConflict = errors.New("forwarder: ledger changed under us")

func getEntry(ctx context.Context, kv jetstream.KeyValue, key string) (entry, uint64, error) {
	v, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return entry{}, 0, nil
	}
	if err != nil {
		return entry{}, 0, err
	}
	var e entry
	if err := json.Unmarshal(v.Value(), &e); err != nil {
		return entry{}, 0, err
	}
	return e, v.Revision(), nil
}

// putEntry writes e if the key is still at revision rev (0: absent).
func putEntry(ctx context.Context, kv jetstream.KeyValue, key string, e entry, rev uint64) error {
	b, _ := json.Marshal(e)
	var err error
	if rev == 0 {
		_, err = kv.Create(ctx, key, b)
	} else {
		_, err = kv.Update(ctx, key, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || isWrongSequence(err) {
		return errConflict
	}
	return err
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
