package worker

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/wire"
)

// batchIndex collects the ids of the jobs an engine pulls, per batch, and
// publishes them in chunks to the BATCHES stream (one message per batch
// per flush, not one per job). Listing a batch reads the chunks; jobs
// still waiting in JOBS are found there, so an id not yet flushed when a
// worker dies is not lost: its message is redelivered and indexed again.
type batchIndex struct {
	js jetstream.JetStream

	mu      sync.Mutex
	pending map[string][]string
	n       int
	full    chan struct{}
	// unacked counts, per job id, index entries published or pending and
	// not yet acknowledged; flushed is closed (and replaced) after every
	// flush.
	unacked map[string]int
	flushed chan struct{}
	stopped bool // run returned: nothing flushes any more
}

const (
	indexFlushEvery = 250 * time.Millisecond
	indexChunk      = 1000
)

func newBatchIndex(js jetstream.JetStream) *batchIndex {
	return &batchIndex{js: js, pending: map[string][]string{}, full: make(chan struct{}, 1),
		unacked: map[string]int{}, flushed: make(chan struct{})}
}

func (x *batchIndex) add(batch, id string) {
	x.mu.Lock()
	x.pending[batch] = append(x.pending[batch], id)
	x.unacked[id]++
	x.n++
	full := x.n >= indexChunk
	x.mu.Unlock()
	if full {
		select {
		case x.full <- struct{}{}:
		default:
		}
	}
}

// run flushes every indexFlushEvery (or when a chunk is full) until ctx
// ends, then once more.
func (x *batchIndex) run(ctx context.Context) {
	t := time.NewTicker(indexFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			x.flush(context.WithoutCancel(ctx))
			x.mu.Lock()
			x.stopped = true
			x.mu.Unlock()
			return
		case <-t.C:
		case <-x.full:
		}
		x.flush(ctx)
	}
}

// waitIndexed returns once id's index entry is stored (at once if it has
// none pending), asking for a flush now, or when ctx ends: a job's result
// is published only after its batch lists it, so a client that saw the
// result finds the job in BatchJobs.
func (x *batchIndex) waitIndexed(ctx context.Context, id string) {
	for {
		x.mu.Lock()
		n, ch, stopped := x.unacked[id], x.flushed, x.stopped
		x.mu.Unlock()
		if n == 0 || stopped {
			return
		}
		select {
		case x.full <- struct{}{}:
		default:
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// indexAckWait bounds the wait for a flush's acks: a publish whose ack
// never comes (the connection dropped meanwhile) is published again with
// the next flush, and shutdown never hangs on it.
const indexAckWait = 5 * time.Second

func (x *batchIndex) flush(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, indexAckWait)
	defer cancel()
	defer func() {
		x.mu.Lock()
		close(x.flushed)
		x.flushed = make(chan struct{})
		x.mu.Unlock()
	}()
	x.mu.Lock()
	batch := x.pending
	x.pending, x.n = map[string][]string{}, 0
	x.mu.Unlock()
	type pub struct {
		b   string
		ids []string
		f   jetstream.PubAckFuture
	}
	var pubs []pub
	for b, ids := range batch {
		data, _ := json.Marshal(ids)
		f, err := x.js.PublishAsync(wire.BatchIndexSubject(b), data)
		if err != nil {
			x.requeue(b, ids)
			continue
		}
		pubs = append(pubs, pub{b, ids, f})
	}
	for _, p := range pubs {
		select {
		case <-p.f.Ok():
			x.acked(p.ids)
		case <-p.f.Err():
			x.requeue(p.b, p.ids)
		case <-ctx.Done():
			x.requeue(p.b, p.ids)
		}
	}
}

func (x *batchIndex) requeue(b string, ids []string) {
	x.mu.Lock()
	x.pending[b] = append(x.pending[b], ids...)
	x.n += len(ids)
	x.mu.Unlock()
}

func (x *batchIndex) acked(ids []string) {
	x.mu.Lock()
	for _, id := range ids {
		if x.unacked[id]--; x.unacked[id] <= 0 {
			delete(x.unacked, id)
		}
	}
	x.mu.Unlock()
}
