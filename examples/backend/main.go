// Command backend is the README's example of a service using reelq: it
// enqueues one Samsar job, waits for its result, then consumes every
// result durably (resuming after the last one it acknowledged).
package main

import (
	"context"
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
	// As the producer identity (deploy/nats/auth.conf), whose durable is
	// producer_main.
	c, err := reelq.NewClient(ctx, nc, reelq.Options{ConsumerPrefix: "producer"})
	if err != nil {
		log.Fatal(err)
	}
	job, err := reelq.NewJob("order-1234", reelq.SamsarInput{Prompt: "a red kite over dunes", ImageModel: "FLUX1.1PRO", VideoModel: "LUMA", Duration: 10})
	if err != nil {
		log.Fatal(err)
	}
	job.Priority = reelq.High
	if _, err := c.Enqueue(ctx, job); err != nil { // same id and payload again: the same job, never paid twice
		log.Fatal(err)
	}
	r, err := c.Wait(ctx, job.ID)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("%s: %s %v", r.ID, r.Status, r.Outputs)
	for d, err := range c.Results(ctx, reelq.ResultsOptions{Name: "main"}) { // durable: survives restarts
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("result %s %s cost %v", d.Result.ID, d.Result.Status, d.Result.Cost)
		_ = d.Ack(ctx)
	}
}
