package zz_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/reelqtest"
)

// The sixth provider runs through the real worker against its simulator,
// with nothing but its folder and its line in the list: jobs are
// enqueued through the public client, rate-limited, paid once, and each
// gets one result.
func TestThroughTheWorker(t *testing.T) {
	env := reelqtest.New(t, map[string]providersim.Knobs{"zz": {CompleteAfter: providersim.Duration(50 * time.Millisecond)}})
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"zz": {Rate: 5, Burst: 1, MaxInflight: 2}}})
	var jobs []reelq.Job
	for i := range 4 {
		j, err := reelq.NewJob(fmt.Sprintf("zz-%d", i), reelq.ZzInput{Prompt: fmt.Sprintf("clip %d", i), Seconds: 3})
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	env.Enqueue(jobs...)
	results := env.Results(len(jobs), 2*time.Minute)
	st := env.Sim.Stats(time.Second)["zz"]
	for i, j := range jobs {
		rs := results[j.ID]
		if len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded || rs[0].PayOnce != reelq.PayOnceGuaranteed || rs[0].Cost == nil || rs[0].Cost.Amount != 6 {
			t.Errorf("%s: %+v, want one success costing 6 credits, paid once", j.ID, rs)
		}
		if n := st.Submissions[fmt.Sprintf("clip %d", i)]; n != 1 {
			t.Errorf("%s paid %d times, want once", j.ID, n)
		}
	}
	// 5 calls a second with a burst of 1: never more than 6 in any second.
	if st.MaxInWindow > 6 {
		t.Errorf("the provider saw %d calls in one second; the limit is 5/s with a burst of 1", st.MaxInWindow)
	}
}
