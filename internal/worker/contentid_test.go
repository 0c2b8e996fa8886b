package worker_test

import (
	"testing"
	"time"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/natstest"
	"github.com/reelq/reelq/internal/providersim"
	"github.com/reelq/reelq/internal/queue"
	"github.com/reelq/reelq/internal/reelqtest"
	"github.com/reelq/reelq/internal/waitfor"
	"github.com/reelq/reelq/internal/wire"
)

// Another producer cannot take a content id with other content: its
// message is dead-lettered under seq-<n> (nothing is paid, no state is
// written under the id), and the job whose content the id names runs
// when its producer publishes it, although the squatter's message id
// still sits in the server's duplicate window. (Before, the squatter's
// content ran, was paid, under the id, and the real job was refused as a
// conflict.)
func TestContentIDCannotBeSquatted(t *testing.T) {
	t.Parallel()
	env := reelqtest.New(t, map[string]providersim.Knobs{"samsar": {CompleteAfter: providersim.Duration(20 * time.Millisecond)}})
	env.StartWorker(reelqtest.WorkerOptions{Providers: map[string]reelqtest.Settings{"samsar": {}}})
	victim := reelqtest.SamsarJob("")
	cid := wire.ContentID(victim.Digest(), 1)
	squat := reelqtest.SamsarJob("squatter")
	squat.ID = cid
	m := reelqtest.JobMsg(&squat)
	m.Header.Set(wire.HeaderMsgID, cid)
	publishRaw(t, env, m.Subject, m.Data, map[string]string{wire.HeaderMsgID: cid})
	first := env.Results(1, 30*time.Second)
	dl := reelqtest.SeqResult(first)
	if len(dl) != 1 || dl[0].Error == nil || dl[0].Error.Code != reelq.CodeInvalidRequest || len(first[cid]) != 0 {
		t.Fatalf("the squatter's message: %+v, want one invalid_request result under a seq- id and nothing under %s", first, cid)
	}
	// Once the worker has removed it (the result goes out just before;
	// while the message waits, the real job is refused as a conflict).
	waitfor.Until(t, 20*time.Second, "the squatter's message to leave JOBS", func() bool { return natstest.StreamMsgs(t, env.JS, queue.StreamJobs) == 0 })
	out := env.Enqueue(victim)
	if out[0].ID != cid || out[0].Status != reelq.Published {
		t.Fatalf("the real job: %+v, want published under %s", out[0], cid)
	}
	rs := env.Results(2, 30*time.Second)[cid]
	if len(rs) != 1 || rs[0].Status != reelq.StatusSucceeded {
		t.Fatalf("%s: %+v, want one success", cid, rs)
	}
	subs := env.Sim.Stats(0)["samsar"].Submissions
	if subs[reelqtest.SamsarPrompt("")] != 1 || subs[reelqtest.SamsarPrompt("squatter")] != 0 {
		t.Errorf("submissions %v: want the real job's content paid once, the squatter's never", subs)
	}
}
