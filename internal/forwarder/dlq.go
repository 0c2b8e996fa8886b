package forwarder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DeadLetter is a delivery that never succeeded: one result event to one
// receiver, as kept in HOOKS_DLQ.
type DeadLetter struct {
	// Seq is its sequence in HOOKS_DLQ (what 'enqueue hooks redrive'
	// takes); Time when it was dead-lettered. Both come from the stream.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`

	WebhookID string `json:"webhook_id"`
	// URL is the receiver's full URL (it may hold a credential in its
	// query: show it with netguard.RedactURL).
	URL      string `json:"url"`
	Provider string `json:"provider"`
	JobID    string `json:"job_id"`
	Batch    string `json:"batch,omitempty"`
	Run      int    `json:"run,omitempty"`
	// ResultSeq is the result's sequence in RESULTS.
	ResultSeq    uint64    `json:"result_seq,omitempty"`
	LastStatus   int       `json:"last_status,omitempty"`
	LastError    string    `json:"last_error"`
	Attempts     int       `json:"attempts"`
	FirstAttempt time.Time `json:"first_attempt"`
	LastAttempt  time.Time `json:"last_attempt"`
	// Payload is the result event exactly as RESULTS holds it (and as it
	// was POSTed).
	Payload json.RawMessage `json:"payload"`
}

// publishDeadLetter stores d under msgID (so a retried publish after a
// crash stores it once).
func publishDeadLetter(ctx context.Context, js jetstream.JetStream, d DeadLetter, msgID string) error {
	if !json.Valid(d.Payload) {
		b, _ := json.Marshal(string(d.Payload))
		d.Payload = b
	}
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	m := nats.NewMsg(DLQSubject(d.Provider, d.JobID))
	m.Data = b
	m.Header.Set(nats.MsgIdHdr, msgID)
	_, err = js.PublishMsg(ctx, m)
	return err
}

func readDeadLetter(m *jetstream.RawStreamMsg) (DeadLetter, error) {
	var d DeadLetter
	if err := json.Unmarshal(m.Data, &d); err != nil {
		return DeadLetter{}, fmt.Errorf("dead letter %d: %w", m.Sequence, err)
	}
	d.Seq, d.Time = m.Sequence, m.Time
	return d, nil
}

// ErrNoDeadLetter means HOOKS_DLQ has no dead letter at that sequence
// (never, or already delivered on a re-drive).
var ErrNoDeadLetter = errors.New("no such dead letter")

// DeadLetterAt returns the dead letter at HOOKS_DLQ sequence seq.
func DeadLetterAt(ctx context.Context, dlq jetstream.Stream, seq uint64) (DeadLetter, error) {
	m, err := dlq.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetter{}, fmt.Errorf("%w: %d", ErrNoDeadLetter, seq)
	}
	if err != nil {
		return DeadLetter{}, err
	}
	return readDeadLetter(m)
}

// DeadLetters lists HOOKS_DLQ, oldest first.
func DeadLetters(ctx context.Context, js jetstream.JetStream) ([]DeadLetter, error) {
	s, err := js.Stream(ctx, StreamDLQ)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", StreamDLQ, err)
	}
	var out []DeadLetter
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject("hooks.dlq.>"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		d, err := readDeadLetter(m)
		if err != nil {
			return out, err
		}
		out = append(out, d)
		seq = m.Sequence + 1
	}
}

// RequestRedrive asks the forwarder to deliver dead letter seq again. The
// forwarder reads the dead letter itself (only it writes HOOKS_DLQ, so
// nobody can have it sign other content or post elsewhere), posts it
// with a fresh retry budget, and removes it once delivered; if that
// budget runs out too, it becomes a new dead letter with the attempts
// added up. Asking twice within two minutes counts once.
func RequestRedrive(ctx context.Context, js jetstream.JetStream, seq uint64) error {
	m := nats.NewMsg(RedriveSubject(seq))
	m.Header.Set(nats.MsgIdHdr, "redrive:"+strconv.FormatUint(seq, 10))
	_, err := js.PublishMsg(ctx, m)
	return err
}
