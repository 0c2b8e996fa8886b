package metrics

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/wire"
)

// QueueCollector reports each provider consumer's backlog from the server
// at scrape time (cluster-wide figures, one series per priority: every
// replica reports the same, so aggregate them with max, not sum).
type QueueCollector struct {
	js        jetstream.JetStream
	providers []string
	pending   *prometheus.Desc
	ackPend   *prometheus.Desc
	redeliv   *prometheus.Desc
	paused    *prometheus.Desc
}

// NewQueueCollector returns a collector for the providers' consumers on JOBS.
func NewQueueCollector(js jetstream.JetStream, providers []string) *QueueCollector {
	labels := []string{"provider", "priority"}
	return &QueueCollector{
		js: js, providers: providers,
		pending: prometheus.NewDesc("reelq_queue_depth", "Jobs waiting in the queue (consumer num_pending), cluster-wide.", labels, nil),
		ackPend: prometheus.NewDesc("reelq_queue_ack_pending", "Jobs delivered to the workers and not yet acknowledged (consumer num_ack_pending: running, pulled ahead, or held by a replica that died until they are redelivered), cluster-wide. Jobs running: reelq_jobs_in_flight.", labels, nil),
		redeliv: prometheus.NewDesc("reelq_queue_redelivered", "Jobs being redelivered (consumer num_redelivered).", labels, nil),
		paused:  prometheus.NewDesc("reelq_consumer_paused", "1 while the provider's consumer is paused on the server (by hand or by an older release: a reelq pause holds paid calls in the workers, see reelq_provider_paused).", labels, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPend
	ch <- c.redeliv
	ch <- c.paused
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, p := range c.providers {
		for _, prio := range reelq.Priorities {
			cons, err := c.js.Consumer(ctx, "JOBS", wire.ConsumerName(p, prio))
			if err != nil {
				continue
			}
			info := cons.CachedInfo()
			pr := string(prio)
			ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(info.NumPending), p, pr)
			ch <- prometheus.MustNewConstMetric(c.ackPend, prometheus.GaugeValue, float64(info.NumAckPending), p, pr)
			ch <- prometheus.MustNewConstMetric(c.redeliv, prometheus.GaugeValue, float64(info.NumRedelivered), p, pr)
			v := 0.0
			if info.Paused {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.paused, prometheus.GaugeValue, v, p, pr)
		}
	}
}
