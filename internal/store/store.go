// Package store is the plumbing the public packages (reelq, inspect)
// and the dashboard share to read JetStream without consumers: batched
// direct gets by subject and sequence, and followers woken by plain
// subscriptions. It knows streams and subjects, not reelq's types: the
// callers decode what it reads.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
)

// Store reads streams over a connection.
type Store struct {
	NC *nats.Conn
	JS jetstream.JetStream
	// Timeout bounds each request when ctx has no earlier deadline.
	Timeout time.Duration
}

// ReqCtx bounds one server request.
func (s *Store) ReqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.Timeout)
}

// Msg is one message read with a direct get.
type Msg struct {
	Subject string
	Seq     uint64
	Time    time.Time
	Header  nats.Header
	Data    []byte
}

// MaxMultiLast bounds the subjects asked for in one batched direct get.
const MaxMultiLast = 256

// errTooManyResults is the server's refusal of a batched direct get whose
// wildcards match more subjects than it answers at once (1,024).
var errTooManyResults = errors.New("too many results")

// LastMsgs reads the last message of each subject in one or a few
// requests (JetStream's batched direct get, "multi_last"), which needs
// the stream's AllowDirect. Subjects without a message are absent from the
// result. Wildcards are allowed; one that matches more subjects than the
// server answers at once is expanded into its subjects first (a stream
// info request) and read in chunks.
func (s *Store) LastMsgs(ctx context.Context, stream string, subjects []string) (map[string]Msg, error) {
	out, err := s.LastMsgsOnce(ctx, stream, subjects)
	if !errors.Is(err, errTooManyResults) {
		return out, err
	}
	st, err := s.JS.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	var all []string
	for _, f := range subjects {
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(f))
		if err != nil {
			return nil, err
		}
		for subj := range info.State.Subjects {
			all = append(all, subj)
		}
	}
	return s.LastMsgsOnce(ctx, stream, all)
}

func (s *Store) LastMsgsOnce(ctx context.Context, stream string, subjects []string) (map[string]Msg, error) {
	out := map[string]Msg{}
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(8) // chunks in flight at once
	for start := 0; start < len(subjects); start += MaxMultiLast {
		chunk := subjects[start:min(start+MaxMultiLast, len(subjects))]
		g.Go(func() error {
			return s.DirectBatch(ctx, stream, map[string]any{"multi_last": chunk, "batch": 1_000_000}, func(m Msg) bool {
				mu.Lock()
				out[m.Subject] = m
				mu.Unlock()
				return true
			})
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// DirectBatch sends a batched direct get and calls f for each message
// until the server's end-of-batch (or f returns false).
func (s *Store) DirectBatch(ctx context.Context, stream string, req map[string]any, f func(Msg) bool) error {
	_, err := s.DirectPage(ctx, stream, req, f)
	return err
}

// DirectPage is directBatch that also returns how many matching messages
// the server still holds after the batch (its end-of-batch count; 0 when
// f stopped early or nothing matched).
func (s *Store) DirectPage(ctx context.Context, stream string, req map[string]any, f func(Msg) bool) (uint64, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return 0, err
	}
	// A plain inbox: a response inbox (NewRespInbox) falls under the
	// connection's request wildcard once a request was made, and the server
	// then delivers every message of the batch twice.
	inbox := s.NC.NewInbox()
	sub, err := s.NC.SubscribeSync(inbox)
	if err != nil {
		return 0, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := s.NC.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, body); err != nil {
		return 0, err
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		m, err := sub.NextMsgWithContext(wctx)
		cancel()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				return 0, fmt.Errorf("direct get on %s: no answer (does the stream allow direct gets, and may this identity read it?)", stream)
			}
			return 0, fmt.Errorf("direct get on %s: %w", stream, err)
		}
		switch m.Header.Get("Status") {
		case "204": // end of batch
			pending, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
			return pending, nil
		case "404":
			return 0, nil // nothing matched
		case "":
		case "408":
			return 0, fmt.Errorf("direct get on %s: %s", stream, m.Header.Get("Description"))
		case "413":
			return 0, fmt.Errorf("direct get on %s: %w (%s)", stream, errTooManyResults, m.Header.Get("Description"))
		default:
			if len(m.Data) == 0 {
				return 0, fmt.Errorf("direct get on %s: status %s %s", stream, m.Header.Get("Status"), m.Header.Get("Description"))
			}
		}
		seq, _ := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
		t, _ := time.Parse(time.RFC3339Nano, m.Header.Get("Nats-Time-Stamp"))
		if !f(Msg{Subject: m.Header.Get("Nats-Subject"), Seq: seq, Time: t, Header: m.Header, Data: m.Data}) {
			return 0, nil
		}
	}
}
