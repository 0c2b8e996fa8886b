package metrics

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// scrapeTimeout bounds the NATS calls of one scrape, so a scrape without
// NATS answers before the scraper gives up.
const scrapeTimeout = 2 * time.Second

// heldCollector reports the jobs held for an operator, per provider.
type heldCollector struct {
	count func(context.Context) (map[string]int, error)
	desc  *prometheus.Desc
}

// NewHeldCollector reports reelq_jobs_held at scrape time from count
// (the worker's HeldJobs: cluster-wide, so aggregate it with max). A
// scrape whose count fails reports nothing for it.
func NewHeldCollector(count func(context.Context) (map[string]int, error)) prometheus.Collector {
	return &heldCollector{count: count, desc: prometheus.NewDesc("reelq_jobs_held",
		"Jobs held for an operator after a submission with an unknown outcome (enqueue resolve), cluster-wide.", []string{"provider"}, nil)}
}

func (c *heldCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *heldCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	counts, err := c.count(ctx)
	if err != nil {
		return
	}
	for p, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), p)
	}
}

// resultsLag reports how far a durable consumer of RESULTS is behind.
type resultsLag struct {
	js      jetstream.JetStream
	durable string
	desc    *prometheus.Desc
}

// NewResultsLagCollector reports reelq_results_lag for the durable
// consumer of RESULTS at scrape time.
func NewResultsLagCollector(js jetstream.JetStream, durable string) prometheus.Collector {
	return &resultsLag{js: js, durable: durable, desc: prometheus.NewDesc("reelq_results_lag",
		"Result events the consumer has not settled yet (num_pending + num_ack_pending of its durable on RESULTS).", []string{"consumer"}, nil)}
}

func (c *resultsLag) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *resultsLag) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	cons, err := c.js.Consumer(ctx, "RESULTS", c.durable)
	if err != nil {
		return
	}
	info := cons.CachedInfo()
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(info.NumPending)+float64(info.NumAckPending), c.durable)
}
