package inspect

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"strings"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/store"
	"github.com/reelq/reelq/internal/wire"
)

// maxJobEvents bounds the events JobEvents returns for one job (the
// newest are kept).
const maxJobEvents = 10_000

// JobEvents returns the events kept in EVENTS about job id (submitted,
// progress, retries, holds, cancel requests, archive outcomes, ...),
// oldest first. It reads them by subject (JobEventSubject) with direct
// gets, so its cost is the job's own events, whatever else the stream
// holds, and it leaves nothing on the server; EVENTS keeps events for a
// limited time (see the stream's MaxAge). Events whose content disagrees
// with the subject they were published on are left out (see Event).
func (c *Inspector) JobEvents(ctx context.Context, id string) ([]reelq.Event, error) {
	if !reelq.ValidID(id) {
		return nil, fmt.Errorf("reelq: job events: %w: id %q", reelq.ErrInvalidJob, id)
	}
	var out []reelq.Event
	for seq := uint64(1); ; {
		cctx, cancel := c.s.ReqCtx(ctx)
		pending, err := c.s.DirectPage(cctx, wire.StreamEvents, map[string]any{"seq": seq, "next_by_subj": "events.*.*." + id, "batch": 256},
			func(m store.Msg) bool {
				seq = m.Seq + 1
				if ev, ok := decodeEvent(m.Subject, m.Data); ok {
					out = append(out, *ev)
				}
				return true
			})
		cancel()
		if err != nil {
			return out, fmt.Errorf("reelq: job events: %w", err)
		}
		if len(out) > maxJobEvents {
			out = out[len(out)-maxJobEvents:]
		}
		if pending == 0 {
			return out, nil
		}
	}
}

// decodeEvent reads the event stored on subj, or reports false if it is
// no event or if its kind, provider or job id disagree with subj. NATS
// permissions are per subject: an identity allowed to publish one kind of
// event (an operator's provider_paused) cannot pass off another, nor put
// it in a job's timeline, since the subject carries both.
func decodeEvent(subj string, data []byte) (*reelq.Event, bool) {
	var ev reelq.Event
	if json.Unmarshal(data, &ev) != nil {
		return nil, false
	}
	t := strings.Split(subj, ".")
	if len(t) < 3 || len(t) > 4 || t[0] != "events" || ev.Provider != t[1] || ev.Kind != t[2] {
		return nil, false
	}
	if (len(t) == 4) != (ev.JobID != "") || len(t) == 4 && ev.JobID != t[3] {
		return nil, false
	}
	return &ev, true
}

// EventsSeq is the last sequence stored in EVENTS: pass it to
// FollowEvents to see every event stored after this call.
func (c *Inspector) EventsSeq(ctx context.Context) (uint64, error) {
	return c.s.LastSeq(ctx, wire.StreamEvents)
}

// FollowEvents yields events as they are stored, from the EVENTS stream
// sequence after on (0: from now on; take EventsSeq first so none can slip
// by), on the given subject filters (none: every event; see EventFilter
// and JobEventSubject). It ends when ctx ends (yielding ctx's error) or the
// caller stops ranging, and keeps no state on the server (it reads by
// direct get, woken by a subscription to the filters). Events whose
// content disagrees with their subject are left out.
func (c *Inspector) FollowEvents(ctx context.Context, after uint64, filters ...string) iter.Seq2[*reelq.Event, error] {
	start := uint64(0)
	if after > 0 {
		start = after + 1
	}
	return store.Seq(ctx, c.s, wire.StreamEvents, filters, start, "follow events", func(m store.Msg) (*reelq.Event, bool) {
		return decodeEvent(m.Subject, m.Data)
	})
}
