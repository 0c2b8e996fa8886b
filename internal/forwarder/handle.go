package forwarder

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/netguard"
)

// retrySoon is the wait after a transient NATS error (ledger, DLQ).
const retrySoon = 2 * time.Second

// handleResult delivers one RESULTS message to the receivers of its
// route. The order rule and the ledger are described in the package
// documentation. (Long for a reason: it is the one place that settles a
// result message, each outcome beside the others.)
func (f *Forwarder) handleResult(ctx context.Context, m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		f.log.Error("result without metadata; left for redelivery", "subject", m.Subject(), "err", err)
		return
	}
	seq := meta.Sequence.Stream
	ev := parseEvent(m.Subject(), m.Data())
	urls := f.cfg.Routes.For(ev.Provider, ev.Batch)
	if len(urls) == 0 {
		f.ack(m)
		return
	}
	log := f.log.With("job_id", ev.ID, "provider", ev.Provider, "run", ev.Run, "result_seq", seq)
	key := ev.Provider + "." + ev.ID
	e, rev, err := getEntry(ctx, f.ledger, key)
	if err != nil {
		log.Warn("ledger read failed; retrying", "err", err)
		f.nak(m, retrySoon)
		return
	}
	if seq <= e.Done {
		f.ack(m) // settled before (a redelivery after a crash, or a duplicate)
		return
	}
	earlier, acked, err := f.earlierUnsettled(ctx, m.Subject(), max(e.Done+1, f.firstSeq), seq)
	if err == nil && acked {
		// An earlier result was settled since the entry was read (or its
		// entry is gone): read it again, or the progress written below
		// would conflict with the settled one and be lost.
		e, rev, err = getEntry(ctx, f.ledger, key)
	}
	if err != nil {
		log.Warn("reading the job's earlier results failed; retrying", "err", err)
		f.nak(m, retrySoon)
		return
	}
	if seq <= e.Done {
		f.ack(m)
		return
	}
	if earlier != 0 {
		f.count("waiting", 1)
		d := f.delay(int(meta.NumDelivered), min(f.cfg.RetryMax, time.Minute))
		log.Debug("waiting for the job's earlier result", "earlier_seq", earlier, "retry_in", d)
		f.nak(m, d)
		return
	}
	now := time.Now()
	if e.Seq != seq {
		e = entry{Done: e.Done, Seq: seq, First: now}
	}
	var failed []failure
	for _, u := range urls {
		if slices.Contains(e.Sent, urlKey(u)) {
			continue
		}
		a := f.send.post(ctx, u, ev.webhookID(), m.Data())
		if a.Err == nil {
			e.Sent = append(e.Sent, urlKey(u))
			f.count("delivered", 1)
			continue
		}
		failed = append(failed, failure{url: u, a: a})
	}
	e.Attempts++
	exhausted := time.Since(e.First) >= f.cfg.RetryBudget
	var dead, retry []failure
	for _, fl := range failed {
		if exhausted || errors.Is(fl.a.Err, ErrRefused) {
			dead = append(dead, fl)
		} else {
			retry = append(retry, fl)
		}
	}
	for _, fl := range dead {
		d := DeadLetter{WebhookID: ev.webhookID(), URL: fl.url, Provider: ev.Provider, JobID: ev.ID, Batch: ev.Batch, Run: ev.Run,
			ResultSeq: seq, LastStatus: fl.a.Status, LastError: errorText(fl.a), Attempts: e.Attempts, FirstAttempt: e.First,
			LastAttempt: now, Payload: m.Data()}
		if err := publishDeadLetter(ctx, f.js, d, ev.webhookID()+"/"+urlKey(fl.url)+"/"+seqStr(seq)); err != nil {
			log.Warn("dead-lettering failed; retrying", "url", netguard.RedactURL(fl.url), "err", err)
			retry = append(retry, fl)
			continue
		}
		e.Sent = append(e.Sent, urlKey(fl.url))
		f.count("dead_lettered", 1)
		if errors.Is(fl.a.Err, ErrRefused) {
			f.count("refused", 1)
		}
		log.Warn("webhook dead-lettered", "url", netguard.RedactURL(fl.url), "attempts", e.Attempts, "last_status", fl.a.Status, "err", fl.a.Err)
	}
	if len(retry) == 0 {
		if err := putEntry(ctx, f.ledger, key, entry{Done: seq}, rev); err != nil {
			log.Warn("ledger write failed; the result comes back and receivers that have it get it again (same webhook-id)", "err", err)
			f.nak(m, retrySoon)
			return
		}
		f.ack(m)
		return
	}
	f.count("failed", len(retry))
	if err := putEntry(ctx, f.ledger, key, e, rev); err != nil {
		log.Warn("ledger write failed", "err", err)
	}
	d := f.delay(e.Attempts, f.cfg.RetryMax)
	for _, fl := range retry {
		log.Info("webhook failed; retrying", "url", netguard.RedactURL(fl.url), "attempt", e.Attempts, "status", fl.a.Status, "err", fl.a.Err, "retry_in", d)
	}
	f.nak(m, d)
}

