package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/wire"
)

// Only workers write a job's timeline. The reviewer's producer put any
// event kind ("completed", say) in any job's timeline through its
// events.*.cancel_requested.* right. Now no client role may publish a job
// event at all (the worker that takes a cancel request publishes its
// cancel_requested event), and what the operator and the dashboard may
// publish (provider_paused and provider_resumed, provider events) is read
// only when its content agrees with its subject: a "completed" for
// victim-1 sent as an operator's provider_paused shows nowhere. A real
// cancel request still shows in the job's timeline, from the worker.
func TestForgedEventsStayOutOfTimelines(t *testing.T) {
	t.Parallel()
	s, slog := startShippedServer(t)
	_, simURL := simServer(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(50 * time.Millisecond)}}, nil)
	w := startOpsWorker(t, workerEnviron(s.ClientURL(), simURL, "events-worker",
		"NATS_USER=worker", "NATS_PASSWORD="+shippedPasswords["worker"], "SAMSAR_API_KEY="+reelqtest.APIKey("samsar")))
	defer func() { _ = w.Stop() }()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pid := connectAs(t, s, "producer")
	prod := pid.client(t)
	dash := connectAs(t, s, "dashboard").client(t)
	// A first event, so the feed below can start right after it (an
	// empty stream's sequence, 0, would mean "from then on").
	admin := connectAs(t, s, "admin")
	b, _ := json.Marshal(reelq.Event{Kind: reelq.EventProviderResumed, Provider: "vimmerse", Time: time.Now().UTC()})
	if _, err := admin.js.Publish(ctx, wire.EventSubject("vimmerse", reelq.EventProviderResumed), b); err != nil {
		t.Fatal(err)
	}
	evAfter, err := dash.EventsSeq(ctx)
	if err != nil || evAfter == 0 {
		t.Fatal(evAfter, err)
	}
	if _, err := prod.Enqueue(ctx, samsarJob("victim-1", "forge")); err != nil {
		t.Fatal(err)
	}
	if r, err := prod.Wait(ctx, "victim-1"); err != nil || r.Status != reelq.StatusSucceeded {
		t.Fatalf("victim-1: %+v %v", r, err)
	}
	forged := func(kind, job string) []byte {
		b, _ := json.Marshal(reelq.Event{Kind: kind, Provider: "samsar", JobID: job, Time: time.Now().UTC(), Reason: "forged", Worker: "events-worker"})
		return b
	}
	d := &deniedChecks{t: t}
	for _, kind := range []string{reelq.EventCompleted, reelq.EventCancelRequested, reelq.EventArchived} {
		d.publish(pid, wire.JobEventSubject("samsar", kind, "victim-1"), forged(reelq.EventCompleted, "victim-1"))
	}
	d.wg.Wait()
	for _, u := range []string{"operator", "dashboard"} {
		id := connectAs(t, s, u)
		for _, kind := range []string{reelq.EventProviderPaused, reelq.EventProviderResumed} {
			if err := id.nc.Publish(wire.EventSubject("samsar", kind), forged(reelq.EventCompleted, "victim-1")); err != nil {
				t.Fatal(err)
			}
		}
		if err := id.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// A real cancel request (for a job that is queued, so it has a
	// timeline of its own).
	if _, err := prod.Enqueue(ctx, reelq.Job{ID: "cancel-1", Provider: "camb", Input: cambJob("cancel-1", "forge").Input}); err != nil {
		t.Fatal(err)
	}
	if _, err := prod.Cancel(ctx, "cancel-1"); err != nil {
		t.Fatal(err)
	}
	if r, err := prod.Wait(ctx, "cancel-1"); err != nil || r.Status != reelq.StatusCancelled {
		t.Fatalf("cancel-1: %+v %v", r, err)
	}
	waitfor.Until(t, 30*time.Second, "the cancel_requested event", func() bool {
		evs, err := dash.JobEvents(ctx, "cancel-1")
		if err != nil {
			return false
		}
		for _, e := range evs {
			if e.Kind == reelq.EventCancelRequested && e.Worker == "events-worker" {
				return true
			}
		}
		return false
	})
	evs, err := dash.JobEvents(ctx, "victim-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Reason == "forged" || e.Kind == reelq.EventCompleted && e.Worker != "events-worker" {
			t.Errorf("victim-1's timeline shows a forged event: %+v", e)
		}
	}
	// The live feed (what the dashboard's pages follow) drops them too:
	// read on to cancel-1's cancelled event, stored after them.
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	for e, err := range dash.FollowEvents(fctx, evAfter) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Reason == "forged" {
			t.Errorf("the event feed yields a forged event: %+v", e)
		}
		if e.JobID == "cancel-1" && e.Kind == reelq.EventCancelled {
			break
		}
	}
	if n := len(violations(slog, "reelq-test/producer")); n == 0 {
		t.Error("the producer's forged events were refused without a permission violation")
	}
}
