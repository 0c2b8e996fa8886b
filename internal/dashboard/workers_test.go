package dashboard_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/reelq/reelq/internal/dashboard"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/worker"
)

// The workers view shows each replica from its own records (version,
// provider, slots) and says when one stopped; the activity charts add the
// records up: after 4 jobs, samsar's card counts 4 paid submissions and 4
// successes. A batch whose provider is paused says so and why, where it
// said "No job picked up by a worker yet". Attempts on the job page agree
// with the result.
func TestWorkersActivityAndPausedBatch(t *testing.T) {
	t.Parallel()
	d := startDash(t, dashOptions{auth: dashboard.Auth{Token: testToken}})
	w := d.StartWorker(reelqtest.WorkerOptions{ID: "replica-a", Config: worker.Config{HeartbeatEvery: 100 * time.Millisecond},
		Providers: map[string]reelqtest.Settings{"samsar": {MaxInflight: 2, PollInterval: 50 * time.Millisecond}}})
	b := d.browser(t)
	d.Enqueue(samsarJobs("act", 4)...)
	d.Results(4, 30*time.Second)

	count := func(body, class string) string {
		m := regexp.MustCompile(`class="` + class + `">([0-9,]+)<`).FindStringSubmatch(body)
		if m == nil {
			return ""
		}
		return m[1]
	}
	waitfor.Until(t, 20*time.Second, "the charts to count the 4 jobs", func() error {
		code, body := b.get("/activity?range=1h")
		card := body[max(strings.Index(body, `data-provider="samsar"`), 0):]
		if code != http.StatusOK || count(card, "ok succeeded") != "4" || count(card, "submits") != "4" {
			return fmt.Errorf("%d: succeeded %q, submissions %q", code, count(card, "ok succeeded"), count(card, "submits"))
		}
		if !strings.Contains(card, `<svg class="chart"`) || !strings.Contains(card, `class="line s-ok"`) {
			return errors.New("no chart line of successes")
		}
		return nil
	})
	code, body := b.get("/workers")
	if code != http.StatusOK || !strings.Contains(body, `data-worker="replica-a" data-provider="samsar"`) ||
		!strings.Contains(body, `badge worker-up">up<`) || !regexp.MustCompile(`<code class="version">[^<]+</code>`).MatchString(body) {
		t.Fatalf("workers view: %d\n%s", code, body)
	}
	for _, q := range []string{"range=2d", "range="} {
		want := http.StatusBadRequest
		if q == "range=" {
			want = http.StatusOK // the default range
		}
		if code, _ := b.get("/activity?" + q); code != want {
			t.Errorf("GET /activity?%s: %d, want %d", q, code, want)
		}
	}

	// Attempts: the result counts 1 for a job that succeeded at once.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := d.Client.Get(ctx, "act-01")
	if err != nil {
		t.Fatal(err)
	}
	res := st.StoredResult()
	_, page := b.get("/jobs/act-01")
	if m := regexp.MustCompile(`<dd id="attempts">(\d+)`).FindStringSubmatch(page); m == nil || m[1] != fmt.Sprint(res.Attempts) {
		t.Errorf("the job page says %v attempts, the result %d (the state %d)", m, res.Attempts, st.Attempts)
	}

	// Paused: the next batch waits, and its page says why.
	if _, err := d.Inspector.Pause(ctx, "samsar", "topping up credits"); err != nil {
		t.Fatal(err)
	}
	d.Enqueue(samsarJobs("stuck", 3)...)
	waitfor.Until(t, 10*time.Second, "the batch page to say samsar is paused", func() error {
		code, body := b.get("/batches/stuck")
		if code != http.StatusOK || !strings.Contains(body, `class="waiting-on"`) {
			return fmt.Errorf("%d, no waiting note", code)
		}
		if !strings.Contains(body, "Jobs of this batch wait") || !strings.Contains(body, "<strong>paused</strong>") || !strings.Contains(body, "topping up credits") {
			return fmt.Errorf("the note does not say the batch waits on paused samsar: %s", body)
		}
		return nil
	})

	// A replica that stops says so.
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, 10*time.Second, "the worker to show as stopped", func() bool {
		_, body := b.get("/workers")
		return strings.Contains(body, `badge worker-stopped">stopped<`)
	})
}
