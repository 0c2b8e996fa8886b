package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/reelq/reelq/internal/wire"
)

// The budgets bucket carries a witness of its own history: the key
// EpochKey, written once when the bucket is set up, and the same id in the
// bucket stream's metadata (EpochMetadata). Purging the bucket, or any loss
// of its messages, removes the key but not the stream's configuration, so
// the workers can tell "no limits were ever set" from "the limits and
// spend were lost" and stop paying instead of trusting an empty view.
// A bucket deleted and created again has neither: it is a new bucket.
const (
	EpochKey      = "epoch"
	EpochMetadata = "reelq_epoch"
)

// Epoch is the value of EpochKey. Mark is new each time the key is
// written (a worker that finds the history lost writes it again), so every
// replica notices the loss even if another one already re-armed the
// witness.
type Epoch struct {
	ID   string    `json:"id"`
	Mark string    `json:"mark"`
	At   time.Time `json:"at"`
}

// ErrBudgetsLost says the budgets bucket lost its history.
var ErrBudgetsLost = errors.New("the budgets bucket lost its history (limits and spend)")

// setupBudgetsEpoch writes the witness into a budgets bucket that has none
// in its metadata yet (a new bucket, or one made by an older reelq).
// A bucket whose metadata names an epoch is left alone: if its key is
// missing, the history was lost, and only a worker may decide what then
// (see CheckEpoch).
func setupBudgetsEpoch(ctx context.Context, js jetstream.JetStream) error {
	s, err := js.Stream(ctx, "KV_"+wire.BucketBudgets)
	if err != nil {
		return err
	}
	cfg := s.CachedInfo().Config
	if cfg.Metadata[EpochMetadata] != "" {
		return nil
	}
	kv, err := js.KeyValue(ctx, wire.BucketBudgets)
	if err != nil {
		return err
	}
	ep := Epoch{ID: nuid.Next(), Mark: nuid.Next(), At: time.Now().UTC()}
	b, _ := json.Marshal(ep)
	if _, err := kv.Create(ctx, EpochKey, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return err
	}
	cur, err := ReadEpoch(ctx, kv) // another replica may have been faster
	if err != nil {
		return err
	}
	if cfg.Metadata == nil {
		cfg.Metadata = map[string]string{}
	}
	cfg.Metadata[EpochMetadata] = cur.ID
	_, err = js.UpdateStream(ctx, cfg)
	return err
}

// ReadEpoch reads the witness key; ErrBudgetsLost if it is missing.
func ReadEpoch(ctx context.Context, kv jetstream.KeyValue) (Epoch, error) {
	e, err := kv.Get(ctx, EpochKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Epoch{}, ErrBudgetsLost
	}
	if err != nil {
		return Epoch{}, err
	}
	var ep Epoch
	if err := json.Unmarshal(e.Value(), &ep); err != nil || ep.ID == "" {
		return Epoch{}, fmt.Errorf("%w: the witness key %q holds %q", ErrBudgetsLost, EpochKey, e.Value())
	}
	return ep, nil
}

// BudgetsMeta reads what the budgets bucket's stream was set up with: the
// epoch id ("" for a bucket set up by an older reelq: nothing to check)
// and how long batch limits and spend are kept (0: no expiry).
func BudgetsMeta(ctx context.Context, kv jetstream.KeyValue) (epoch string, keyTTL time.Duration, err error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return "", 0, err
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return "", 0, fmt.Errorf("unexpected bucket status %T", st)
	}
	md := bs.StreamInfo().Config.Metadata
	if v := md[wire.BudgetsKeyTTLMetadata]; v != "" {
		if keyTTL, err = time.ParseDuration(v); err != nil {
			return "", 0, fmt.Errorf("bucket %s: metadata %s=%q: %w", wire.BucketBudgets, wire.BudgetsKeyTTLMetadata, v, err)
		}
	}
	return md[EpochMetadata], keyTTL, nil
}

// Rearm writes the witness of bucket id again after a loss, with a new
// mark, and returns the epoch now in force (another replica's, if it was
// faster).
func Rearm(ctx context.Context, kv jetstream.KeyValue, id string) (Epoch, error) {
	ep := Epoch{ID: id, Mark: nuid.Next(), At: time.Now().UTC()}
	b, _ := json.Marshal(ep)
	if _, err := kv.Create(ctx, EpochKey, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return Epoch{}, err
	}
	return ReadEpoch(ctx, kv)
}
