package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// The dashboard's own reads (the job list, the workers, the charts) go
// straight to JetStream by batched direct get ($JS.API.DIRECT.GET with
// "batch", "seq", "start_time", "next_by_subj" or "multi_last"): no
// consumer is made for a page view, and each request reads only what it
// returns.

// stored is one message read with a direct get.
type stored struct {
	Subject string
	Seq     uint64
	Time    time.Time
	Data    []byte
}

// directReq is a batched direct get request (nats-server's
// JSApiMsgGetRequest, the fields the dashboard uses).
type directReq struct {
	Seq       uint64     `json:"seq,omitempty"`
	NextFor   string     `json:"next_by_subj,omitempty"`
	Batch     int        `json:"batch,omitempty"`
	MaxBytes  int        `json:"max_bytes,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
	MultiLast []string   `json:"multi_last,omitempty"`
}

// directGet sends req to stream and calls f for each message until the
// server's end of batch or f returns false. A stream holding nothing that
// matches is no error.
func directGet(ctx context.Context, nc *nats.Conn, stream string, req directReq, f func(stored) bool) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	inbox := nc.NewInbox() // not NewRespInbox: under the request wildcard, every message would come twice
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, body); err != nil {
		return err
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		m, err := sub.NextMsgWithContext(wctx)
		cancel()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				return fmt.Errorf("direct get on %s: no answer (does the stream exist and allow direct gets, and may this identity read it?)", stream)
			}
			return fmt.Errorf("direct get on %s: %w", stream, err)
		}
		switch m.Header.Get("Status") {
		case "204": // end of batch
			return nil
		case "404":
			return nil
		case "":
		default:
			if len(m.Data) == 0 {
				return fmt.Errorf("direct get on %s: status %s %s", stream, m.Header.Get("Status"), m.Header.Get("Description"))
			}
		}
		seq, _ := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
		t, _ := time.Parse(time.RFC3339Nano, m.Header.Get("Nats-Time-Stamp"))
		if !f(stored{Subject: m.Header.Get("Nats-Subject"), Seq: seq, Time: t, Data: m.Data}) {
			return nil
		}
	}
}

// seqAt is the sequence of stream's first message stored at or after t
// (filtered by subject, if given), or 0 when none is.
func seqAt(ctx context.Context, nc *nats.Conn, stream, subject string, t time.Time) (uint64, error) {
	var seq uint64
	t = t.UTC()
	err := directGet(ctx, nc, stream, directReq{StartTime: &t, NextFor: subject, Batch: 1}, func(m stored) bool {
		seq = m.Seq
		return false
	})
	return seq, err
}
