package main

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/hibiken/asynq"
)

// runAsynq enqueues with asynq's TaskID (its dedupe: a second enqueue of
// an id fails with ErrTaskIDConflict) and Retention, so that a finished
// job keeps its id for a day like River's and BullMQ's; asynq has no
// batch enqueue, so o.conc goroutines enqueue at once. The server works
// with Concurrency o.conc and a handler that returns nil; done is the
// queue's processed total reaching n.
func runAsynq(o opts) result {
	dir, _ := os.MkdirTemp("", "peers-asynq-")
	defer os.RemoveAll(dir)
	srv := startRedis(dir)
	defer srv.stop()
	redis := asynq.RedisClientOpt{Addr: srv.addr, PoolSize: o.conc}
	client := asynq.NewClient(redis)
	defer client.Close()
	m0 := markNow(srv)
	var wg sync.WaitGroup
	ids := make(chan int)
	for range o.conc {
		wg.Go(func() {
			for i := range ids {
				t := asynq.NewTask("video", []byte(jobInput(i)))
				if _, err := client.Enqueue(t, asynq.TaskID(jobID(i)), asynq.Retention(24*time.Hour), asynq.MaxRetry(3)); err != nil {
					fatalf("asynq enqueue: %v", err)
				}
			}
		})
	}
	for i := range o.jobs {
		ids <- i
	}
	close(ids)
	wg.Wait()

	insp := asynq.NewInspector(redis)
	defer insp.Close()
	server := asynq.NewServer(redis, asynq.Config{Concurrency: o.conc, LogLevel: asynq.ErrorLevel})
	m1 := markNow(srv)
	if err := server.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
		fatalf("%v", err)
	}
	for {
		q, err := insp.GetQueueInfo("default")
		if err != nil {
			fatalf("%v", err)
		}
		if q.ProcessedTotal >= o.jobs {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling asynq's processed counter
	}
	m2 := markNow(srv)
	server.Shutdown()
	// The dedupe, checked untimed: a finished task keeps its id.
	if _, err := client.Enqueue(asynq.NewTask("video", []byte(jobInput(0))), asynq.TaskID(jobID(0)), asynq.Retention(24*time.Hour)); !errors.Is(err, asynq.ErrTaskIDConflict) {
		fatalf("dedupe: enqueueing %s again: %v, want ErrTaskIDConflict", jobID(0), err)
	}
	return phases(m0, m1, m2)
}