type failure struct {
	url string
	a   attempt
}

// earlierUnsettled returns the sequence of the job's first result in
// [from, seq) that has receivers (routes may leave some results out) and
// that the consumer has not acknowledged, or 0; acked reports that it
// passed over acknowledged ones. Below the consumer's ack floor every
// result is settled: that covers a ledger entry read just before an
// earlier result was settled, and one lost (expired before the results it
// describes).
func (f *Forwarder) earlierUnsettled(ctx context.Context, subject string, from, seq uint64) (earlier uint64, acked bool, err error) {
	var floor uint64
	floorRead := false
	for from < seq {
		raw, err := f.results.GetMsg(ctx, from, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return 0, acked, nil
		}
		if err != nil {
			return 0, false, err
		}
		if raw.Sequence >= seq {
			return 0, acked, nil
		}
		if ev := parseEvent(raw.Subject, raw.Data); len(f.cfg.Routes.For(ev.Provider, ev.Batch)) > 0 {
			if !floorRead {
				info, err := f.resCons.Info(ctx)
				if err != nil {
					return 0, false, err
				}
				floor, floorRead = info.AckFloor.Stream, true
			}
			if raw.Sequence > floor {
				return raw.Sequence, false, nil
			}
			acked = true
		}
		from = raw.Sequence + 1
	}
	return 0, acked, nil
}

// handleRedrive delivers a dead letter again on an operator's request
// (hooks.redrive.<dlq seq>): a fresh retry budget from the request's
// time; delivered, the dead letter is removed; exhausted, it is replaced
// by one with the attempts added up.
func (f *Forwarder) handleRedrive(ctx context.Context, m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		return
	}
	dseq, err := strconv.ParseUint(strings.TrimPrefix(m.Subject(), "hooks.redrive."), 10, 64)
	if err != nil {
		f.log.Warn("re-drive request without a dead letter sequence; dropped", "subject", m.Subject())
		f.ack(m)
		return
	}
	d, err := DeadLetterAt(ctx, f.dlq, dseq)
	if errors.Is(err, ErrNoDeadLetter) {
		f.ack(m) // delivered by an earlier request, or never there
		return
	}
	if err != nil {
		f.log.Warn("reading a dead letter failed; retrying", "dlq_seq", dseq, "err", err)
		f.nak(m, retrySoon)
		return
	}
	log := f.log.With("job_id", d.JobID, "provider", d.Provider, "run", d.Run, "dlq_seq", dseq, "url", netguard.RedactURL(d.URL))
	a := f.send.post(ctx, d.URL, d.WebhookID, d.Payload)
	if a.Err == nil {
		f.count("delivered", 1)
		if err := f.dlq.DeleteMsg(ctx, dseq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			log.Warn("delivered, but removing the dead letter failed; a new request would deliver it again", "err", err)
		}
		log.Info("dead letter delivered on re-drive")
		f.ack(m)
		return
	}
	n := int(meta.NumDelivered)
	if !errors.Is(a.Err, ErrRefused) && time.Since(meta.Timestamp) < f.cfg.RetryBudget {
		f.count("failed", 1)
		dl := f.delay(n, f.cfg.RetryMax)
		log.Info("re-drive failed; retrying", "attempt", n, "status", a.Status, "err", a.Err, "retry_in", dl)
		f.nak(m, dl)
		return
	}
	nd := d
	nd.Attempts, nd.LastStatus, nd.LastError, nd.LastAttempt = d.Attempts+n, a.Status, errorText(a), time.Now()
	if err := publishDeadLetter(ctx, f.js, nd, fmt.Sprintf("%s/%s/redrive/%d", d.WebhookID, urlKey(d.URL), meta.Sequence.Stream)); err != nil {
		log.Warn("dead-lettering again failed; retrying", "err", err)
		f.nak(m, retrySoon)
		return
	}
	if err := f.dlq.DeleteMsg(ctx, dseq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		log.Warn("removing the old dead letter failed", "err", err)
	}
	f.count("dead_lettered", 1)
	log.Warn("re-drive dead-lettered again", "attempts", nd.Attempts, "err", a.Err)
	f.ack(m)
}
