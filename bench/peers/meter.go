package main

import (
	"fmt"
	"time"
)

// mark is a point in a run: the time, this process's CPU and the
// server's.
type mark struct {
	t      time.Time
	client time.Duration
	server time.Duration
}

func markNow(srv *server) mark {
	return mark{t: time.Now(), client: selfCPU(), server: srv.cpu()}
}

// phases fills a result from three marks: before enqueueing, after
// enqueueing (before working) and after the last job's end.
func phases(start, enqueued, done mark) result {
	return result{
		EnqueueS:   enqueued.t.Sub(start.t).Seconds(),
		E2ES:       done.t.Sub(enqueued.t).Seconds(),
		ClientE2ES: (done.client - enqueued.client).Seconds(),
		ServerE2ES: (done.server - enqueued.server).Seconds(),
		ClientTotS: (done.client - start.client).Seconds(),
		ServerTotS: (done.server - start.server).Seconds(),
	}
}

// jobID and jobInput are the jobs every system carries: the same ids
// (each system's dedupe key) and the same Samsar input as
// internal/bench's BenchmarkPipeline.
func jobID(i int) string { return fmt.Sprintf("bench-%07d", i) }

func jobInput(i int) string {
	return fmt.Sprintf(`{"prompt":"benchmark shot %d of a long series of shots","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":10}`, i)
}
