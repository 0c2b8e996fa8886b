package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/wire"
)

// PublishResult publishes r on its result subject and waits for the
// server's acknowledgement. The message id ResultMsgID(id, run)
// deduplicates a republish within the duplicate window, and an expected
// last subject sequence refuses a second result of the same run at any time
// the first is still retained: 0 for run 1; for later runs, the sequence of
// the subject's last message, provided it belongs to an earlier run. Either
// way the run ends in exactly one result event; PublishResult then reports
// already=true and no error. The run's done and spend counts follow from
// the stored event (package tally folds RESULTS into them).
func PublishResult(ctx context.Context, js jetstream.JetStream, r *reelq.Result) (already bool, err error) {
	return PublishResultData(ctx, js, r, nil)
}

// PublishResultData is PublishResult with r already encoded as data (nil:
// encode it).
func PublishResultData(ctx context.Context, js jetstream.JetStream, r *reelq.Result, data []byte) (already bool, err error) {
	if data == nil {
		if data, err = json.Marshal(r); err != nil {
			return false, fmt.Errorf("encode result %s: %w", r.ID, err)
		}
	}
	msg := resultMsg(r, data)
	expect := uint64(0)
	if r.Run > 1 {
		last, err := lastResult(ctx, js, r.Provider, r.ID)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return false, err
		case last.Run >= r.Run:
			return true, nil
		default:
			expect = last.seq
		}
	}
	ack, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(wire.ResultMsgID(r.ID, r.Run)), jetstream.WithExpectLastSequencePerSubject(expect))
	if IsWrongLastSequence(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("publish result %s: %w", r.ID, err)
	}
	return ack.Duplicate, nil
}

// resultMsg is the message that carries r, encoded as data.
func resultMsg(r *reelq.Result, data []byte) *nats.Msg {
	msg := &nats.Msg{Subject: wire.ResultSubject(r.Provider, r.ID), Data: data, Header: nats.Header{}}
	if r.Traceparent != "" {
		msg.Header.Set(wire.HeaderTraceparent, r.Traceparent)
	}
	msg.Header.Set(wire.HeaderRun, strconv.Itoa(max(r.Run, 1)))
	return msg
}

// LastResult returns the last result event stored for a job, or
// jetstream.ErrMsgNotFound.
func LastResult(ctx context.Context, js jetstream.JetStream, provider, id string) (*reelq.Result, error) {
	r, err := lastResult(ctx, js, provider, id)
	if err != nil {
		return nil, err
	}
	return r.Result, nil
}

// storedResult is a result event as stored in RESULTS.
type storedResult struct {
	*reelq.Result
	seq uint64
}

func lastResult(ctx context.Context, js jetstream.JetStream, provider, id string) (*storedResult, error) {
	s, err := js.Stream(ctx, StreamResults)
	if err != nil {
		return nil, err
	}
	m, err := s.GetLastMsgForSubject(ctx, wire.ResultSubject(provider, id))
	if err != nil {
		return nil, err
	}
	var r reelq.Result
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return nil, fmt.Errorf("decode result %s: %w", id, err)
	}
	if r.Run == 0 {
		r.Run = 1
	}
	return &storedResult{Result: &r, seq: m.Sequence}, nil
}

// PublishEvent publishes e on core NATS; the EVENTS stream stores it.
// Events are best-effort: a lost event never affects a job.
func PublishEvent(nc *nats.Conn, e reelq.Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return nc.Publish(e.Subject(), data)
}

// IsWrongLastSequence reports a failed expected-last-sequence check: the
// subject already has a message (10071, or 10164 on replicated streams).
func IsWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
	}
	return false
}
