package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/inspect"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
)

// A rate limiter whose shared state cannot be written past its bound (its
// bucket sealed here, as a file store's critical write error leaves it) is
// an alarm everywhere an operator looks: readiness, an event, the
// provider's record that stats and the dashboard show, each naming the
// bucket and the server's error. The job already paid for keeps its task:
// its polls come late. Once the bucket is gone (deleted here, before the
// workers would delete it themselves after 30 s) the worker creates it
// again, the job finishes, paid once, and the alarm clears. Before, every
// call waited silently and forever.
func TestLimiterOutageIsAnAlarm(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(2 * time.Second)}})
	submitted := env.Events("events.samsar." + reelq.EventSubmitted)
	down := env.Events("events.samsar." + reelq.EventLimiterUnavailable)
	up := env.Events("events.samsar." + reelq.EventLimiterRecovered)
	w := env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {
		PollInterval: 100 * time.Millisecond, LimiterUnavailableAfter: 500 * time.Millisecond}}})
	env.Enqueue(reelqtest.SamsarJob("paid"))
	env.NextEvent(submitted, 30*time.Second)
	ctx := context.Background()
	st, err := env.JS.Stream(ctx, "KV_"+queue.BucketRateLimit)
	if err != nil {
		t.Fatal(err)
	}
	sealed := st.CachedInfo().Config
	sealed.Sealed = true
	if _, err := env.JS.UpdateStream(ctx, sealed); err != nil {
		t.Fatal(err)
	}

	ev := env.NextEvent(down, 30*time.Second)
	if !strings.Contains(ev.Reason, queue.BucketRateLimit) || !strings.Contains(ev.Reason, "sealed") {
		t.Errorf("limiter_unavailable reason %q, want the bucket and the server's error", ev.Reason)
	}
	if err := w.W.Healthy(); err == nil || !strings.Contains(err.Error(), queue.BucketRateLimit) {
		t.Errorf("Healthy() = %v, want the limiter's outage naming the bucket", err)
	}
	var alarm *inspect.LimiterAlarm
	waitfor.Until(t, time.Minute, "the limiter alarm in the stats", func() error { // the record follows the event
		st, err := env.Inspector.Stats(ctx, inspect.StatsOptions{Recent: -1})
		if err != nil {
			return err
		}
		for _, p := range st.Providers {
			if p.Provider == "samsar" {
				alarm = p.Limiter
			}
		}
		if alarm == nil {
			return waitfor.ErrNotYet
		}
		return nil
	})
	if alarm == nil || alarm.Bucket != queue.BucketRateLimit || alarm.Error == "" || alarm.By != w.ID || alarm.Since.IsZero() {
		t.Errorf("stats' limiter alarm %+v, want the bucket, the error, the worker and the start", alarm)
	}
	if rs := env.Sim.Stats(0)["samsar"].Requests; rs["submit 200"] != 1 {
		t.Errorf("provider requests %v, want one submission", rs)
	}

	if err := env.JS.DeleteKeyValue(ctx, queue.BucketRateLimit); err != nil {
		t.Fatal(err)
	}
	env.NextEvent(up, 30*time.Second)
	r := env.Results(1, time.Minute)["paid"]
	if len(r) != 1 || r[0].Status != reelq.StatusSucceeded || r[0].Attempts != 1 {
		t.Errorf("paid after the outage: %+v, want succeeded once, first attempt", r)
	}
	if n := env.Sim.Stats(0)["samsar"].Submissions[reelqtest.SamsarPrompt("paid")]; n != 1 {
		t.Errorf("paid submitted %d times, want 1", n)
	}
	if err := w.W.Healthy(); err != nil {
		t.Errorf("Healthy() after the outage = %v", err)
	}
	stats, err := env.Inspector.Stats(ctx, inspect.StatsOptions{Recent: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range stats.Providers {
		if p.Limiter != nil {
			t.Errorf("%s: limiter alarm %+v after the outage", p.Provider, p.Limiter)
		}
	}
}
