// Command backend is the README's example of a service using reelq: it
// enqueues one Samsar job, waits for its result, then consumes every
// result durably (resuming after the last one it acknowledged).
package main

import (
	"context"
	"encoding/json"
	"log"

	"github.com/nats-io/nats.go"

	"github.com/reelq/reelq"
)

func main() {
	ctx := context.Background()
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := reelq.NewClient(ctx, nc, reelq.Options{})
	if err != nil {
		log.Fatal(err)
	}
	job := reelq.Job{ID: "order-1234", Provider: "samsar", Priority: reelq.High,
		Input: json.RawMessage(`{"prompt":"a red kite over dunes","image_model":"FLUX1.1PRO","video_model":"LUMA","duration":10}`)}
	if _, err := c.Enqueue(ctx, job); err != nil { // same id and payload again: the same job, never paid twice
		log.Fatal(err)
	}
	r, err := c.Wait(ctx, job.ID)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("%s: %s %v", r.ID, r.Status, r.Outputs)
	for d, err := range c.Results(ctx, reelq.ResultsOptions{Name: "billing"}) { // durable: survives restarts
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("result %s %s cost %v", d.Result.ID, d.Result.Status, d.Result.Cost)
		_ = d.Ack(ctx)
	}
}
