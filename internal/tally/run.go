package tally

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/store"
	"github.com/reelq/reelq/internal/wire"
)

// DefaultInterval is how often the folder looks for new results: the
// counts lag the results by about this much.
const DefaultInterval = time.Second

// Folder is a worker's candidate to fold RESULTS into the tallies. Every
// replica runs one; the one holding the lease (wire.TallyLeaseKey) folds,
// the others look at the lease every Interval and take it over once it
// lapses (Lease after its holder last renewed it). Exactness does not rest
// on the lease (see the package documentation): it only keeps the work in
// one place.
type Folder struct {
	Store *store.Store
	KV    jetstream.KeyValue // the tallies bucket
	// Holder names this candidate in the lease; it must be unique among
	// the replicas.
	Holder string
	// Interval is how often the holder folds what is new (zero:
	// DefaultInterval); Lease how long a lease lasts unrenewed (zero: 10
	// intervals, at least 5 s).
	Interval, Lease time.Duration
	Log             *slog.Logger

	f folder
}

// lease is the lease key's value. Until is the holder's clock: a skew
// between replicas only moves the handover, never the counts.
type lease struct {
	Holder string    `json:"holder"`
	Until  time.Time `json:"until"`
}

// Run folds while it holds the lease, until ctx ends; it then gives the
// lease up so a standby takes over at once.
func (fl *Folder) Run(ctx context.Context) {
	interval := fl.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	term := fl.Lease
	if term <= 0 {
		term = max(10*interval, 5*time.Second)
	}
	log := fl.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fl.f.s, fl.f.kv = fl.Store, fl.KV
	var held heldLease
	defer fl.release(&held)
	t := time.NewTimer(0)
	defer t.Stop()
	lastErr := "" // logged once at warn until it changes or the fold succeeds
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for fl.hold(ctx, &held, term) {
			_, more, err := fl.f.foldChunk(ctx)
			if err != nil {
				switch {
				case ctx.Err() != nil:
				case err.Error() != lastErr:
					lastErr = err.Error()
					log.Warn("fold results into tallies", "err", err)
				default:
					log.Debug("fold results into tallies", "err", err)
				}
				break
			}
			lastErr = ""
			if !more {
				break
			}
		}
		t.Reset(interval)
	}
}

// heldLease is this candidate's lease: the revision it wrote and until
// when it lasts (zero rev: not held).
type heldLease struct {
	rev   uint64
	until time.Time
}

// hold reports whether this candidate holds the lease, renewing it when
// half of it has passed, or taking it when it is free or lapsed.
func (fl *Folder) hold(ctx context.Context, h *heldLease, term time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	now := time.Now()
	if h.rev != 0 && now.Add(term/2).Before(h.until) {
		return true
	}
	cctx, cancel := fl.Store.ReqCtx(ctx)
	defer cancel()
	rev := h.rev
	if rev == 0 {
		e, err := fl.KV.Get(cctx, wire.TallyLeaseKey)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return false
		default:
			var l lease
			if json.Unmarshal(e.Value(), &l) == nil && l.Holder != fl.Holder && now.Before(l.Until) {
				return false // another's, still running
			}
			rev = e.Revision()
		}
	}
	until := now.Add(term)
	b, _ := json.Marshal(lease{Holder: fl.Holder, Until: until})
	var err error
	if rev == 0 {
		rev, err = fl.KV.Create(cctx, wire.TallyLeaseKey, b)
	} else {
		rev, err = fl.KV.Update(cctx, wire.TallyLeaseKey, b, rev)
	}
	if err != nil {
		*h = heldLease{} // taken by another, or the server is away: look again next time
		return false
	}
	*h = heldLease{rev: rev, until: until}
	return true
}

// release deletes the lease if this candidate still holds it.
func (fl *Folder) release(h *heldLease) {
	if h.rev == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = fl.KV.Delete(ctx, wire.TallyLeaseKey, jetstream.LastRevision(h.rev))
}
