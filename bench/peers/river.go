package main

import (
	"context"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// videoArgs is River's job: unique by its id (the river:"unique" field)
// in every state but cancelled and discarded, River's UniqueOpts default.
type videoArgs struct {
	ID    string `json:"id" river:"unique"`
	Input string `json:"input"`
}

func (videoArgs) Kind() string { return "video" }

func (videoArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

type videoWorker struct {
	river.WorkerDefaults[videoArgs]
}

func (videoWorker) Work(context.Context, *river.Job[videoArgs]) error { return nil }

// runRiver inserts with InsertMany in batches of 1,000 (dedupe:
// UniqueOpts ByArgs on the id), then works the queue with MaxWorkers
// o.conc; done is the n-th JobCompleted event, which River sends once the
// completion is stored.
func runRiver(o opts) result {
	dir, _ := os.MkdirTemp("", "peers-river-")
	defer os.RemoveAll(dir)
	srv := startPostgres(dir)
	defer srv.stop()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://postgres@"+srv.addr+"/postgres?sslmode=disable")
	if err != nil {
		fatalf("%v", err)
	}
	defer pool.Close()
	driver := riverpgxv5.New(pool)
	mig, err := rivermigrate.New(driver, nil)
	if err != nil {
		fatalf("%v", err)
	}
	if _, err := mig.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		fatalf("river migrate: %v", err)
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &videoWorker{})
	client, err := river.NewClient(driver, &river.Config{
		Queues:        map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: o.conc}},
		Workers:       workers,
		FetchCooldown: o.cooldown,
	})
	if err != nil {
		fatalf("%v", err)
	}
	m0 := markNow(srv)
	for lo := 0; lo < o.jobs; lo += 1000 {
		var batch []river.InsertManyParams
		for i := lo; i < min(lo+1000, o.jobs); i++ {
			batch = append(batch, river.InsertManyParams{Args: videoArgs{ID: jobID(i), Input: jobInput(i)}})
		}
		if _, err := client.InsertMany(ctx, batch); err != nil {
			fatalf("river insert: %v", err)
		}
	}
	events, cancel := client.SubscribeConfig(&river.SubscribeConfig{ChanSize: o.jobs + 1000, Kinds: []river.EventKind{river.EventKindJobCompleted}})
	defer cancel()
	m1 := markNow(srv)
	if err := client.Start(ctx); err != nil {
		fatalf("%v", err)
	}
	for range o.jobs {
		<-events
	}
	m2 := markNow(srv)
	if err := client.Stop(ctx); err != nil {
		fatalf("%v", err)
	}
	// The dedupe, checked untimed: a completed job's id is unique.
	again, err := client.InsertMany(ctx, []river.InsertManyParams{{Args: videoArgs{ID: jobID(0), Input: jobInput(0)}}})
	if err != nil || !again[0].UniqueSkippedAsDuplicate {
		fatalf("dedupe: inserting %s again: %v, skipped as duplicate: %v", jobID(0), err, err == nil && again[0].UniqueSkippedAsDuplicate)
	}
	return phases(m0, m1, m2)
}
