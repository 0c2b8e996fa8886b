package store

import (
	"context"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq/internal/wire"
)

// The readers follow streams without consumers. A consumer is state on the
// server that any identity allowed to create one can pile up (nats-server
// allows 1,000 per stream by default, shared by every identity: the
// reviewer's read-only identity filled RESULTS and every producer's Wait
// failed), and an ordered consumer outlives its reader by its inactivity
// threshold. Instead, the client reads by batched direct gets (by
// sequence and subject, stateless on the server) and learns when to read
// again from a plain subscription to the subjects it follows: the
// messages as they are published. Nothing is left on the server when the
// reader stops, and one identity cannot take another's reads away.

// tailPoll is how often a follower reads again when no message woke it:
// after a reconnect, or for an identity not allowed to subscribe to the
// subjects (it then still follows, less promptly).
const tailPoll = 5 * time.Second

// tailRetry are the re-reads after a wake: the subscriber may see a message
// before the stream has stored it.
var tailRetry = []time.Duration{5 * time.Millisecond, 20 * time.Millisecond, 80 * time.Millisecond, 320 * time.Millisecond}

// waker is a subscription to the subjects a follower reads, as a signal.
type waker struct {
	ch   chan struct{}
	subs []*nats.Subscription
}

func (s *Store) wake(ctx context.Context, subjects []string) *waker {
	w := &waker{ch: make(chan struct{}, 1)}
	for _, subj := range subjects {
		sub, err := s.NC.Subscribe(subj, func(*nats.Msg) {
			select {
			case w.ch <- struct{}{}:
			default:
			}
		})
		if err == nil {
			w.subs = append(w.subs, sub)
		}
	}
	// The subscriptions are in place before the first read: nothing
	// published after that read goes unnoticed.
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_ = s.NC.FlushWithContext(fctx)
	cancel()
	return w
}

func (w *waker) stop() {
	for _, s := range w.subs {
		_ = s.Unsubscribe()
	}
}

// wait returns after a wake, after the next scheduled re-read (retry
// counts them down) or after tailPoll; false when ctx ended.
func (w *waker) wait(ctx context.Context, retry *int) bool {
	d := tailPoll
	if *retry < len(tailRetry) {
		d = tailRetry[*retry]
		*retry++
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-w.ch:
		*retry = 0
	case <-t.C:
	}
	return true
}

// Tail calls f with the messages of stream matching one of filters (the
// stream's every message for none), oldest first, from sequence start on
// (0: the next one stored), until ctx ends (returning its cause) or f
// returns false (returning nil).
func (s *Store) Tail(ctx context.Context, stream string, filters []string, start uint64, f func(Msg) bool) error {
	read := "" // one filter is read on the server; several are matched here
	if len(filters) == 1 {
		read = filters[0]
	}
	wakeOn := filters
	if len(filters) == 0 {
		wakeOn = []string{">"}
		if sc, ok := streamSubjects[stream]; ok {
			wakeOn = []string{sc}
		}
	}
	w := s.wake(ctx, wakeOn)
	defer w.stop()
	if start == 0 {
		last, err := s.LastSeq(ctx, stream)
		if err != nil {
			return err
		}
		start = last + 1
	}
	next, retry := start, len(tailRetry)
	for {
		req := map[string]any{"seq": next, "batch": 256}
		if read != "" {
			req["next_by_subj"] = read
		}
		stopped := false
		cctx, cancel := s.ReqCtx(ctx)
		pending, err := s.DirectPage(cctx, stream, req, func(m Msg) bool {
			next = m.Seq + 1
			if len(filters) > 1 && !matchesAny(filters, m.Subject) {
				return true
			}
			stopped = !f(m)
			return !stopped
		})
		cancel()
		switch {
		case stopped:
			return nil
		case err != nil && ctx.Err() == nil:
			return err
		case pending > 0:
			continue
		}
		if !w.wait(ctx, &retry) {
			return context.Cause(ctx)
		}
	}
}

// WatchLast calls f with the last message on subject of stream now (if
// any) and then with every newer last message, until ctx ends (returning
// its cause) or f returns false (returning nil). Intermediate messages
// may be skipped: it is for a value (a job's state or result), not a log.
func (s *Store) WatchLast(ctx context.Context, stream, subject string, f func(Msg) bool) error {
	w := s.wake(ctx, []string{subject})
	defer w.stop()
	var seen uint64
	retry := len(tailRetry)
	for {
		cctx, cancel := s.ReqCtx(ctx)
		msgs, err := s.LastMsgsOnce(cctx, stream, []string{subject})
		cancel()
		if err != nil && ctx.Err() == nil {
			return err
		}
		if m, ok := msgs[subject]; ok && m.Seq > seen {
			seen = m.Seq
			if !f(m) {
				return nil
			}
		}
		if !w.wait(ctx, &retry) {
			return context.Cause(ctx)
		}
	}
}

// LastSeq is stream's last sequence.
func (s *Store) LastSeq(ctx context.Context, stream string) (uint64, error) {
	cctx, cancel := s.ReqCtx(ctx)
	defer cancel()
	st, err := s.JS.Stream(cctx, stream)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(cctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// streamSubjects are the subjects of the streams the client follows whole.
var streamSubjects = map[string]string{
	wire.StreamResults:  "results.>",
	wire.StreamEvents:   "events.>",
	wire.StreamCounters: "counters.>",
}

// matchesAny reports whether subj matches one of the subject filters.
func matchesAny(filters []string, subj string) bool {
	for _, f := range filters {
		if subjectMatches(f, subj) {
			return true
		}
	}
	return false
}

// subjectMatches reports whether subj matches filter ("*" one token, ">"
// the rest).
func subjectMatches(filter, subj string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subj, ".")
	for i, t := range ft {
		switch {
		case t == ">":
			return len(st) > i
		case i >= len(st):
			return false
		case t != "*" && t != st[i]:
			return false
		}
	}
	return len(ft) == len(st)
}

// Seq yields the messages tail reads, decoded (messages decode refuses
// are skipped), until ctx ends (yielding its error) or the caller stops
// ranging. It keeps no state on the server (see tail).
func Seq[T any](ctx context.Context, s *Store, stream string, filters []string, start uint64, what string, decode func(Msg) (*T, bool)) iter.Seq2[*T, error] {
	return func(yield func(*T, error) bool) {
		err := s.Tail(ctx, stream, filters, start, func(m Msg) bool {
			v, ok := decode(m)
			return !ok || yield(v, nil)
		})
		switch {
		case err == nil:
		case ctx.Err() != nil:
			yield(nil, context.Cause(ctx))
		default:
			yield(nil, fmt.Errorf("reelq: %s: %w", what, err))
		}
	}
}

// NextMsg returns it's next message, or ctx's error once ctx ends even if
// nats.go does not return: while a consumer re-creates itself (after a
// NATS node loss, say) its Next can retry without end.
func NextMsg(ctx context.Context, it jetstream.MessagesContext) (jetstream.Msg, error) {
	type next struct {
		msg jetstream.Msg
		err error
	}
	ch := make(chan next, 1)
	go func() {
		msg, err := it.Next(jetstream.NextContext(ctx))
		ch <- next{msg, err}
	}()
	select {
	case n := <-ch:
		if n.err != nil && ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return n.msg, n.err
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// StopIter stops an iterator, waiting at most 2 s (a re-creation, see
// NextMsg, can hold it).
func StopIter(it jetstream.MessagesContext) {
	done := make(chan struct{})
	go func() {
		it.Stop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
}
